// End-to-end tests of ucoro-echo-client against stand-in servers written here with plain
// blocking sockets: one that echoes a byte per send (so the client sees other chunks than it
// sent), one that corrupts a byte, one that hangs up early; plus refused connections and the
// command line.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "support/process.hpp"

namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using ucoro_test::completed_run;
using ucoro_test::split_lines;
using ucoro_test::unique_fd;

constexpr std::string_view client_usage =
    "usage: ucoro-echo-client [-t SECONDS] {HOST PORT | unix:PATH} NUM_CONNECTIONS";
constexpr std::string_view sent_text = "Message 1 from client.Message 2 from client.";

completed_run run_client(std::vector<std::string> args) {
    args.insert(args.begin(), UCORO_ECHO_CLIENT);
    return ucoro_test::run_program(std::move(args));
}

completed_run run_client_against(std::uint16_t port, unsigned connections) {
    return run_client({"127.0.0.1", std::to_string(port), std::to_string(connections)});
}

bool send_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

/// A thread-per-connection TCP server on 127.0.0.1 whose per-connection behaviour is a
/// function of the blocking socket and the connection's number in accept order (from 0).
/// The function returns when it is done; the server then closes the socket.
class stand_in_server {
public:
    using handler = std::function<void(int fd, std::size_t index)>;

    explicit stand_in_server(handler on_connection)
        : m_listener(ucoro_test::bind_loopback(/*listen_too=*/true)),
          m_port(ucoro_test::local_port(m_listener.get())), m_handler(std::move(on_connection)) {
        int wake[2];
        if (::pipe2(wake, O_CLOEXEC) != 0) {
            throw std::system_error(errno, std::system_category(), "pipe2");
        }
        m_wake_read.reset(wake[0]);
        m_wake_write.reset(wake[1]);
        m_acceptor = std::thread([this] { accept_loop(); });
    }

    stand_in_server(const stand_in_server&) = delete;
    stand_in_server& operator=(const stand_in_server&) = delete;

    ~stand_in_server() {
        // Wake the acceptor, then any handler still blocked in recv/send (a test that
        // failed half-way), and wait for all of them.
        (void)!::write(m_wake_write.get(), "x", 1);
        m_acceptor.join();
        {
            const std::lock_guard lock(m_mutex);
            for (int fd : m_open) {
                ::shutdown(fd, SHUT_RDWR);
            }
        }
        for (std::thread& worker : m_workers) {
            worker.join();
        }
    }

    std::uint16_t port() const noexcept { return m_port; }
    std::size_t accepted() const noexcept { return m_accepted.load(); }

private:
    void accept_loop() {
        while (true) {
            // No timeout: the destructor always writes to the wake pipe.
            pollfd fds[2] = {{m_listener.get(), POLLIN, 0}, {m_wake_read.get(), POLLIN, 0}};
            if (::poll(fds, 2, -1) < 0) {
                if (errno == EINTR) {
                    continue;
                }
                return;
            }
            if (fds[1].revents != 0) {
                return;
            }
            const int fd = ::accept4(m_listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                continue; // the peer gave up first (ECONNABORTED) or EINTR
            }
            const std::size_t index = m_accepted.fetch_add(1);
            const std::lock_guard lock(m_mutex);
            m_open.insert(fd);
            m_workers.emplace_back([this, fd, index] {
                m_handler(fd, index);
                // Closed under the lock so the destructor never shuts down a reused number.
                const std::lock_guard worker_lock(m_mutex);
                m_open.erase(fd);
                ::close(fd);
            });
        }
    }

    unique_fd m_listener;
    std::uint16_t m_port;
    handler m_handler;
    unique_fd m_wake_read;
    unique_fd m_wake_write;
    std::atomic<std::size_t> m_accepted{0};
    std::mutex m_mutex;
    std::set<int> m_open;               // guarded by m_mutex
    std::vector<std::thread> m_workers; // guarded by m_mutex until the acceptor has ended
    std::thread m_acceptor;             // last: started after everything it uses exists
};

// Echoes every byte in a send of its own, with Nagle off so each leaves in its own segment:
// the client receives chunks that have nothing to do with its two messages.
void echo_byte_by_byte(int fd, std::size_t) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char buffer[4096];
    while (true) {
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        for (ssize_t i = 0; i < n; ++i) {
            if (!send_all(fd, buffer + i, 1)) {
                return;
            }
        }
    }
}

// Echoes faithfully except one byte at `offset` of the stream of connection `victim`.
stand_in_server::handler corrupt_one_byte(std::size_t victim, std::size_t offset) {
    return [victim, offset](int fd, std::size_t index) {
        char buffer[4096];
        std::size_t position = 0;
        while (true) {
            const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return;
            }
            const std::size_t size = static_cast<std::size_t>(n);
            if (index == victim && offset >= position && offset < position + size) {
                buffer[offset - position] ^= 0x20; // 'M' <-> 'm', 'e' <-> 'E', ...
            }
            position += size;
            if (!send_all(fd, buffer, size)) {
                return;
            }
        }
    };
}

// Reads everything the client sends (so that closing sends a FIN, not a reset), returns
// only the first `echoed` bytes, and hangs up.
stand_in_server::handler close_after(std::size_t echoed) {
    return [echoed](int fd, std::size_t) {
        std::string received;
        char buffer[256];
        while (received.size() < sent_text.size()) {
            const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return;
            }
            received.append(buffer, static_cast<std::size_t>(n));
        }
        (void)send_all(fd, received.data(), echoed);
    };
}

std::vector<std::string> client_failure_lines(const std::string& err) {
    std::vector<std::string> lines;
    for (const std::string& line : split_lines(err)) {
        if (line.starts_with("ucoro-echo-client: connection ")) {
            lines.push_back(line);
        }
    }
    return lines;
}

} // namespace

TEST_CASE("echo client accepts an echo that arrives one byte per send", "[echo_client][e2e]") {
    constexpr unsigned connections = 5;
    stand_in_server server(echo_byte_by_byte);
    const completed_run run = run_client_against(server.port(), connections);
    INFO("stdout:\n" << run.out << "stderr:\n" << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 0);
    CHECK(run.err.empty());
    CHECK(server.accepted() == connections);
    for (unsigned id = 1; id <= connections; ++id) {
        CHECK_THAT(run.out, Contains(fmt::format("closing connection {}\n", id)));
    }
}

TEST_CASE("echo client exits 1 naming the connection whose echo has a corrupted byte",
          "[echo_client][e2e]") {
    SECTION("one connection") {
        stand_in_server server(corrupt_one_byte(0, 22));
        const completed_run run = run_client_against(server.port(), 1);
        INFO("stdout:\n" << run.out << "stderr:\n" << run.err);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 1);
        std::string corrupted(sent_text);
        corrupted[22] ^= 0x20; // "Message 2" becomes "message 2"
        const auto failures = client_failure_lines(run.err);
        REQUIRE(failures.size() == 1);
        CHECK_THAT(failures[0], StartsWith("ucoro-echo-client: connection 1: "));
        CHECK_THAT(failures[0], Contains(std::string(sent_text)));
        CHECK_THAT(failures[0], Contains(corrupted));
        CHECK_THAT(run.err, Contains("1 of 1 connections failed"));
    }
    SECTION("only one of four connections") {
        stand_in_server server(corrupt_one_byte(0, 3));
        const completed_run run = run_client_against(server.port(), 4);
        INFO("stdout:\n" << run.out << "stderr:\n" << run.err);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 1);
        CHECK(server.accepted() == 4);
        // Which client connection the server accepted first is up to the scheduler, so
        // any one of them may be named, but exactly one.
        const auto failures = client_failure_lines(run.err);
        REQUIRE(failures.size() == 1);
        CHECK_THAT(failures[0], Contains("but received"));
        CHECK_THAT(run.err, Contains("1 of 4 connections failed"));
    }
}

TEST_CASE("echo client exits 1 when the server closes before echoing everything",
          "[echo_client][e2e]") {
    SECTION("after part of the echo") {
        stand_in_server server(close_after(10));
        const completed_run run = run_client_against(server.port(), 1);
        INFO("stdout:\n" << run.out << "stderr:\n" << run.err);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 1);
        CHECK_THAT(run.err, Contains("connection 1: server closed the connection after 10 of "
                                     "44 bytes"));
    }
    SECTION("without reading anything") {
        // The close may reach the client as end of stream or as a reset, depending on
        // whether its bytes had arrived: either way the connection failed.
        stand_in_server server([](int, std::size_t) {});
        const completed_run run = run_client_against(server.port(), 2);
        INFO("stdout:\n" << run.out << "stderr:\n" << run.err);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 1);
        CHECK(client_failure_lines(run.err).size() == 2);
        CHECK_THAT(run.err, Contains("2 of 2 connections failed"));
    }
}

TEST_CASE("echo client exits 1 when the connection is refused", "[echo_client][e2e]") {
    // Bound but not listening: the port is ours, so nobody else can answer on it.
    const unique_fd reserved = ucoro_test::bind_loopback(/*listen_too=*/false);
    const std::uint16_t port = ucoro_test::local_port(reserved.get());
    const completed_run run = run_client_against(port, 2);
    INFO("stderr:\n" << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    const auto failures = client_failure_lines(run.err);
    REQUIRE(failures.size() == 2);
    for (const std::string& line : failures) {
        CHECK_THAT(line, Contains(fmt::format("connect to 127.0.0.1:{} failed", port)));
        CHECK_THAT(line, Contains("Connection refused"));
    }
}

TEST_CASE("echo client gives up with exit 1 on a server that never answers", "[echo_client][e2e]") {
    // A listener that never accepts: connections complete in its backlog and the messages
    // fit in the socket buffers, so only the client's timeout can end the run.
    const unique_fd silent = ucoro_test::bind_loopback(/*listen_too=*/true);
    const completed_run run = run_client(
        {"-t", "1", "127.0.0.1", std::to_string(ucoro_test::local_port(silent.get())), "3"});
    INFO("stderr:\n" << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    CHECK_THAT(run.err, Contains("connection 1: receive failed after 0 of 44 bytes: no answer "
                                 "within 1 s"));
    CHECK_THAT(run.err, Contains("3 of 3 connections failed"));
}

TEST_CASE("echo client rejects a bad timeout with usage and exit 2", "[echo_client][cli]") {
    for (const char* seconds : {"0", "x", "-5", "86401"}) {
        const completed_run run = run_client({"-t", seconds, "127.0.0.1", "1", "1"});
        INFO("-t " << seconds << " stderr:\n" << run.err);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 2);
        CHECK_THAT(run.err, Contains(std::string(client_usage)));
    }
}

TEST_CASE("echo client rejects wrong arguments with usage and exit 2", "[echo_client][cli]") {
    const std::vector<std::vector<std::string>> cases = {
        {},
        {"127.0.0.1"},
        {"127.0.0.1", "1"},
        {"127.0.0.1", "1", "1", "extra"},
        {"127.0.0.1", "65536", "1"},
        {"127.0.0.1", "port", "1"},
        {"127.0.0.1", "1", "0"},
        {"127.0.0.1", "1", "-1"},
        {"127.0.0.1", "1", "many"},
        {"127.0.0.1", "1", "10001"},
    };
    for (const auto& args : cases) {
        INFO("arguments: " << fmt::format("{}", fmt::join(args, " ")));
        const completed_run run = run_client(args);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 2);
        CHECK(run.out.empty());
        CHECK_THAT(run.err, Contains(std::string(client_usage)));
    }
}

TEST_CASE("echo client --help prints usage on stdout and exits 0", "[echo_client][cli]") {
    const completed_run run = run_client({"--help"});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 0);
    CHECK_THAT(run.out, StartsWith(std::string(client_usage)));
    CHECK(run.err.empty());
}

TEST_CASE("echo client with a host that is not an IP address exits 1", "[echo_client][cli]") {
    const completed_run run = run_client({"not-an-ip", "1", "1"});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    CHECK_THAT(run.err, Contains("not-an-ip"));
}
