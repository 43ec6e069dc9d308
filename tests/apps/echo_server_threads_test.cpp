// ucoro-echo-server --threads N end to end: the drain on SIGINT with live connections on
// every thread, a second signal with peers stuck in a send, --max-connections as a limit on
// the whole server, and the option's values. (Byte-exact load over 2 and 4 threads is in
// echo_load_test.cpp, the summed --metrics in echo_server_metrics_test.cpp.)
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
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
using ucoro_test::receive_exactly;
using ucoro_test::send_exactly;
using ucoro_test::unique_fd;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct server_process {
    child_process process;
    std::uint16_t port = 0;

    explicit server_process(std::vector<std::string> options)
        : process(make_argv(std::move(options))) {
        const auto line = process.read_stdout_line();
        INFO("stderr: " << process.stderr_text());
        REQUIRE(line);
        const auto announced = ucoro_test::parse_listening_port(*line);
        INFO("first line: " << *line);
        REQUIRE(announced);
        port = *announced;
    }

    static std::vector<std::string> make_argv(std::vector<std::string> options) {
        std::vector<std::string> argv{UCORO_ECHO_SERVER};
        argv.insert(argv.end(), options.begin(), options.end());
        argv.emplace_back("127.0.0.1");
        argv.emplace_back("0");
        return argv;
    }
};

// How many connections each thread accepted, from -v's "thread N: connections: A accepted".
std::vector<std::uint64_t> accepted_per_thread(const std::string& out) {
    std::vector<std::uint64_t> counts;
    for (const std::string& line : ucoro_test::split_lines(out)) {
        constexpr std::string_view marker = ": connections: ";
        const std::size_t at = line.find(marker);
        if (line.starts_with("thread ") && at != std::string::npos) {
            counts.push_back(std::stoull(line.substr(at + marker.size())));
        }
    }
    return counts;
}

// True if the peer closed (end of stream or reset) within the wait, having sent nothing.
bool sees_close(int fd) {
    if (!ucoro_test::wait_readable(fd)) {
        return false;
    }
    char byte = 0;
    const ssize_t n = ::recv(fd, &byte, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

bool wait_writable(int fd, std::chrono::milliseconds timeout) {
    pollfd entry{fd, POLLOUT, 0};
    return ::poll(&entry, 1, static_cast<int>(timeout.count())) > 0;
}

} // namespace

TEST_CASE("threads: SIGINT with live connections on every thread finishes each echo in flight "
          "and exits 0",
          "[echo_server][threads][e2e]") {
    constexpr unsigned threads = 4;
    constexpr std::size_t count = 200; // all on one of 4 threads: a chance of 4^-199
    if (!ucoro_test::ensure_fd_limit(2 * count + 256)) {
        WARN("SKIPPED: RLIMIT_NOFILE is too low for " << count << " connections");
        return;
    }
    server_process server(
        {"-q", "-v", "--threads", std::to_string(threads), "--drain-timeout", "20"});
    std::vector<unique_fd> clients;
    for (std::size_t i = 0; i < count; ++i) {
        clients.push_back(ucoro_test::connect_loopback(server.port));
        send_exactly(clients.back().get(), "a");
        REQUIRE(receive_exactly(clients.back().get(), 1) == "a"); // accepted and live
    }
    // A message each still in flight when the signal comes: every thread's drain echoes
    // it, then closes the connection.
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
    const std::string out = server.process.stdout_text();
    INFO("stdout:\n" << out << "stderr:\n" << server.process.stderr_text());
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK(took < 20s); // it finished before the drain timeout, not by it
    CHECK_THAT(out, Contains(fmt::format("caught SIGINT, draining {} connections", count)));
    CHECK_THAT(out, !Contains("drain timeout"));
    CHECK(server.process.stderr_text().empty());
    const auto counts = accepted_per_thread(out);
    REQUIRE(counts.size() == threads);
    std::uint64_t total = 0;
    std::size_t used = 0;
    for (const std::uint64_t n : counts) {
        total += n;
        used += n > 0 ? 1 : 0;
    }
    CHECK(total == count);
    CHECK(used == threads); // live connections on every thread when the signal came
}

TEST_CASE("threads: a second SIGINT closes everything at once, peers stuck in a send included",
          "[echo_server][threads][e2e]") {
    server_process server({"-q", "--threads", "2", "--drain-timeout", "120"});
    // Peers that never read: each leaves the server holding an echo it cannot send.
    std::vector<unique_fd> stuck;
    for (int i = 0; i < 3; ++i) {
        unique_fd peer(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        const int small = 4096;
        REQUIRE(::setsockopt(peer.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
        const sockaddr_in address = ucoro_test::loopback_address(server.port);
        REQUIRE(::connect(peer.get(), reinterpret_cast<const sockaddr*>(&address),
                          sizeof(address)) == 0);
        send_exactly(peer.get(), "x");
        REQUIRE(receive_exactly(peer.get(), 1) == "x");
        REQUIRE(::fcntl(peer.get(), F_SETFL, O_NONBLOCK) == 0);
        const std::string chunk(64 * 1024, 'z');
        bool stalled = false;
        for (std::size_t pushed = 0; pushed < 1024 * chunk.size();) {
            if (!wait_writable(peer.get(), 1000ms)) {
                stalled = true; // every buffer on the way is full
                break;
            }
            const ssize_t n = ::send(peer.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
            REQUIRE(n > 0);
            pushed += static_cast<std::size_t>(n);
        }
        REQUIRE(stalled);
        stuck.push_back(std::move(peer));
    }
    server.process.send_signal(SIGINT);
    const auto first = server.process.read_stdout_line();
    REQUIRE(first);
    CHECK_THAT(*first, StartsWith("caught SIGINT, draining 3 connections"));
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

TEST_CASE("threads: --max-connections 10 over 4 threads never serves more than 10 of 50 clients",
          "[echo_server][threads][e2e]") {
    constexpr std::size_t limit = 10;
    constexpr std::size_t count = 50;
    server_process server({"--threads", "4", "--max-connections", std::to_string(limit)});
    std::vector<unique_fd> clients;
    std::map<std::string, std::size_t> by_name;
    for (std::size_t i = 0; i < count; ++i) {
        clients.push_back(ucoro_test::connect_loopback(server.port));
        sockaddr_in local{};
        socklen_t length = sizeof(local);
        REQUIRE(::getsockname(clients.back().get(), reinterpret_cast<sockaddr*>(&local), &length) ==
                0);
        by_name[fmt::format("127.0.0.1:{}", ntohs(local.sin_port))] = i;
        send_exactly(clients.back().get(), fmt::format("client {:02}", i));
    }
    // The server's own account, whichever thread writes each line: "accepted" is printed
    // after the connection took its slot and "closing" before it gives the slot back, so
    // the lines never show fewer live connections than there are.
    constexpr std::string_view accepted_prefix = "accepted connection from ";
    constexpr std::string_view closing_prefix = "closing connection to ";
    const std::string paused_line =
        fmt::format("{} connections: not accepting until one closes", limit);
    std::set<std::size_t> live;
    std::set<std::size_t> served;
    std::size_t most = 0;
    while (served.size() < count) {
        const auto line = server.process.read_stdout_line();
        INFO("stdout so far:\n" << server.process.stdout_text());
        REQUIRE(line);
        if (line->starts_with(accepted_prefix)) {
            const auto found = by_name.find(line->substr(accepted_prefix.size()));
            REQUIRE(found != by_name.end());
            live.insert(found->second);
            REQUIRE(live.size() <= limit);
            most = std::max(most, live.size());
        } else if (line->starts_with(closing_prefix)) {
            const auto found = by_name.find(line->substr(closing_prefix.size()));
            REQUIRE(found != by_name.end());
            live.erase(found->second);
        } else if (*line != paused_line) {
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
    CHECK(most == limit);
    server.process.send_signal(SIGINT);
    const auto status = server.process.wait();
    REQUIRE(status.exited);
    CHECK(status.code == 0);
}

TEST_CASE("threads: bad --threads values exit 2 with the usage line, --help names the default",
          "[echo_server][threads]") {
    for (const char* bad : {"0", "-1", "two", "1025", ""}) {
        INFO("--threads '" << bad << "'");
        const auto run =
            ucoro_test::run_program({UCORO_ECHO_SERVER, "--threads", bad, "127.0.0.1", "0"});
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 2);
        CHECK_THAT(run.err, Contains("--threads must be a whole number from 1 to 1024"));
        CHECK_THAT(run.err, Contains(std::string(ucoro_test::echo_server_usage)));
    }
    const auto help = ucoro_test::run_program({UCORO_ECHO_SERVER, "--help"});
    REQUIRE(help.status.exited);
    CHECK(help.status.code == 0);
    CHECK_THAT(help.out, Contains("--threads N"));
    CHECK_THAT(help.out, Contains("default: one per CPU this process may run on"));
    CHECK_THAT(help.out, Contains("sched_getaffinity"));
}

TEST_CASE("threads: --threads 1 is the single-threaded server", "[echo_server][threads][e2e]") {
    server_process server({"-q", "-v", "--threads", "1"});
    {
        const unique_fd client = ucoro_test::connect_loopback(server.port);
        send_exactly(client.get(), "one thread");
        CHECK(receive_exactly(client.get(), 10) == "one thread");
    }
    server.process.send_signal(SIGINT);
    const auto status = server.process.wait();
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    const std::string out = server.process.stdout_text();
    INFO(out);
    CHECK_THAT(out, Contains("threads: 1,"));
    CHECK(accepted_per_thread(out).empty()); // no per-thread lines: the totals are the thread's
    CHECK_THAT(out, Contains("connections: 1 accepted, 1 closed"));
}

TEST_CASE("threads: 2,000 connections opening and closing at once (half reset) leave every "
          "--max-connections slot free, on 2 and 4 threads",
          "[echo_server][threads][e2e]") {
    constexpr std::size_t churn = 2'000;
    constexpr std::size_t limit = 8;
    if (!ucoro_test::ensure_fd_limit(churn + 200)) {
        WARN("SKIPPED: the descriptor limit is below " << churn + 200);
        return;
    }
    for (const char* threads : {"2", "4"}) {
        INFO("--threads " << threads);
        server_process server(
            {"-q", "--threads", threads, "--max-connections", std::to_string(limit)});
        const sockaddr_in to = ucoro_test::loopback_address(server.port);
        std::vector<unique_fd> burst;
        for (std::size_t i = 0; i < churn; ++i) {
            unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
            REQUIRE(fd);
            const int result =
                ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof(to));
            const int error = errno;
            REQUIRE((result == 0 || error == EINPROGRESS));
            burst.push_back(std::move(fd));
        }
        for (std::size_t i = 0; i < burst.size(); ++i) {
            // Established or not yet: a failed send is part of the churn.
            if (wait_writable(burst[i].get(), 5s)) {
                (void)::send(burst[i].get(), "x", 1, MSG_NOSIGNAL);
            }
            if (i % 2 == 1) {
                const linger reset{1, 0}; // close with RST
                REQUIRE(::setsockopt(burst[i].get(), SOL_SOCKET, SO_LINGER, &reset,
                                     sizeof(reset)) == 0);
            }
            burst[i].reset();
        }
        // Every slot came back: `limit` clients at once are each served (they wait in the
        // backlogs behind what is left of the burst); a slot lost would starve one.
        std::vector<unique_fd> clients;
        for (std::size_t i = 0; i < limit; ++i) {
            clients.push_back(ucoro_test::connect_loopback(server.port));
            send_exactly(clients.back().get(), fmt::format("client {}", i));
        }
        for (std::size_t i = 0; i < limit; ++i) {
            const std::string expected = fmt::format("client {}", i);
            CHECK(receive_exactly(clients[i].get(), expected.size(), 30s) == expected);
        }
        server.process.send_signal(SIGINT);
        const auto status = server.process.wait();
        REQUIRE(status.exited);
        CHECK(status.code == 0);
        CHECK(server.process.stderr_text().empty());
    }
}
