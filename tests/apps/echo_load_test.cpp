// Load tests of ucoro-echo-server: 1,000 concurrent connections, driven by ucoro itself in
// this process, each checking byte for byte that the server returns exactly its stream.
//
// Nothing is stored to be compared: every connection's stream comes from a PRNG seeded by
// the connection number, which the sender runs to produce it and the receiver runs again
// to know what must come back. Chunk sizes come from a second PRNG, so the sends are cut
// differently on every connection and never line up with what the kernel delivers.
#include <sys/resource.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>

#include "support/fd_limit.hpp"
#include "support/process.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"

namespace {

using ucoro::io_context;
using ucoro::task;
using ucoro::net::socket;

constexpr std::size_t connection_count = 1000;
// The safety net for a hung run. The tests take seconds; ctest kills at 300 s.
constexpr std::chrono::seconds watchdog_limit{240};

/// xorshift64*: tiny, fast and the same on every platform, which is all a test stream needs.
class prng {
public:
    explicit prng(std::uint64_t seed) noexcept : m_state(seed != 0 ? seed : 1) {}
    std::uint64_t next() noexcept {
        m_state ^= m_state >> 12;
        m_state ^= m_state << 25;
        m_state ^= m_state >> 27;
        return m_state * 0x2545F4914F6CDD1DULL;
    }
    std::uint64_t below(std::uint64_t bound) noexcept { return next() % bound; }

private:
    std::uint64_t m_state;
};

/// The bytes one connection sends, in order. fill() continues where the previous call
/// stopped, however the stream is cut, so the sender (cutting by chunk) and the receiver
/// (cutting by what recv returned) see the same sequence.
class byte_stream {
public:
    explicit byte_stream(std::uint64_t seed) noexcept : m_prng(seed) {}

    void fill(std::span<std::byte> out) noexcept {
        // Raw pointers and whole words: this runs over 2 GiB per test, and a Debug build
        // does not inline span's accessors.
        std::byte* next = out.data();
        std::byte* const end = next + out.size();
        while (next != end && m_used < m_word.size()) {
            *next++ = m_word[m_used++];
        }
        while (end - next >= 8) {
            const std::uint64_t value = m_prng.next();
            std::memcpy(next, &value, sizeof(value));
            next += 8;
        }
        if (next != end) {
            const std::uint64_t value = m_prng.next();
            std::memcpy(m_word.data(), &value, sizeof(value));
            m_used = 0;
            while (next != end) {
                *next++ = m_word[m_used++];
            }
        }
    }

private:
    prng m_prng;
    std::array<std::byte, 8> m_word{};
    std::size_t m_used = 8; // bytes of m_word already handed out
};

std::uint64_t data_seed(std::size_t id) {
    return 0x5EED0000ULL + id * 0x9E3779B97F4A7C15ULL;
}
std::uint64_t size_seed(std::size_t id) {
    return 0xC0FFEEULL ^ (id * 0xBF58476D1CE4E5B9ULL);
}

/// What one test sends on each connection.
struct load_plan {
    std::size_t bytes_per_connection;
    std::size_t max_chunk;
    std::size_t (*next_chunk)(prng& sizes); // in [1, max_chunk]
    /// Wait for each message's echo before sending the next (request/response), instead
    /// of streaming with a sender and a receiver running at once.
    bool ping_pong;
};

/// Results of one run over all connections.
struct load_run {
    io_context& context;
    const load_plan& plan;
    std::size_t unfinished;
    std::size_t bytes_verified = 0;
    std::size_t failed = 0;
    std::vector<std::string> failures; // the first few, to print

    load_run(io_context& c, const load_plan& p, std::size_t connections)
        : context(c), plan(p), unfinished(connections) {}

    void fail(std::size_t id, const std::string& what) {
        ++failed;
        if (failures.size() < 10) {
            failures.push_back(fmt::format("connection {}: {}", id, what));
        }
    }
    void finish_one() {
        if (--unfinished == 0) {
            context.stop(); // only the watchdog is left: cancel it so that run() returns
        }
    }
};

/// One connection, shared by its sender and receiver; the connection counts as finished
/// (and its socket is closed) when the last of them lets go.
struct connection_state {
    load_run& run;
    std::size_t id;
    socket connection;
    std::string failure;
    std::size_t verified = 0;

    connection_state(load_run& r, std::size_t i, socket s)
        : run(r), id(i), connection(std::move(s)) {}
    connection_state(const connection_state&) = delete;
    connection_state& operator=(const connection_state&) = delete;
    ~connection_state() {
        run.bytes_verified += verified;
        if (!failure.empty()) {
            run.fail(id, failure);
        }
        run.finish_one();
    }

    // The first failure is the interesting one. Shutting the socket down in both
    // directions wakes the other half of the connection, which may be blocked in a send
    // the server will never make room for, or in a recv that will never be answered.
    void fail(std::string what) {
        if (failure.empty()) {
            failure = std::move(what);
        }
        ::shutdown(connection.native_handle(), SHUT_RDWR);
    }
};

// Receives `count` bytes and checks them against `expected`, which regenerates the stream.
// Returns false (after recording why) on any difference, error or early end of stream.
task<bool> receive_and_check(connection_state& state, byte_stream& expected,
                             std::span<std::byte> buffer, std::span<std::byte> reference,
                             std::size_t count) {
    std::size_t received = 0;
    while (received < count) {
        const std::size_t want = std::min(buffer.size(), count - received);
        auto [error, n] = co_await state.connection.recv(buffer.first(want));
        if (error) {
            state.fail(fmt::format("recv failed after {} verified bytes: {}", state.verified,
                                   error.message()));
            co_return false;
        }
        if (n == 0) {
            state.fail(fmt::format("end of stream after {} of {} bytes", state.verified,
                                   state.run.plan.bytes_per_connection));
            co_return false;
        }
        expected.fill(reference.first(n));
        if (std::memcmp(buffer.data(), reference.data(), n) != 0) {
            std::size_t at = 0;
            while (buffer[at] == reference[at]) {
                ++at;
            }
            state.fail(fmt::format("byte {} of the stream is {:#04x}, expected {:#04x}",
                                   state.verified + at, static_cast<unsigned>(buffer[at]),
                                   static_cast<unsigned>(reference[at])));
            co_return false;
        }
        received += n;
        state.verified += n;
    }
    co_return true;
}

// After the whole stream came back, the server must close: we sent FIN, it echoed all.
task<void> expect_end_of_stream(connection_state& state) {
    std::array<std::byte, 1> extra;
    auto [error, n] = co_await state.connection.recv(extra);
    if (error) {
        state.fail(fmt::format("after the whole echo: recv failed: {}", error.message()));
    } else if (n != 0) {
        state.fail("the server sent more bytes than it received");
    }
}

task<void> send_stream(std::shared_ptr<connection_state> state) {
    const load_plan& plan = state->run.plan;
    byte_stream data(data_seed(state->id));
    prng sizes(size_seed(state->id));
    std::vector<std::byte> chunk(plan.max_chunk);
    std::size_t sent_total = 0;
    while (sent_total < plan.bytes_per_connection) {
        const std::size_t n =
            std::min(plan.next_chunk(sizes), plan.bytes_per_connection - sent_total);
        data.fill(std::span(chunk).first(n));
        auto [error, sent] = co_await state->connection.send_all(std::span(chunk).first(n));
        if (error) {
            state->fail(
                fmt::format("send failed after {} bytes: {}", sent_total + sent, error.message()));
            co_return;
        }
        sent_total += n;
    }
    // Half-close: the server sees end of stream, echoes what is left and closes.
    if (const auto error = co_await state->connection.shutdown(); error) {
        state->fail(fmt::format("shutdown failed: {}", error.message()));
    }
}

task<void> receive_stream(std::shared_ptr<connection_state> state) {
    byte_stream expected(data_seed(state->id));
    std::vector<std::byte> buffer(16 * 1024);
    std::vector<std::byte> reference(buffer.size());
    if (const bool intact = co_await receive_and_check(*state, expected, buffer, reference,
                                                       state->run.plan.bytes_per_connection);
        intact) {
        co_await expect_end_of_stream(*state);
    }
}

task<void> ping_pong(std::shared_ptr<connection_state> state) {
    const load_plan& plan = state->run.plan;
    byte_stream data(data_seed(state->id));
    byte_stream expected(data_seed(state->id));
    prng sizes(size_seed(state->id));
    std::vector<std::byte> message(plan.max_chunk);
    std::vector<std::byte> buffer(plan.max_chunk);
    std::vector<std::byte> reference(plan.max_chunk);
    std::size_t sent_total = 0;
    while (sent_total < plan.bytes_per_connection) {
        const std::size_t n =
            std::min(plan.next_chunk(sizes), plan.bytes_per_connection - sent_total);
        data.fill(std::span(message).first(n));
        auto [error, sent] = co_await state->connection.send_all(std::span(message).first(n));
        if (error) {
            state->fail(
                fmt::format("send failed after {} bytes: {}", sent_total + sent, error.message()));
            co_return;
        }
        sent_total += n;
        if (const bool intact = co_await receive_and_check(*state, expected, buffer, reference, n);
            !intact) {
            co_return;
        }
    }
    if (const auto error = co_await state->connection.shutdown(); error) {
        state->fail(fmt::format("shutdown failed: {}", error.message()));
        co_return;
    }
    co_await expect_end_of_stream(*state);
}

task<void> run_connection(load_run& run, ucoro::net::address server, std::size_t id) {
    auto [error, connection] = co_await ucoro::net::connect(run.context, server);
    if (error) {
        run.fail(id, fmt::format("connect failed: {}", error.message()));
        run.finish_one();
        co_return;
    }
    auto state = std::make_shared<connection_state>(run, id, std::move(connection));
    if (run.plan.ping_pong) {
        co_await ping_pong(std::move(state));
    } else {
        // Sender and receiver run at once, so a full socket buffer on one side never
        // waits for the other side of the same connection.
        run.context.spawn(send_stream(state));
        co_await receive_stream(std::move(state));
    }
}

task<void> watchdog(load_run& run) {
    const std::error_code error = co_await ucoro::sleep_for(run.context, watchdog_limit);
    if (!error) {
        run.failures.push_back(fmt::format("watchdog: {} connections still unfinished after {} s",
                                           run.unfinished, watchdog_limit.count()));
        ++run.failed;
        run.context.stop();
    }
}

// Which receive path the server runs: the default (multishot receive into a buffer ring,
// where the kernel has it) or --simple (recv into each connection's own buffer).
enum class server_path { fast, simple };

// The counters -v prints at exit: "io_uring_enter calls: N, SQEs: S (x per enter), CQEs: C
// (y per enter), ...". Every connection took at least one accept completion and one
// receive; a counter that stayed 0 was not counted.
void check_loop_counters(const std::string& out) {
    const auto field = [&](std::string_view label) -> std::optional<std::uint64_t> {
        const std::size_t at = out.find(label);
        if (at == std::string::npos) {
            return std::nullopt;
        }
        return std::stoull(out.substr(at + label.size()));
    };
    const auto enters = field("io_uring_enter calls: ");
    const auto sqes = field(", SQEs: ");
    const auto cqes = field(", CQEs: ");
    REQUIRE(enters);
    REQUIRE(sqes);
    REQUIRE(cqes);
    CHECK(*enters > 0);
    CHECK(*cqes >= 2 * connection_count);
    CHECK(*sqes > 0);
}

// `disable`: a --disable list for the server; `expect`: what its -v report must then say.
void run_load(const char* name, const load_plan& plan, server_path path,
              std::string_view disable = {}, std::string_view expect = {}) {
    if (!ucoro_test::ensure_fd_limit(2 * connection_count + 256)) {
        WARN("SKIPPED: RLIMIT_NOFILE is too low for " << connection_count << " connections");
        return;
    }
    std::optional<io_context> context;
    try {
        context.emplace();
    } catch (const std::system_error& e) {
        WARN("SKIPPED: io_uring is not available here: " << e.what());
        return;
    }

    std::vector<std::string> argv{UCORO_ECHO_SERVER, "-q", "-v", "127.0.0.1", "0"};
    if (path == server_path::simple) {
        argv.insert(argv.begin() + 1, "--simple");
    }
    if (!disable.empty()) {
        argv.insert(argv.begin() + 1, {"--disable", std::string(disable)});
    }
    ucoro_test::child_process server(argv);
    const auto line = server.read_stdout_line();
    const auto port = line ? ucoro_test::parse_listening_port(*line) : std::nullopt;
    if (!port) {
        FAIL("the server did not announce its port; its stderr: " << server.stderr_text());
    }

    const auto start = std::chrono::steady_clock::now();
    load_run run(*context, plan, connection_count);
    const auto address = ucoro::net::address::ipv4_loopback(*port);
    context->spawn(watchdog(run));
    for (std::size_t id = 0; id < connection_count; ++id) {
        context->spawn(run_connection(run, address, id));
    }
    try {
        context->run();
    } catch (...) {
        context.reset(); // frees the connections' frames while `run`, which they use, lives
        throw;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    fmt::print("{}: {} connections, {} bytes echoed and verified in {:.2f} s\n", name,
               connection_count, run.bytes_verified, seconds);

    for (const std::string& failure : run.failures) {
        UNSCOPED_INFO(failure);
    }
    CHECK(run.failed == 0);
    CHECK(run.unfinished == 0);
    CHECK(run.bytes_verified == connection_count * plan.bytes_per_connection);

    server.send_signal(SIGINT);
    const auto status = server.wait();
    INFO("server stdout:\n" << server.stdout_text() << "server stderr:\n" << server.stderr_text());
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK(server.stderr_text().empty());
    // -v names the path the server took: the test must exercise the one it claims to.
    if (path == server_path::simple) {
        CHECK_THAT(server.stdout_text(), Catch::Contains("receive path: simple"));
    } else if (disable == "buffer-rings") {
        CHECK_THAT(server.stdout_text(), Catch::Contains("receive path: simple, because"));
    } else if (context->features().buffer_rings) {
        CHECK_THAT(server.stdout_text(), Catch::Contains("receive path: buffer ring"));
    }
    if (!expect.empty()) {
        CHECK_THAT(server.stdout_text(), Catch::Contains(std::string(expect)));
    }
    check_loop_counters(server.stdout_text());
}

// The three loads, each run against both server paths.
const load_plan& random_chunks() {
    static const load_plan plan{
        .bytes_per_connection = 1024 * 1024,
        .max_chunk = 64 * 1024,
        // Log-uniform sizes: as many sends of a few bytes as of tens of kilobytes.
        .next_chunk = [](prng& sizes) -> std::size_t {
            return 1 + sizes.below(std::uint64_t{1} << sizes.below(17));
        },
        .ping_pong = false,
    };
    return plan;
}

const load_plan& small_messages() {
    static const load_plan plan{
        .bytes_per_connection = 4 * 1024,
        .max_chunk = 128,
        .next_chunk = [](prng& sizes) -> std::size_t { return 1 + sizes.below(128); },
        .ping_pong = true,
    };
    return plan;
}

const load_plan& large_messages() {
    static const load_plan plan{
        .bytes_per_connection = 8 * 64 * 1024,
        .max_chunk = 64 * 1024,
        .next_chunk = [](prng&) -> std::size_t { return 64 * 1024; },
        .ping_pong = false,
    };
    return plan;
}

} // namespace

TEST_CASE("echo server returns 1 MiB per connection in random chunks on 1000 connections",
          "[echo_server][load]") {
    run_load("1 MiB random chunks", random_chunks(), server_path::fast);
}

TEST_CASE("echo server --simple returns 1 MiB per connection in random chunks on 1000 "
          "connections",
          "[echo_server][load]") {
    run_load("1 MiB random chunks, --simple", random_chunks(), server_path::simple);
}

TEST_CASE("echo server answers small messages one by one on 1000 connections",
          "[echo_server][load]") {
    run_load("small messages", small_messages(), server_path::fast);
}

TEST_CASE("echo server --simple answers small messages one by one on 1000 connections",
          "[echo_server][load]") {
    run_load("small messages, --simple", small_messages(), server_path::simple);
}

TEST_CASE("echo server returns 64 KiB messages on 1000 connections", "[echo_server][load]") {
    run_load("64 KiB messages", large_messages(), server_path::fast);
}

TEST_CASE("echo server --simple returns 64 KiB messages on 1000 connections",
          "[echo_server][load]") {
    run_load("64 KiB messages, --simple", large_messages(), server_path::simple);
}

// Each feature forced off in turn, so that every fallback serves real load on a kernel that
// has them all. Random chunks: small and large writes, several buffers per arrival.
TEST_CASE("echo server --disable multishot-accept still echoes 1 MiB per connection on 1000 "
          "connections",
          "[echo_server][load][disable]") {
    run_load("--disable multishot-accept", random_chunks(), server_path::fast, "multishot-accept",
             "multishot accept off");
}

TEST_CASE("echo server --disable multishot-recv still echoes 1 MiB per connection on 1000 "
          "connections",
          "[echo_server][load][disable]") {
    run_load("--disable multishot-recv", random_chunks(), server_path::fast, "multishot-recv",
             "single-shot receive");
}

TEST_CASE("echo server --disable buffer-rings still echoes 1 MiB per connection on 1000 "
          "connections",
          "[echo_server][load][disable]") {
    run_load("--disable buffer-rings", random_chunks(), server_path::fast, "buffer-rings",
             "gather send off");
}

TEST_CASE("echo server --disable register-ring-fd still echoes 1 MiB per connection on 1000 "
          "connections",
          "[echo_server][load][disable]") {
    run_load("--disable register-ring-fd", random_chunks(), server_path::fast, "register-ring-fd",
             "registered ring fd off");
}

TEST_CASE("echo server --disable gather-send still echoes 1 MiB per connection on 1000 "
          "connections",
          "[echo_server][load][disable]") {
    run_load("--disable gather-send", random_chunks(), server_path::fast, "gather-send",
             "gather send off");
}

TEST_CASE("echo server --disable with every feature still echoes 64 KiB messages on 1000 "
          "connections",
          "[echo_server][load][disable]") {
    run_load("--disable everything", large_messages(), server_path::fast,
             "multishot-accept,multishot-recv,register-ring-fd,gather-send,batch-wait",
             "multishot accept off, registered ring fd off, gather send off, batch wait off");
}

TEST_CASE("echo server --disable recv-limit still echoes 1 MiB per connection on 1000 "
          "connections",
          "[echo_server][load][disable]") {
    // Each stream then stops at its share of the ring by cancelling its request.
    run_load("--disable recv-limit", random_chunks(), server_path::fast, "recv-limit",
             "receive limit off");
}

TEST_CASE("echo server --disable batch-wait still echoes 1 MiB per connection on 1000 "
          "connections",
          "[echo_server][load][disable]") {
    run_load("--disable batch-wait", random_chunks(), server_path::fast, "batch-wait",
             "batch wait off\n");
}
