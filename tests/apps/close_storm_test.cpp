// The close storm, end to end against ucoro-echo-server: thousands of clients echo 1 KiB
// byte for byte, then all end their connections at once. The server must give every
// descriptor back within a bound and meanwhile answer a fresh client within another.
//
// The regression it guards against: each close used to queue a cancel by descriptor
// (IORING_ASYNC_CANCEL_FD), which the kernel serves by walking every request in flight, so
// N closes cost O(N^2) and, at 20,000 connections, a fresh client waited seconds.
//
// UCORO_CLOSE_STORM_CONNECTIONS=<n> overrides the number of connections (at most what the
// descriptor limit allows), to measure the scene at other sizes (docs/cancellation.md).
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "support/fd_limit.hpp"
#include "support/process.hpp"
#include "support/unique_fd.hpp"

namespace {

using ucoro_test::unique_fd;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t max_connections = 10'000;
constexpr std::size_t min_connections = 1'000; // fewer could not show an O(N^2) close
constexpr std::size_t message_size = 1024;
// Descriptors each process needs besides one per connection (stdio, pipes, the ring, the
// listener, the epoll instance, the fresh client).
constexpr std::size_t spare_descriptors = 256;
// Connections opened (and echoed) together: well under the listen backlog (SOMAXCONN),
// so a connect never waits for a SYN retransmission, while the server still sees many
// echoes at once.
constexpr std::size_t opening_batch = 256;

// The bounds: every descriptor back, counted from the moment the first client ends; the
// fresh client's echo, counted from its connect. Measured with 10,000 connections on a
// 2-core machine shared with other builds (docs/cancellation.md, "Closing a socket"): every
// descriptor back in 0.23-0.64 s and a fresh client answered in 0.08-0.25 s with the
// release server, 0.34-0.59 s and 0.07-0.28 s under ASan; with the close that cancelled by
// descriptor, 1.3-2.7 s and 1.1-2.2 s. About 2.5 times the worst seen, for a busy CI
// machine; the fresh client's bound still fails the O(N^2) close.
constexpr std::chrono::milliseconds all_closed_bound = 1500ms;
constexpr std::chrono::milliseconds fresh_echo_bound = 750ms;

enum class server_path { fast, simple };

// As many connections as the descriptor limit allows here (the server inherits it).
std::optional<std::size_t> connection_count() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return std::nullopt;
    }
    std::size_t wanted = max_connections;
    if (const char* text = std::getenv("UCORO_CLOSE_STORM_CONNECTIONS")) {
        wanted = std::stoul(text);
    }
    if (limit.rlim_max != RLIM_INFINITY) {
        const auto hard = static_cast<std::size_t>(limit.rlim_max);
        wanted = std::min(wanted, hard > spare_descriptors ? hard - spare_descriptors : 0);
    }
    if (wanted < min_connections || !ucoro_test::ensure_fd_limit(wanted + spare_descriptors)) {
        return std::nullopt;
    }
    return wanted;
}

// What client `id` sends: different on every connection, so an echo that crossed two
// connections is caught.
std::string message_for(std::size_t id) {
    std::string message(message_size, '\0');
    std::uint64_t state = 0x9E3779B97F4A7C15ULL * (id + 1);
    for (char& byte : message) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        byte = static_cast<char>((state * 0x2545F4914F6CDD1DULL) >> 56);
    }
    return message;
}

bool send_exactly(int fd, const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        sent += static_cast<std::size_t>(n);
    }
    return true;
}

// Reads `size` bytes, each wait bounded by `timeout`; what arrived, possibly less.
std::string receive_exactly(int fd, std::size_t size, std::chrono::milliseconds timeout) {
    std::string received;
    std::array<char, message_size> buffer{};
    while (received.size() < size) {
        if (!ucoro_test::wait_readable(fd, timeout)) {
            break;
        }
        const ssize_t n =
            ::recv(fd, buffer.data(), std::min(buffer.size(), size - received.size()), 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        received.append(buffer.data(), static_cast<std::size_t>(n));
    }
    return received;
}

std::size_t open_descriptors(pid_t pid) {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid))) {
        ++count;
    }
    return count;
}

// Waits until every one of `clients` reads end of stream, or until `deadline`. The server
// sends its FIN only once its close has released the socket, after taking the descriptor
// out of its table, so this is the event "the server has closed them all". Returns how
// many are still open.
std::size_t wait_for_end_of_stream(const std::vector<unique_fd>& clients,
                                   steady::time_point deadline) {
    unique_fd poller(::epoll_create1(EPOLL_CLOEXEC));
    REQUIRE(poller);
    for (const unique_fd& client : clients) {
        epoll_event interest{};
        interest.events = EPOLLIN | EPOLLRDHUP;
        interest.data.fd = client.get();
        REQUIRE(::epoll_ctl(poller.get(), EPOLL_CTL_ADD, client.get(), &interest) == 0);
    }
    std::size_t open = clients.size();
    std::array<epoll_event, 1024> ready{};
    while (open > 0) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now());
        if (left.count() <= 0) {
            break;
        }
        const int n = ::epoll_wait(poller.get(), ready.data(), static_cast<int>(ready.size()),
                                   static_cast<int>(left.count()));
        REQUIRE((n >= 0 || errno == EINTR));
        for (int i = 0; i < n; ++i) {
            const int fd = ready[static_cast<std::size_t>(i)].data.fd;
            char byte = 0;
            const ssize_t got = ::recv(fd, &byte, 1, MSG_DONTWAIT);
            if (got > 0 || (got < 0 && (errno == EAGAIN || errno == EINTR))) {
                continue; // not the end: nothing more is expected, the byte count check says
            }
            --open;
            REQUIRE(::epoll_ctl(poller.get(), EPOLL_CTL_DEL, fd, nullptr) == 0);
        }
    }
    return open;
}

void check_close_storm(server_path path) {
    const auto count = connection_count();
    if (!count) {
        WARN("SKIPPED: RLIMIT_NOFILE does not allow " << min_connections << " connections");
        return;
    }
    std::vector<std::string> argv{UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"};
    if (path == server_path::simple) {
        argv.insert(argv.begin() + 1, "--simple");
    }
    ucoro_test::child_process server(argv);
    const auto port = ucoro_test::read_listening_port(server);
    INFO("server stderr: " << server.stderr_text());
    REQUIRE(port);
    const std::size_t baseline = open_descriptors(server.pid());

    // Every client echoes its 1 KiB, byte for byte.
    std::vector<unique_fd> clients;
    clients.reserve(*count + 1);
    std::size_t wrong_echoes = 0;
    for (std::size_t first = 0; first < *count; first += opening_batch) {
        const std::size_t end = std::min(*count, first + opening_batch);
        for (std::size_t id = first; id < end; ++id) {
            clients.push_back(ucoro_test::connect_loopback(*port));
            REQUIRE(send_exactly(clients.back().get(), message_for(id)));
        }
        for (std::size_t id = first; id < end; ++id) {
            const std::string echo = receive_exactly(clients[id].get(), message_size, 10s);
            wrong_echoes += echo == message_for(id) ? 0 : 1;
        }
    }
    REQUIRE(wrong_echoes == 0);
    REQUIRE(open_descriptors(server.pid()) == baseline + *count);

    // All end at once. shutdown(SHUT_WR) sends the FIN a close would, and keeps the client's
    // descriptor so that the server's FIN in return can be waited for.
    const auto storm = steady::now();
    for (const unique_fd& client : clients) {
        REQUIRE(::shutdown(client.get(), SHUT_WR) == 0);
    }

    // A fresh client, in the middle of the storm.
    const auto fresh_start = steady::now();
    clients.push_back(ucoro_test::connect_loopback(*port));
    const std::string fresh_message = message_for(*count);
    REQUIRE(send_exactly(clients.back().get(), fresh_message));
    const std::string fresh_echo =
        receive_exactly(clients.back().get(), message_size, ucoro_test::default_wait);
    const auto fresh_wait = steady::now() - fresh_start;
    REQUIRE(::shutdown(clients.back().get(), SHUT_WR) == 0);

    const std::size_t still_open =
        wait_for_end_of_stream(clients, storm + ucoro_test::default_wait);
    const auto all_closed = steady::now() - storm;
    const std::size_t left_in_server = open_descriptors(server.pid());

    fmt::print("close storm ({}): {} connections: every descriptor back in {:.3f} s, a fresh "
               "client echoed in {:.3f} s\n",
               path == server_path::fast ? "default" : "--simple", *count,
               std::chrono::duration<double>(all_closed).count(),
               std::chrono::duration<double>(fresh_wait).count());
    CHECK(fresh_echo == fresh_message);
    CHECK(fresh_wait < fresh_echo_bound);
    CHECK(still_open == 0);
    CHECK(left_in_server == baseline);
    CHECK(all_closed < all_closed_bound);

    server.send_signal(SIGINT);
    const auto status = server.wait();
    INFO("server stdout: " << server.stdout_text());
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK(server.stderr_text().empty());
}

} // namespace

// No semicolon in the names: ctest would split the test at it (a CMake list).
TEST_CASE("close storm: thousands of connections end at once, every descriptor comes back and a "
          "fresh client is answered meanwhile",
          "[echo_server][close][e2e]") {
    check_close_storm(server_path::fast);
}

TEST_CASE("close storm on the simple path: every descriptor comes back and a fresh client is "
          "answered",
          "[echo_server][close][e2e]") {
    check_close_storm(server_path::simple);
}
