// End-to-end tests of ucoro-echo-server: its command line, its start-up failures, serving
// the real client, shutting down on SIGINT/SIGTERM with connections open, and (in process)
// leaving no descriptor behind when its context stops.
#include <sys/resource.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "echo_server.hpp"
#include "support/echo_server_usage.hpp"
#include "support/process.hpp"
#include "support/stderr_capture.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"

namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;
using ucoro_test::child_process;
using ucoro_test::completed_run;
using ucoro_test::run_program;
using ucoro_test::split_lines;
using ucoro_test::unique_fd;

constexpr std::string_view server_usage = ucoro_test::echo_server_usage;

completed_run run_server(std::vector<std::string> args) {
    args.insert(args.begin(), UCORO_ECHO_SERVER);
    return run_program(std::move(args));
}

/// The server binary, started on 127.0.0.1 port 0, with the port it announced.
struct running_server {
    child_process process;
    std::uint16_t port = 0;

    explicit running_server(bool quiet = false)
        : process(quiet ? std::vector<std::string>{UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"}
                        : std::vector<std::string>{UCORO_ECHO_SERVER, "127.0.0.1", "0"}) {
        const auto line = process.read_stdout_line();
        INFO("stderr: " << process.stderr_text());
        REQUIRE(line);
        const auto announced = ucoro_test::parse_listening_port(*line);
        INFO("first line: " << *line);
        REQUIRE(announced);
        port = *announced;
    }
};

std::size_t count_lines_starting_with(const std::string& text, std::string_view prefix) {
    std::size_t count = 0;
    for (const std::string& line : split_lines(text)) {
        if (line.starts_with(prefix)) {
            ++count;
        }
    }
    return count;
}

std::string loopback_peer_name(int fd) {
    return fmt::format("127.0.0.1:{}", ucoro_test::local_port(fd));
}

// Opens `count` idle connections, has the server accept all of them (it says so on stdout),
// sends `signal_number` and checks the orderly shutdown the server promises.
void check_shutdown_with_live_connections(int signal_number, std::string_view signal_name) {
    constexpr std::size_t connection_count = 50;
    running_server server;
    std::vector<unique_fd> clients;
    std::set<std::string> client_names;
    for (std::size_t i = 0; i < connection_count; ++i) {
        clients.push_back(ucoro_test::connect_loopback(server.port));
        client_names.insert(loopback_peer_name(clients.back().get()));
    }

    // Wait for the server to have accepted every connection, so that the signal finds
    // them all live in the loop rather than some still in the listen backlog.
    std::set<std::string> accepted;
    constexpr std::string_view accepted_prefix = "accepted connection from ";
    for (std::size_t i = 0; i < connection_count; ++i) {
        const auto line = server.process.read_stdout_line();
        REQUIRE(line);
        REQUIRE_THAT(*line, StartsWith(std::string(accepted_prefix)));
        accepted.insert(line->substr(accepted_prefix.size()));
    }
    REQUIRE(accepted == client_names);

    server.process.send_signal(signal_number);
    const auto status = server.process.wait();
    INFO("stdout:\n"
         << server.process.stdout_text() << "stderr:\n"
         << server.process.stderr_text());
    REQUIRE(status.exited);
    REQUIRE(status.code == 0);
    CHECK(server.process.stderr_text().empty());
    CHECK_THAT(
        server.process.stdout_text(),
        Contains(fmt::format("caught {}, draining {} connections", signal_name, connection_count)));

    constexpr std::string_view closing_prefix = "closing connection to ";
    std::multiset<std::string> closed;
    for (const std::string& line : split_lines(server.process.stdout_text())) {
        if (line.starts_with(closing_prefix)) {
            closed.insert(line.substr(closing_prefix.size()));
        }
    }
    CHECK(closed.size() == connection_count);
    CHECK(std::set<std::string>(closed.begin(), closed.end()) == client_names);

    // The server closed its end of each connection: every client reads end of stream (not
    // a reset, since nothing was left unread on the server side).
    for (const unique_fd& client : clients) {
        REQUIRE(ucoro_test::wait_readable(client.get()));
        char byte = 0;
        const ssize_t n = ::recv(client.get(), &byte, 1, 0);
        INFO("client " << loopback_peer_name(client.get()) << ": recv returned " << n
                       << (n < 0 ? std::system_category().message(errno) : std::string()));
        CHECK(n == 0);
    }
}

std::size_t count_open_fds() {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/self/fd")) {
        ++count;
    }
    return count;
}

// The client side of the in-process test: opens the connections one by one, checks each
// echoes, then stops the context while all of them are still open.
ucoro::task<void> connect_check_and_stop(ucoro::io_context& context, ucoro::net::address server,
                                         std::size_t count,
                                         std::vector<ucoro::net::socket>& clients,
                                         std::string& failure) {
    for (std::size_t i = 0; i < count && failure.empty(); ++i) {
        auto [error, connection] = co_await ucoro::net::connect(context, server);
        if (error) {
            failure = fmt::format("connect {}: {}", i, error.message());
            break;
        }
        clients.push_back(std::move(connection));
    }
    for (std::size_t i = 0; i < clients.size() && failure.empty(); ++i) {
        const std::string message = fmt::format("ping {}", i);
        auto [send_error, sent] =
            co_await clients[i].send_all(std::as_bytes(std::span(message.data(), message.size())));
        if (send_error) {
            failure = fmt::format("send {}: {}", i, send_error.message());
            break;
        }
        std::string echoed;
        std::array<std::byte, 64> buffer;
        while (echoed.size() < message.size()) {
            auto [recv_error, n] = co_await clients[i].recv(buffer);
            if (recv_error || n == 0) {
                failure = fmt::format("recv {}: {}", i,
                                      recv_error ? recv_error.message() : "end of stream");
                break;
            }
            echoed.append(reinterpret_cast<const char*>(buffer.data()), n);
        }
        if (failure.empty() && echoed != message) {
            failure = fmt::format("connection {} echoed {:?} for {:?}", i, echoed, message);
        }
    }
    context.stop(); // what the signal watcher of the binary does
}

} // namespace

TEST_CASE("echo server without arguments prints usage and exits 2", "[echo_server][cli]") {
    const completed_run run = run_server({});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 2);
    CHECK(run.out.empty());
    CHECK_THAT(run.err, Contains(std::string(server_usage)));
}

TEST_CASE("echo server --help prints usage on stdout and exits 0", "[echo_server][cli]") {
    for (const char* option : {"--help", "-h"}) {
        INFO("option " << option);
        const completed_run run = run_server({option});
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 0);
        CHECK_THAT(run.out, StartsWith(std::string(server_usage)));
        CHECK(run.err.empty());
    }
}

TEST_CASE("echo server with an extra argument exits 2", "[echo_server][cli]") {
    const completed_run run = run_server({"127.0.0.1", "0", "extra"});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 2);
    CHECK(run.out.empty());
    CHECK_THAT(run.err, Contains("unexpected argument 'extra'"));
    CHECK_THAT(run.err, Contains(std::string(server_usage)));
}

TEST_CASE("echo server with one argument exits 2", "[echo_server][cli]") {
    const completed_run run = run_server({"127.0.0.1"});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 2);
    CHECK_THAT(run.err, Contains(std::string(server_usage)));
}

TEST_CASE("echo server with an unknown option exits 2", "[echo_server][cli]") {
    const completed_run run = run_server({"--bogus", "127.0.0.1", "0"});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 2);
    CHECK(run.out.empty());
    CHECK_THAT(run.err, Contains("unknown option '--bogus'"));
    CHECK_THAT(run.err, Contains(std::string(server_usage)));
}

TEST_CASE("echo server --disable rejects an unknown or missing feature with usage and exit 2",
          "[echo_server][cli]") {
    for (const auto& [args, reason] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"--disable", "bogus", "127.0.0.1", "0"}, "unknown feature 'bogus' for --disable"},
             {{"--disable", "gather-send,", "127.0.0.1", "0"}, "unknown feature '' for --disable"},
             {{"--disable", "gather-send,nope", "127.0.0.1", "0"},
              "unknown feature 'nope' for --disable"},
             {{"127.0.0.1", "0", "--disable"}, "--disable needs one of: multishot-accept"},
         }) {
        INFO("arguments end with " << args.back());
        const completed_run run = run_server(args);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 2);
        CHECK(run.out.empty());
        CHECK_THAT(run.err, Contains(reason));
        CHECK_THAT(run.err, Contains(std::string(server_usage)));
    }
}

TEST_CASE("echo server --help lists every feature --disable accepts", "[echo_server][cli]") {
    const completed_run run = run_server({"--help"});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 0);
    for (const char* feature : {"multishot-accept", "multishot-recv", "recv-limit", "buffer-rings",
                                "register-ring-fd", "gather-send", "batch-wait"}) {
        CHECK_THAT(run.out, Contains(feature));
    }
}

TEST_CASE("echo server --batch-wait rejects a bad value with usage and exit 2",
          "[echo_server][cli]") {
    for (const char* value : {"-1", "abc", "1000001", "1.5", "", "200us"}) {
        INFO("--batch-wait '" << value << "'");
        const completed_run run = run_server({"--batch-wait", value, "127.0.0.1", "0"});
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 2);
        CHECK(run.out.empty());
        CHECK_THAT(run.err, Contains("--batch-wait must be a whole number of microseconds from 0 "
                                     "to 1000000, not '" +
                                     std::string(value) + "'"));
        CHECK_THAT(run.err, Contains(std::string(server_usage)));
    }
    const completed_run missing = run_server({"127.0.0.1", "0", "--batch-wait"});
    REQUIRE(missing.status.exited);
    CHECK(missing.status.code == 2);
    CHECK_THAT(missing.err, Contains(std::string(server_usage)));
}

// The features line -v prints once the server listens.
std::string features_line(std::vector<std::string> options) {
    std::vector<std::string> argv{UCORO_ECHO_SERVER, "-q", "-v"};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.insert(argv.end(), {"127.0.0.1", "0"});
    child_process server(argv);
    std::string found;
    for (int i = 0; i < 3 && found.empty(); ++i) { // listening, receive path, features
        const auto line = server.read_stdout_line();
        REQUIRE(line);
        if (line->starts_with("features: ")) {
            found = *line;
        }
    }
    server.send_signal(SIGINT);
    const auto status = server.wait();
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    return found;
}

TEST_CASE("echo server -v names the batch wait, and --batch-wait 0 and --disable batch-wait turn "
          "it off",
          "[echo_server][cli]") {
    ucoro::io_context_options probe;
    probe.batch_wait = std::chrono::microseconds(200);
    bool kernel_has_it = false;
    try {
        ucoro::io_context context(probe);
        kernel_has_it = context.features().batch_wait;
    } catch (const std::system_error& e) {
        WARN("SKIPPED: io_uring is not available here: " << e.what());
        return;
    }
    // Off by default (docs/benchmarks.md, "The batch wait's default").
    CHECK_THAT(features_line({}), EndsWith("batch wait off"));
    CHECK_THAT(features_line({"--batch-wait", "200"}),
               EndsWith(kernel_has_it
                            ? "batch wait 200 us"
                            : "batch wait off (the kernel lacks IORING_FEAT_MIN_TIMEOUT, 6.12)"));
    if (kernel_has_it) {
        CHECK_THAT(features_line({"--batch-wait", "1000"}), EndsWith("batch wait 1000 us"));
    }
    CHECK_THAT(features_line({"--batch-wait", "0"}), EndsWith("batch wait off"));
    CHECK_THAT(features_line({"--batch-wait", "000"}), EndsWith("batch wait off"));
    // --disable wins whatever the order.
    CHECK_THAT(features_line({"--disable", "batch-wait", "--batch-wait", "300"}),
               EndsWith("batch wait off"));
}

TEST_CASE("echo server with an invalid port exits 2", "[echo_server][cli]") {
    for (const char* port : {"65536", "-1", "12ab", ""}) {
        INFO("port '" << port << "'");
        const completed_run run = run_server({"127.0.0.1", port});
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 2);
        CHECK(run.out.empty());
        CHECK_FALSE(run.err.empty());
    }
}

TEST_CASE("echo server on a port in use exits 1 naming the cause and the address",
          "[echo_server][startup]") {
    // Somebody else listens on the port first; SO_REUSEADDR (which the server sets) does
    // not let a second socket bind a port that has a listener.
    const unique_fd taken = ucoro_test::bind_loopback(/*listen_too=*/true);
    const std::string address = fmt::format("127.0.0.1:{}", ucoro_test::local_port(taken.get()));
    const completed_run run =
        run_server({"127.0.0.1", std::to_string(ucoro_test::local_port(taken.get()))});
    INFO("stderr: " << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    CHECK(run.out.empty());
    CHECK_THAT(run.err, Contains("Address already in use"));
    CHECK_THAT(run.err, Contains(address));
    CHECK(split_lines(run.err).size() == 1);
}

TEST_CASE("echo server with a host that is not an IP address exits 1", "[echo_server][startup]") {
    const completed_run run = run_server({"not-an-ip", "0"});
    INFO("stderr: " << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    CHECK(run.out.empty());
    CHECK_THAT(run.err, Contains("not-an-ip"));
    CHECK(split_lines(run.err).size() == 1);
}

TEST_CASE("echo client binary against echo server binary", "[echo_server][e2e]") {
    constexpr unsigned connection_count = 3;
    running_server server;
    const completed_run client =
        run_program({UCORO_ECHO_CLIENT, "127.0.0.1", std::to_string(server.port),
                     std::to_string(connection_count)});
    INFO("client stdout:\n" << client.out << "client stderr:\n" << client.err);
    REQUIRE(client.status.exited);
    REQUIRE(client.status.code == 0);
    CHECK(client.err.empty());

    // The client prints every chunk it received as `received "..." from connection N`;
    // TCP may split or merge the two messages, so compare the concatenation per connection.
    std::map<unsigned, std::string> received;
    constexpr std::string_view received_prefix = "received \"";
    constexpr std::string_view from = "\" from connection ";
    for (const std::string& line : split_lines(client.out)) {
        if (!line.starts_with(received_prefix)) {
            continue;
        }
        const std::size_t end = line.rfind(from);
        REQUIRE(end != std::string::npos);
        const unsigned id = static_cast<unsigned>(std::stoul(line.substr(end + from.size())));
        received[id] += line.substr(received_prefix.size(), end - received_prefix.size());
    }
    REQUIRE(received.size() == connection_count);
    for (const auto& [id, text] : received) {
        INFO("connection " << id);
        CHECK(text == "Message 1 from client.Message 2 from client.");
        CHECK_THAT(client.out, Contains(fmt::format("closing connection {}\n", id)));
    }

    // The server logged each connection's beginning and end; the client has exited, so the
    // lines are on their way: read them as they come instead of guessing when.
    std::size_t accepted = 0;
    std::size_t closed = 0;
    while (closed < connection_count) {
        const auto line = server.process.read_stdout_line();
        REQUIRE(line);
        if (line->starts_with("accepted connection from 127.0.0.1:")) {
            ++accepted;
        } else if (line->starts_with("closing connection to 127.0.0.1:")) {
            ++closed;
        } else {
            FAIL("unexpected server line: " << *line);
        }
    }
    CHECK(accepted == connection_count);

    server.process.send_signal(SIGINT);
    const auto status = server.process.wait();
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK(server.process.stderr_text().empty());
}

TEST_CASE("echo server -q prints no line per connection", "[echo_server][e2e]") {
    running_server server(/*quiet=*/true);
    const completed_run client =
        run_program({UCORO_ECHO_CLIENT, "127.0.0.1", std::to_string(server.port), "2"});
    INFO("client stderr:\n" << client.err);
    REQUIRE(client.status.exited);
    REQUIRE(client.status.code == 0);

    server.process.send_signal(SIGINT);
    const auto status = server.process.wait();
    INFO("server stdout:\n" << server.process.stdout_text());
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK(count_lines_starting_with(server.process.stdout_text(), "accepted connection") == 0);
    CHECK(count_lines_starting_with(server.process.stdout_text(), "closing connection") == 0);
    // -q is about per-connection lines; why the server stopped is still said.
    CHECK(count_lines_starting_with(server.process.stdout_text(), "caught SIGINT") == 1);
}

TEST_CASE("echo server closes every live connection on SIGINT and exits 0",
          "[echo_server][signal]") {
    check_shutdown_with_live_connections(SIGINT, "SIGINT");
}

TEST_CASE("echo server closes every live connection on SIGTERM and exits 0",
          "[echo_server][signal]") {
    check_shutdown_with_live_connections(SIGTERM, "SIGTERM");
}

TEST_CASE("echo server logic stopped with 1000 live connections leaves no descriptor open",
          "[echo_server][in_process]") {
    // 1,000 frames suspended in recv when stop() cancels them: under ASan this is the
    // shutdown that must free every frame only after its operation has completed.
    constexpr std::size_t connection_count = 1000;
    const std::size_t fds_before = count_open_fds();
    {
        std::optional<ucoro::io_context> context;
        try {
            context.emplace();
        } catch (const std::system_error& e) {
            WARN("SKIPPED: io_uring is not available here: " << e.what());
            return;
        }
        // The clients outlive run(): the server side must close its ends by itself when the
        // context stops, which the clients then see as end of stream.
        std::vector<ucoro::net::socket> clients;
        std::string failure;
        ucoro::apps::echo_server_stats stats;
        {
            ucoro::net::listener listener(*context, ucoro::net::address::ipv4_loopback(0));
            context->spawn(
                ucoro::apps::accept_connections(*context, listener, /*quiet=*/true, stats));
            context->spawn(connect_check_and_stop(*context, listener.local_address(),
                                                  connection_count, clients, failure));
            context->run();
        }
        REQUIRE(failure.empty());
        REQUIRE(clients.size() == connection_count);
        CHECK(stats.accepted == connection_count);
        CHECK(stats.closed == connection_count);
        CHECK_FALSE(stats.failed);
        for (const ucoro::net::socket& client : clients) {
            REQUIRE(ucoro_test::wait_readable(client.native_handle()));
            char byte = 0;
            CHECK(::recv(client.native_handle(), &byte, 1, 0) == 0);
        }
    }
    CHECK(count_open_fds() == fds_before);
}

namespace {

// Runs in the child before exec: the common default soft limit of 1024 open files, with
// the hard limit left as it is.
int soft_limit_1024(const void*) noexcept {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return errno;
    }
    limit.rlim_cur = 1024;
    return ::setrlimit(RLIMIT_NOFILE, &limit) == 0 ? 0 : errno;
}

} // namespace

TEST_CASE("server and client raise a soft open-file limit of 1024 to carry 1500 connections",
          "[echo_server][echo_client][e2e]") {
    constexpr unsigned connection_count = 1500;
    rlimit limit{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
    if (limit.rlim_max < 2 * connection_count + 100) {
        WARN("SKIPPED: the hard limit on open files (" << limit.rlim_max << ") is too low");
        return;
    }
    child_process server({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"}, soft_limit_1024);
    const auto line = server.read_stdout_line();
    REQUIRE(line);
    const auto port = ucoro_test::parse_listening_port(*line);
    REQUIRE(port);

    child_process client(
        {UCORO_ECHO_CLIENT, "127.0.0.1", std::to_string(*port), std::to_string(connection_count)},
        soft_limit_1024);
    const auto client_status = client.wait();
    INFO("client stderr:\n" << client.stderr_text().substr(0, 2000));
    REQUIRE(client_status.exited);
    CHECK(client_status.code == 0);
    CHECK_THAT(client.stdout_text(), Contains("all 1500 connections got back every byte"));

    server.send_signal(SIGINT);
    const auto server_status = server.wait();
    INFO("server stderr:\n" << server.stderr_text());
    REQUIRE(server_status.exited);
    CHECK(server_status.code == 0);
}

namespace {

/// Makes the next io_uring_enter fail with ENOMEM, once.
class fail_one_enter final : public ucoro::detail::fault_injector {
public:
    int before_enter() noexcept override { return std::exchange(m_armed, false) ? -ENOMEM : 0; }

private:
    bool m_armed = true;
};

ucoro::task<void> sleep_quietly(ucoro::io_context& context) {
    (void)co_await ucoro::sleep_for(context, std::chrono::hours(1));
}

} // namespace

TEST_CASE("a failure that kills the accept loop stops the server with one line and a failure",
          "[echo_server][in_process]") {
    // A 2-entry SQ: two sleeps fill it in the first turn, so arming the accept must flush
    // it, and that io_uring_enter fails. The exception leaves the accept loop.
    std::optional<ucoro::io_context> context;
    try {
        context.emplace(ucoro::io_context_options{2, 16});
    } catch (const std::system_error& e) {
        WARN("SKIPPED: io_uring is not available here: " << e.what());
        return;
    }
    ucoro::net::listener listener(*context, ucoro::net::address::ipv4_loopback(0));
    ucoro::apps::echo_server_stats stats;
    fail_one_enter faults;
    ucoro::detail::set_fault_injector(*context, &faults);
    context->spawn(sleep_quietly(*context));
    context->spawn(sleep_quietly(*context));
    context->spawn(ucoro::apps::accept_connections(*context, listener, /*quiet=*/true, stats));
    ucoro_test::stderr_capture capture;
    context->run(); // before the fix: the hour-long sleeps kept a server that accepts nothing
    const std::string captured = capture.finish();
    INFO("stderr: " << captured);
    CHECK(stats.failed);
    CHECK(context->in_flight() == 0);
    CHECK(split_lines(captured).size() == 1);
    CHECK_THAT(captured, StartsWith("ucoro-echo-server: the accept loop failed: "));
    CHECK_THAT(captured, Contains("Cannot allocate memory"));
}
