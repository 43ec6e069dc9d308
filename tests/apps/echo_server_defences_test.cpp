// The echo server's defences, end to end against the real binary: --idle-timeout,
// --send-timeout, --max-connections, running out of descriptors, and draining on SIGINT.
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "support/echo_server_usage.hpp"
#include "support/fd_limit.hpp"
#include "support/process.hpp"
#include "support/unique_fd.hpp"

namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using ucoro_test::child_process;
using ucoro_test::split_lines;
using ucoro_test::unique_fd;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view server_usage = ucoro_test::echo_server_usage;

// The fast path (multishot receive into the shared ring) or --simple (recv + send_all).
enum class server_path { fast, simple };

struct server_process {
    child_process process;
    std::uint16_t port = 0;

    server_process(server_path path, std::vector<std::string> options,
                   ucoro_test::child_setup setup = nullptr, const void* setup_data = nullptr)
        : process(make_argv(path, std::move(options)), setup, setup_data) {
        const auto line = process.read_stdout_line();
        INFO("stderr: " << process.stderr_text());
        REQUIRE(line);
        const auto announced = ucoro_test::parse_listening_port(*line);
        INFO("first line: " << *line);
        REQUIRE(announced);
        port = *announced;
    }

    static std::vector<std::string> make_argv(server_path path, std::vector<std::string> options) {
        std::vector<std::string> argv{UCORO_ECHO_SERVER};
        if (path == server_path::simple) {
            argv.emplace_back("--simple");
        }
        argv.insert(argv.end(), options.begin(), options.end());
        argv.emplace_back("127.0.0.1");
        argv.emplace_back("0");
        return argv;
    }
};

using ucoro_test::send_exactly;

using ucoro_test::receive_exactly;

// True if the peer has closed: recv sees end of stream or a reset (bounded wait).
bool sees_close(int fd, std::chrono::milliseconds timeout = ucoro_test::default_wait) {
    if (!ucoro_test::wait_readable(fd, timeout)) {
        return false;
    }
    char byte = 0;
    const ssize_t n = ::recv(fd, &byte, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

// Waits (bounded) until `fd` can take more bytes. False on timeout.
bool wait_writable(int fd, std::chrono::milliseconds timeout) {
    pollfd entry{fd, POLLOUT, 0};
    int ready = 0;
    do {
        ready = ::poll(&entry, 1, static_cast<int>(timeout.count()));
    } while (ready < 0 && errno == EINTR);
    return ready > 0;
}

std::string peer_name(int fd) {
    return fmt::format("127.0.0.1:{}", ucoro_test::local_port(fd));
}

// A field of /proc/PID/status in kB ("VmRSS", "VmHWM").
long status_kb(pid_t pid, std::string_view field) {
    std::ifstream status(fmt::format("/proc/{}/status", pid));
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with(field) && line.size() > field.size() && line[field.size()] == ':') {
            return std::stol(line.substr(field.size() + 1));
        }
    }
    return -1;
}

// utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat).
double cpu_seconds(pid_t pid) {
    std::ifstream stat(fmt::format("/proc/{}/stat", pid));
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto end_of_name = text.rfind(')');
    REQUIRE(end_of_name != std::string::npos);
    std::istringstream fields(text.substr(end_of_name + 2));
    std::string field;
    long utime = 0;
    long stime = 0;
    for (int index = 3; fields >> field; ++index) {
        if (index == 14) {
            utime = std::stol(field);
        } else if (index == 15) {
            stime = std::stol(field);
            break;
        }
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The highest descriptor number a process has open.
int highest_fd(pid_t pid) {
    int highest = -1;
    for (const auto& entry : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid))) {
        highest = std::max(highest, std::stoi(entry.path().filename().string()));
    }
    return highest;
}

// The server says it exits 0 after a signal; every test ends that way.
void stop_server(server_process& server) {
    server.process.send_signal(SIGINT);
    const auto status = server.process.wait();
    INFO("stdout:\n"
         << server.process.stdout_text().substr(0, 4000) << "stderr:\n"
         << server.process.stderr_text().substr(0, 4000));
    REQUIRE(status.exited);
    CHECK(status.code == 0);
}

// A fresh client gets its echo within a second: the server is not clogged.
void check_fresh_client_echoes(std::uint16_t port) {
    unique_fd fresh = ucoro_test::connect_loopback(port);
    send_exactly(fresh.get(), "still serving");
    CHECK(receive_exactly(fresh.get(), 13, 1s) == "still serving");
}

// --- --idle-timeout ---------------------------------------------------------------------

void check_idle_timeout(server_path path) {
    constexpr std::size_t count = 1000;
    if (!ucoro_test::ensure_fd_limit(2 * count + 256)) {
        WARN("SKIPPED: RLIMIT_NOFILE is too low for " << count << " connections");
        return;
    }
    server_process server(path, {"-q", "--idle-timeout", "1"});
    // Each client sends one byte and gets it back, then would trickle the next one later
    // than the timeout allows: the server must close them all, not before a second.
    std::vector<unique_fd> clients;
    std::vector<steady::time_point> echoed_at;
    for (std::size_t i = 0; i < count; ++i) {
        clients.push_back(ucoro_test::connect_loopback(server.port));
        send_exactly(clients.back().get(), "x");
        REQUIRE(receive_exactly(clients.back().get(), 1) == "x");
        echoed_at.push_back(steady::now());
    }
    for (std::size_t i = 0; i < count; ++i) {
        INFO("client " << i);
        REQUIRE(sees_close(clients[i].get(), 20s));
        // The server's last activity on it was before our echo arrived; a second later at
        // the earliest it may close (a little slack for the clock of each side).
        CHECK(steady::now() - echoed_at[i] >= 900ms);
    }
    check_fresh_client_echoes(server.port);
    stop_server(server);
}

TEST_CASE("idle timeout: 1000 connections that stop sending are closed while others are served",
          "[echo_server][defences][e2e]") {
    check_idle_timeout(server_path::fast);
}

TEST_CASE("idle timeout on the simple path: 1000 silent connections are closed",
          "[echo_server][defences][e2e]") {
    check_idle_timeout(server_path::simple);
}

// --- --send-timeout ---------------------------------------------------------------------

void check_send_timeout(server_path path) {
    constexpr std::size_t count = 100;
    if (!ucoro_test::ensure_fd_limit(2 * count + 256)) {
        WARN("SKIPPED: RLIMIT_NOFILE is too low");
        return;
    }
    server_process server(path, {"-q", "--send-timeout", "1"});
    // Peers that never read, with a small receive window: they push data as long as they
    // can, the echoes pile up until the server's sends stall, and the send timeout must
    // reset them.
    std::vector<unique_fd> peers;
    for (std::size_t i = 0; i < count; ++i) {
        unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(fd);
        const int small = 4096;
        REQUIRE(::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
        const sockaddr_in address = ucoro_test::loopback_address(server.port);
        REQUIRE(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) ==
                0);
        REQUIRE(::fcntl(fd.get(), F_SETFL, O_NONBLOCK) == 0);
        peers.push_back(std::move(fd));
    }
    const std::string chunk(64 * 1024, 'z');
    std::vector<bool> closed(count, false);
    std::vector<bool> reset(count, false);
    std::size_t open = count;
    const auto deadline = steady::now() + 60s;
    while (open > 0 && steady::now() < deadline) {
        std::vector<pollfd> waiting;
        std::vector<std::size_t> index;
        for (std::size_t i = 0; i < count; ++i) {
            if (!closed[i]) {
                waiting.push_back({peers[i].get(), POLLOUT | POLLRDHUP, 0});
                index.push_back(i);
            }
        }
        const int ready = ::poll(waiting.data(), waiting.size(), 1000);
        REQUIRE((ready >= 0 || errno == EINTR));
        for (std::size_t k = 0; k < waiting.size(); ++k) {
            const std::size_t i = index[k];
            if ((waiting[k].revents & (POLLERR | POLLHUP | POLLRDHUP)) != 0) {
                closed[i] = true;
                reset[i] = (waiting[k].revents & POLLERR) != 0;
                --open;
            } else if ((waiting[k].revents & POLLOUT) != 0) {
                (void)::send(peers[i].get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
            }
        }
    }
    INFO("peers still open: " << open);
    REQUIRE(open == 0);
    // Lingering 0 s: the server resets a stalled reader rather than leave its unread
    // echoes queued in the kernel.
    std::size_t resets = 0;
    for (bool was_reset : reset) {
        resets += was_reset ? 1 : 0;
    }
    CHECK(resets == count);
    // Neither the stalled peers nor their unsent echoes are held in the server's memory:
    // its peak is a few megabytes of buffer ring plus the program, not 100 peers' worth of
    // the data they pushed.
    const long peak_kb = status_kb(server.process.pid(), "VmHWM");
    INFO("server VmHWM " << peak_kb << " kB, VmRSS " << status_kb(server.process.pid(), "VmRSS")
                         << " kB");
    CHECK(peak_kb > 0);
#if defined(__SANITIZE_ADDRESS__)
    // Under AddressSanitizer freed memory waits in its quarantine (up to 256 MiB) before it
    // is reused, so the peak measures the sanitizer as much as the server: the fast path
    // recycles buffers of its own while the ring is empty (buffer_ring.hpp, "Fairness").
    // The bound is checked in the debug and clang builds, which run this same test.
    CHECK(peak_kb < 512 * 1024);
#else
    CHECK(peak_kb < 64 * 1024);
#endif
    check_fresh_client_echoes(server.port);
    stop_server(server);
}

TEST_CASE("send timeout: 100 peers that never read are reset in bounded memory",
          "[echo_server][defences][e2e]") {
    check_send_timeout(server_path::fast);
}

TEST_CASE("send timeout on the simple path: 100 peers that never read are reset",
          "[echo_server][defences][e2e]") {
    check_send_timeout(server_path::simple);
}

// --- --max-connections ------------------------------------------------------------------

void check_max_connections(server_path path) {
    constexpr std::size_t limit = 10;
    constexpr std::size_t count = 50;
    // One thread: a pause line for every freed slot is a property of one accept loop (with
    // threads, only a thread that finds the server full prints it); the limit across 4
    // threads is checked in echo_server_threads_test.cpp.
    server_process server(path, {"--max-connections", std::to_string(limit), "--threads", "1"});
    std::vector<unique_fd> clients;
    std::map<std::string, std::size_t> by_name;
    for (std::size_t i = 0; i < count; ++i) {
        clients.push_back(ucoro_test::connect_loopback(server.port));
        by_name[peer_name(clients.back().get())] = i;
        send_exactly(clients.back().get(), fmt::format("client {:02}", i));
    }
    // Follow the server's own account: never more than `limit` accepted and not closed.
    // After each `limit`-th it says it stops accepting; then we let one client leave (it
    // got its echo) and the next one is accepted.
    constexpr std::string_view accepted_prefix = "accepted connection from ";
    constexpr std::string_view closing_prefix = "closing connection to ";
    const std::string paused_line =
        fmt::format("{} connections: not accepting until one closes", limit);
    std::set<std::size_t> live;
    std::set<std::size_t> served;
    std::size_t pauses = 0;
    while (served.size() < count) {
        const auto line = server.process.read_stdout_line();
        INFO("stdout so far:\n" << server.process.stdout_text());
        REQUIRE(line);
        if (line->starts_with(accepted_prefix)) {
            const auto found = by_name.find(line->substr(accepted_prefix.size()));
            REQUIRE(found != by_name.end());
            live.insert(found->second);
            REQUIRE(live.size() <= limit);
        } else if (line->starts_with(closing_prefix)) {
            const auto found = by_name.find(line->substr(closing_prefix.size()));
            REQUIRE(found != by_name.end());
            live.erase(found->second);
        } else if (*line == paused_line) {
            ++pauses; // printed by the accept loop, maybe before the last "accepted" line
        } else {
            FAIL("unexpected line: " << *line);
        }
        // Once at the limit (or when the rest all fit), a client that was served leaves.
        if (live.size() == limit || served.size() + live.size() == count) {
            for (std::size_t i : live) {
                if (served.count(i) == 0) {
                    const std::string expected = fmt::format("client {:02}", i);
                    REQUIRE(receive_exactly(clients[i].get(), expected.size()) == expected);
                    served.insert(i);
                    clients[i].reset();
                    break;
                }
            }
        }
    }
    CHECK(served.size() == count);
    CHECK(pauses >= count - limit);
    stop_server(server);
}

TEST_CASE("max connections 10: 50 clients are served at most 10 at a time",
          "[echo_server][defences][e2e]") {
    check_max_connections(server_path::fast);
}

TEST_CASE("max connections 10 on the simple path: 50 clients at most 10 at a time",
          "[echo_server][defences][e2e]") {
    check_max_connections(server_path::simple);
}

// --- out of descriptors -----------------------------------------------------------------

// Runs in the child before exec: soft and hard RLIMIT_NOFILE both set, so that the server's
// raise of the soft limit to the hard one cannot lift it.
int set_fd_limit(const void* data) noexcept {
    // Descriptors the test runner leaked to us without close-on-exec would sit in the
    // server under the limit and skew it: have exec close them.
    if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        return errno;
    }
    const rlim_t value = *static_cast<const rlim_t*>(data);
    const rlimit limit{value, value};
    return ::setrlimit(RLIMIT_NOFILE, &limit) == 0 ? 0 : errno;
}

TEST_CASE("out of descriptors the server pauses accepting once per episode without spinning",
          "[echo_server][defences][e2e]") {
#if defined(__SANITIZE_ADDRESS__)
    // The sanitizer preset also runs UBSan, whose vptr check probes memory by writing it to
    // a pipe: with every descriptor taken it reports a false "not an error_category" on
    // each error_code comparison in the server. The debug and release runs cover this.
    WARN("SKIPPED: under the sanitizers the out-of-descriptors server trips UBSan's "
         "vptr check, which itself needs a free descriptor");
    return;
#endif
    constexpr std::size_t count = 64;
    rlim_t baseline = 0;
    {
        rlimit current{};
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &current) == 0);
        server_process probe(server_path::fast, {"-q"}, set_fd_limit, &current.rlim_cur);
        baseline = static_cast<rlim_t>(highest_fd(probe.process.pid()) + 1);
        stop_server(probe);
    }
    const rlim_t limit = baseline + 16;
    server_process server(server_path::fast, {}, set_fd_limit, &limit);
    std::vector<unique_fd> clients;
    for (std::size_t i = 0; i < count; ++i) {
        clients.push_back(ucoro_test::connect_loopback(server.port));
        send_exactly(clients.back().get(), fmt::format("client {:02}", i));
    }
    // The server runs out of descriptors with most clients still in the backlog.
    const auto paused = server.process.read_stderr_line();
    INFO("limit " << limit << "\nstdout:\n"
                  << server.process.stdout_text() << "stderr:\n"
                  << server.process.stderr_text());
    REQUIRE(paused);
    CHECK_THAT(*paused, StartsWith("ucoro-echo-server: accept: Too many open files; pausing"));

    // Paused, it must not spin: over the next second it uses little CPU (spinning on
    // accept would take most of it) and accepts nobody more.
    const double cpu_before = cpu_seconds(server.process.pid());
    const auto window_end = steady::now() + 1s;
    std::set<std::size_t> echoed;
    while (steady::now() < window_end) {
        std::vector<pollfd> waiting;
        for (const auto& client : clients) {
            waiting.push_back({client.get(), POLLIN, 0});
        }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(window_end - steady::now());
        const int ready = ::poll(waiting.data(), waiting.size(),
                                 static_cast<int>(std::max<long>(left.count(), 0)));
        REQUIRE((ready >= 0 || errno == EINTR));
        for (std::size_t i = 0; i < count; ++i) {
            if ((waiting[i].revents & POLLIN) != 0 && echoed.count(i) == 0) {
                const std::string expected = fmt::format("client {:02}", i);
                REQUIRE(receive_exactly(clients[i].get(), expected.size()) == expected);
                echoed.insert(i);
            }
        }
    }
    const double cpu_paused = cpu_seconds(server.process.pid()) - cpu_before;
    CHECK(cpu_paused < 0.3);
    CHECK(echoed.size() <= 16);
    CHECK(!echoed.empty());

    // Now clients leave as soon as they are served: every one of the 64 is served.
    for (std::size_t i : echoed) {
        clients[i].reset();
    }
    const auto deadline = steady::now() + 60s;
    while (echoed.size() < count && steady::now() < deadline) {
        std::vector<pollfd> waiting;
        std::vector<std::size_t> index;
        for (std::size_t i = 0; i < count; ++i) {
            if (clients[i]) {
                waiting.push_back({clients[i].get(), POLLIN, 0});
                index.push_back(i);
            }
        }
        const int ready = ::poll(waiting.data(), waiting.size(), 1000);
        REQUIRE((ready >= 0 || errno == EINTR));
        for (std::size_t k = 0; k < waiting.size(); ++k) {
            if ((waiting[k].revents & POLLIN) != 0) {
                const std::size_t i = index[k];
                const std::string expected = fmt::format("client {:02}", i);
                REQUIRE(receive_exactly(clients[i].get(), expected.size()) == expected);
                echoed.insert(i);
                clients[i].reset();
            }
        }
    }
    CHECK(echoed.size() == count);
    CHECK(cpu_seconds(server.process.pid()) < 5.0); // generous: a spinning server burns seconds
    stop_server(server);

    // One line when an episode starts and one when accepting resumes: strictly alternating.
    const auto lines = split_lines(server.process.stderr_text());
    REQUIRE(!lines.empty());
    for (std::size_t i = 0; i < lines.size(); ++i) {
        INFO("stderr line " << i << ": " << lines[i]);
        if (i % 2 == 0) {
            CHECK_THAT(lines[i],
                       StartsWith("ucoro-echo-server: accept: Too many open files; pausing"));
        } else {
            CHECK(lines[i] == "ucoro-echo-server: accepting new connections again");
        }
    }
    CHECK(lines.size() % 2 == 0); // the last episode ended: everyone was accepted
}

// --- draining on SIGINT -----------------------------------------------------------------

void check_drain(server_path path) {
    constexpr std::size_t count = 1000;
    if (!ucoro_test::ensure_fd_limit(2 * count + 256)) {
        WARN("SKIPPED: RLIMIT_NOFILE is too low for " << count << " connections");
        return;
    }
    server_process server(path, {"-q", "--drain-timeout", "10"});
    std::vector<unique_fd> clients;
    for (std::size_t i = 0; i < count; ++i) {
        clients.push_back(ucoro_test::connect_loopback(server.port));
        send_exactly(clients.back().get(), "a");
        REQUIRE(receive_exactly(clients.back().get(), 1) == "a"); // accepted and live
    }
    // A message each still in flight when the signal comes: the drain echoes it, then
    // closes the connection.
    for (const auto& client : clients) {
        send_exactly(client.get(), "in flight");
    }
    const auto signalled = steady::now();
    server.process.send_signal(SIGINT);
    for (std::size_t i = 0; i < count; ++i) {
        INFO("client " << i);
        CHECK(receive_exactly(clients[i].get(), 9) == "in flight");
        CHECK(sees_close(clients[i].get()));
    }
    const auto status = server.process.wait();
    const auto took = steady::now() - signalled;
    INFO("stdout:\n"
         << server.process.stdout_text() << "stderr:\n"
         << server.process.stderr_text());
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK(took < 10s); // it finished before the drain timeout, not by it
    CHECK_THAT(server.process.stdout_text(),
               Contains(fmt::format("caught SIGINT, draining {} connections", count)));
    CHECK_THAT(server.process.stdout_text(), !Contains("drain timeout"));
    CHECK(server.process.stderr_text().empty());
}

TEST_CASE("SIGINT drains 1000 live connections: in-flight echoes finish and it exits 0",
          "[echo_server][defences][e2e]") {
    check_drain(server_path::fast);
}

TEST_CASE("SIGINT drains 1000 live connections on the simple path too",
          "[echo_server][defences][e2e]") {
    check_drain(server_path::simple);
}

// A peer that never reads keeps its connection busy (stuck sending its echo), so a drain
// cannot finish by itself: only a second signal or the drain timeout ends it. That holds on
// the fast path, whose stream keeps receiving into ring buffers until the ring is empty: it
// then holds megabytes it cannot send. The simple path holds one 16 KiB buffer; after the
// drain's shutdown(SHUT_RD) it may legitimately echo what is queued into the free part of
// its send buffer and finish, so it cannot be made stuck reliably (the signal handling it
// would test is the same code, coordinate_shutdown).
unique_fd connect_stuck_peer(const server_process& server) {
    unique_fd stuck(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int small = 4096;
    REQUIRE(::setsockopt(stuck.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
    const sockaddr_in address = ucoro_test::loopback_address(server.port);
    REQUIRE(::connect(stuck.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) ==
            0);
    send_exactly(stuck.get(), "x");
    REQUIRE(receive_exactly(stuck.get(), 1) == "x"); // accepted and live
    REQUIRE(::fcntl(stuck.get(), F_SETFL, O_NONBLOCK) == 0);
    // Push until our socket stays unwritable: then every buffer on the way (our send buffer,
    // the server's receive and send buffers, which loopback autotunes up to several MiB each)
    // is full, and the server holds an echo it cannot send. A fixed amount is not enough: on a
    // machine whose buffers took it all, the drain finished before the second signal arrived.
    const std::string chunk(64 * 1024, 'z');
    std::size_t pushed = 0;
    bool stalled = false;
    while (pushed < 1024 * chunk.size()) { // 64 MiB bound: only a server that reads forever
        // A whole second: a server that is only descheduled on a busy machine must not
        // look stuck.
        if (!wait_writable(stuck.get(), 1000ms)) {
            stalled = true; // nobody is reading any more: the server is stuck sending to us
            break;
        }
        const ssize_t n = ::send(stuck.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
        REQUIRE(n > 0);
        pushed += static_cast<std::size_t>(n);
    }
    REQUIRE(stalled);
    return stuck;
}

// The send stuck on that peer is exactly what io_uring's cancel cannot end once the kernel
// has handed it to a worker thread (docs/cancellation.md): the server must still exit.
TEST_CASE("a second SIGINT during a drain closes the connections at once and exits 0",
          "[echo_server][defences][e2e]") {
    server_process server(server_path::fast, {"-q", "--drain-timeout", "120"});
    const unique_fd stuck = connect_stuck_peer(server);
    server.process.send_signal(SIGINT);
    const auto first = server.process.read_stdout_line();
    REQUIRE(first);
    CHECK_THAT(*first, StartsWith("caught SIGINT, draining 1 connection"));
    const auto second_sent = steady::now();
    server.process.send_signal(SIGINT);
    const auto status = server.process.wait();
    INFO("stdout:\n"
         << server.process.stdout_text() << "stderr:\n"
         << server.process.stderr_text());
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK(steady::now() - second_sent < 30s); // at once, not after the 120 s drain
    CHECK_THAT(server.process.stdout_text(), Contains("caught a second signal"));
}

TEST_CASE("the drain timeout closes a connection whose peer never reads and exits 0",
          "[echo_server][defences][e2e]") {
    server_process server(server_path::fast, {"-q", "--drain-timeout", "1"});
    const unique_fd stuck = connect_stuck_peer(server);
    const auto signalled = steady::now();
    server.process.send_signal(SIGTERM);
    const auto status = server.process.wait();
    INFO("stdout:\n"
         << server.process.stdout_text() << "stderr:\n"
         << server.process.stderr_text());
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK(steady::now() - signalled < 30s);
    CHECK_THAT(server.process.stdout_text(),
               Contains("caught SIGTERM, draining 1 connection (up to 1000 ms"));
    CHECK_THAT(server.process.stdout_text(),
               Contains("drain timeout: closing the 1 remaining connection\n"));
    CHECK(server.process.stderr_text().empty());
}

TEST_CASE("a drain stops listening: new connections are refused while it waits for a send",
          "[echo_server][defences][e2e]") {
    // A peer that never reads keeps the drain going (its echo cannot finish), so the server
    // is still running while the new connections below try to come in.
    server_process server(server_path::fast, {"-q", "--drain-timeout", "120"});
    const unique_fd stuck = connect_stuck_peer(server);
    server.process.send_signal(SIGTERM);
    const auto first = server.process.read_stdout_line();
    REQUIRE(first);
    CHECK_THAT(*first, StartsWith("caught SIGTERM, draining 1 connection"));
    // The listener closes once the accept loop has ended, a turn or two after the line
    // above: until then a connect may still complete into the backlog, and the close then
    // resets it, which is the event each such try waits for. Bounded: 1,000 tries.
    const sockaddr_in address = ucoro_test::loopback_address(server.port);
    bool refused = false;
    for (int attempt = 0; attempt < 1000 && !refused; ++attempt) {
        const unique_fd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(probe);
        if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) !=
            0) {
            // Reset: the handshake met the listener's close (with threads, one of several
            // SO_REUSEPORT listeners closing). Try again; the next one finds it gone.
            if (errno == ECONNRESET) {
                continue;
            }
            REQUIRE(errno == ECONNREFUSED);
            refused = true;
        } else {
            REQUIRE(ucoro_test::wait_readable(probe.get(), 5000ms)); // reset by the close
        }
    }
    CHECK(refused);
    server.process.send_signal(SIGINT);
    const auto status = server.process.wait();
    INFO("stdout:\n"
         << server.process.stdout_text() << "stderr:\n"
         << server.process.stderr_text());
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    // Still draining when it was refused: the refusal was the server's, not its exit's.
    CHECK_THAT(server.process.stdout_text(), Contains("caught a second signal"));
    CHECK(server.process.stderr_text().empty());
}

// --- option values ----------------------------------------------------------------------

TEST_CASE("bad values for the defence options exit 2 with the usage line",
          "[echo_server][defences][e2e]") {
    const std::vector<std::vector<std::string>> bad = {
        {"--idle-timeout", "-0.5"},  {"--idle-timeout", "-1"},     {"--idle-timeout", "abc"},
        {"--idle-timeout", "1s"},    {"--send-timeout", ""},       {"--send-timeout", "nan"},
        {"--send-timeout", "1e9"},   {"--drain-timeout", "0"},     {"--max-connections", "0"},
        {"--max-connections", "-3"}, {"--max-connections", "2.5"}, {"--idle-timeout"},
        {"--max-connections"},
    };
    for (const auto& options : bad) {
        std::vector<std::string> argv{UCORO_ECHO_SERVER};
        argv.insert(argv.end(), options.begin(), options.end());
        if (options.size() == 2) {
            argv.emplace_back("127.0.0.1");
            argv.emplace_back("0");
        }
        const auto run = ucoro_test::run_program(argv);
        INFO("options: " << fmt::format("{}", fmt::join(options, " ")) << "\nstderr: " << run.err);
        CHECK(run.status.exited);
        CHECK(run.status.code == 2);
        CHECK_THAT(run.err, Contains(std::string(server_usage)));
        CHECK(run.out.empty());
    }
}

TEST_CASE("0 and off turn a timeout off, and the send timeout is on by default",
          "[echo_server][defences][e2e]") {
    for (const char* value : {"0", "000", "off"}) {
        for (const char* option : {"--idle-timeout", "--send-timeout"}) {
            INFO(option << " " << value);
            // --help after the options: they were parsed (a bad value would exit 2 first).
            const auto run = ucoro_test::run_program({UCORO_ECHO_SERVER, option, value, "--help"});
            REQUIRE(run.status.exited);
            CHECK(run.status.code == 0);
        }
    }
    const auto off = ucoro_test::run_program({UCORO_ECHO_SERVER, "--send-timeout", "of"});
    CHECK(off.status.code == 2);
}

TEST_CASE("help shows the defence options with their defaults", "[echo_server][defences][e2e]") {
    const auto run = ucoro_test::run_program({UCORO_ECHO_SERVER, "--help"});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 0);
    for (const char* text :
         {"--idle-timeout SECONDS", "--send-timeout SECONDS", "--max-connections N",
          "--drain-timeout SECONDS", "(default: off)", "(default: 10)", "(default: no limit)",
          "(default: 5)", "0 or\n            off: never"}) {
        CHECK_THAT(run.out, Contains(text));
    }
}

} // namespace
