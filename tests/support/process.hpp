// A child process for end-to-end tests: started with fork/exec, its stdout and stderr read
// through pipes, waited on with bounded waits, and killed and reaped by the destructor, so a
// failing REQUIRE never leaves a server running behind the test.
//
// Header-only on purpose: every test program includes it and none links an extra library.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "support/unique_fd.hpp"

namespace ucoro_test {

/// How long a test waits for an event (a line, end of output, an exit) before giving up.
/// A safety net against a hang, never a way to let time pass: every wait returns as soon
/// as its event happens.
inline constexpr std::chrono::seconds default_wait{60};

/// Runs in the child between fork and exec. Only async-signal-safe calls are allowed there
/// (the parent may have other threads, whose locks the child inherits held), so it gets a
/// plain pointer to data prepared before the fork. Returns 0, or an errno to abort the spawn.
using child_setup = int (*)(const void* data) noexcept;

/// The child could not be started. `in_setup` tells a failed child_setup (for example a
/// kernel without seccomp) apart from a failed exec or pipe.
class spawn_error : public std::system_error {
public:
    spawn_error(int error, bool setup_failed, const std::string& what)
        : std::system_error(error, std::system_category(), what), m_in_setup(setup_failed) {}
    bool in_setup() const noexcept { return m_in_setup; }

private:
    bool m_in_setup;
};

/// How a child ended: exit(code), or killed by a signal.
struct exit_status {
    bool exited = false;
    int code = -1;  // valid if exited
    int signal = 0; // valid if !exited
};

class child_process {
public:
    /// Starts argv[0] (a path, no PATH lookup) with stdin from /dev/null, stdout and stderr
    /// into pipes, every signal at its default action and none blocked: the test runner's
    /// own signal handling must not leak into the program under test. Throws spawn_error.
    explicit child_process(std::vector<std::string> argv, child_setup setup = nullptr,
                           const void* setup_data = nullptr) {
        if (argv.empty()) {
            throw std::invalid_argument("child_process: empty argv");
        }
        std::vector<char*> pointers;
        for (std::string& arg : argv) {
            pointers.push_back(arg.data());
        }
        pointers.push_back(nullptr);

        // Every descriptor is close-on-exec, so the child gets exactly 0, 1 and 2 and never
        // a copy of another pipe or socket of the test (which would keep it open).
        int out_pipe[2] = {-1, -1};
        int err_pipe[2] = {-1, -1};
        int status_pipe[2] = {-1, -1};
        const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        auto close_all = [&] {
            for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], status_pipe[0],
                           status_pipe[1], null_fd}) {
                if (fd >= 0) {
                    ::close(fd);
                }
            }
        };
        if (null_fd < 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0 ||
            ::pipe2(status_pipe, O_CLOEXEC) != 0) {
            const int error = errno;
            close_all();
            throw spawn_error(error, false, "child_process: pipe");
        }

        const pid_t pid = ::fork();
        if (pid < 0) {
            const int error = errno;
            close_all();
            throw spawn_error(error, false, "child_process: fork");
        }
        if (pid == 0) {
            run_child(pointers.data(), null_fd, out_pipe[1], err_pipe[1], status_pipe[1], setup,
                      setup_data);
        }

        m_pid = pid;
        ::close(out_pipe[1]);
        ::close(err_pipe[1]);
        ::close(status_pipe[1]);
        ::close(null_fd);
        m_out.fd = out_pipe[0];
        m_err.fd = err_pipe[0];

        // The status pipe closes on a successful exec (close-on-exec) or carries the failure.
        // exec either happens or fails at once, so this read does not need a timeout.
        child_failure failure{};
        ssize_t n = 0;
        do {
            n = ::read(status_pipe[0], &failure, sizeof(failure));
        } while (n < 0 && errno == EINTR);
        ::close(status_pipe[0]);
        if (n == static_cast<ssize_t>(sizeof(failure))) {
            reap_blocking();
            close_pipes();
            throw spawn_error(failure.error, failure.in_setup != 0,
                              std::string("child_process: ") +
                                  (failure.in_setup != 0 ? "setup before exec of " : "exec of ") +
                                  argv[0]);
        }
    }

    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    ~child_process() {
        if (!m_status) {
            ::kill(m_pid, SIGKILL); // the test failed (or forgot): never leave it running
            reap_blocking();
        }
        close_pipes();
    }

    pid_t pid() const noexcept { return m_pid; }

    /// The next line the child writes to stdout, without its '\n' (a last line without one
    /// counts too), or nullopt at end of output or when `timeout` passes first.
    std::optional<std::string> read_stdout_line(std::chrono::milliseconds timeout = default_wait) {
        return read_line(m_out, timeout);
    }
    std::optional<std::string> read_stderr_line(std::chrono::milliseconds timeout = default_wait) {
        return read_line(m_err, timeout);
    }

    void send_signal(int signal_number) const {
        if (!m_status && ::kill(m_pid, signal_number) != 0) {
            throw std::system_error(errno, std::system_category(), "kill");
        }
    }

    /// Reads all the child's output until it closes both streams, then reaps it. If that
    /// takes longer than `timeout` the child is killed and std::runtime_error thrown.
    exit_status wait(std::chrono::milliseconds timeout = default_wait) {
        if (m_status) {
            return *m_status;
        }
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (m_out.fd >= 0 || m_err.fd >= 0) {
            if (!pump(deadline)) {
                ::kill(m_pid, SIGKILL);
                reap_blocking();
                throw std::runtime_error("child_process: no exit within the timeout; killed");
            }
        }
        // Both streams are closed, which a process does when it exits: waitpid returns at
        // once in every case the tests produce.
        reap_blocking();
        return *m_status;
    }

    /// Everything the child wrote so far (all of it after wait()), including the lines
    /// already returned by read_*_line.
    const std::string& stdout_text() const noexcept { return m_out.text; }
    const std::string& stderr_text() const noexcept { return m_err.text; }

private:
    struct stream {
        int fd = -1;
        std::string text;       // everything read so far
        std::size_t cursor = 0; // where the next read_line starts
    };

    struct child_failure {
        int in_setup;
        int error;
    };

    [[noreturn]] static void run_child(char* const* argv, int null_fd, int out_fd, int err_fd,
                                       int status_fd, child_setup setup,
                                       const void* setup_data) noexcept {
        auto fail = [status_fd](int in_setup, int error) {
            const child_failure failure{in_setup, error};
            (void)!::write(status_fd, &failure, sizeof(failure));
            ::_exit(127);
        };
        if (::dup2(null_fd, STDIN_FILENO) < 0 || ::dup2(out_fd, STDOUT_FILENO) < 0 ||
            ::dup2(err_fd, STDERR_FILENO) < 0) {
            fail(0, errno);
        }
        // Catch2 installs handlers and a test may block or ignore signals; an exec keeps
        // ignored dispositions and the mask, so reset both.
        for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
            ::signal(signal_number, SIG_DFL); // fails harmlessly for SIGKILL, SIGSTOP, ...
        }
        sigset_t none;
        ::sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        if (setup != nullptr) {
            if (const int error = setup(setup_data); error != 0) {
                fail(1, error);
            }
        }
        ::execv(argv[0], argv);
        fail(0, errno);
        ::_exit(127); // not reached: fail() exits
    }

    // Waits until at least one stream has news (data or end of file) and reads it. Both
    // streams are read together so that a child blocked on a full stderr pipe cannot stall
    // a reader waiting for stdout. Returns false if the deadline passed first.
    bool pump(std::chrono::steady_clock::time_point deadline) {
        pollfd fds[2];
        stream* streams[2];
        nfds_t count = 0;
        for (stream* s : {&m_out, &m_err}) {
            if (s->fd >= 0) {
                fds[count] = {s->fd, POLLIN, 0};
                streams[count] = s;
                ++count;
            }
        }
        if (count == 0) {
            return true;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return false;
        }
        const int ready = ::poll(fds, count, static_cast<int>(left.count()));
        if (ready < 0) {
            if (errno == EINTR) {
                return true;
            }
            throw std::system_error(errno, std::system_category(), "poll");
        }
        if (ready == 0) {
            return false;
        }
        for (nfds_t i = 0; i < count; ++i) {
            if (fds[i].revents == 0) {
                continue;
            }
            char buffer[4096];
            const ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
            if (n > 0) {
                streams[i]->text.append(buffer, static_cast<std::size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                ::close(streams[i]->fd); // end of output (or a broken pipe: same thing here)
                streams[i]->fd = -1;
            }
        }
        return true;
    }

    std::optional<std::string> read_line(stream& s, std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            const std::size_t newline = s.text.find('\n', s.cursor);
            if (newline != std::string::npos) {
                std::string line = s.text.substr(s.cursor, newline - s.cursor);
                s.cursor = newline + 1;
                return line;
            }
            if (s.fd < 0) {
                if (s.cursor < s.text.size()) {
                    std::string rest = s.text.substr(s.cursor);
                    s.cursor = s.text.size();
                    return rest;
                }
                return std::nullopt;
            }
            if (!pump(deadline)) {
                return std::nullopt;
            }
        }
    }

    void reap_blocking() {
        int status = 0;
        pid_t result = 0;
        do {
            result = ::waitpid(m_pid, &status, 0);
        } while (result < 0 && errno == EINTR);
        exit_status outcome;
        if (result == m_pid && WIFEXITED(status)) {
            outcome.exited = true;
            outcome.code = WEXITSTATUS(status);
        } else if (result == m_pid && WIFSIGNALED(status)) {
            outcome.signal = WTERMSIG(status);
        }
        m_status = outcome;
    }

    void close_pipes() noexcept {
        for (stream* s : {&m_out, &m_err}) {
            if (s->fd >= 0) {
                ::close(s->fd);
                s->fd = -1;
            }
        }
    }

    pid_t m_pid = -1;
    stream m_out;
    stream m_err;
    std::optional<exit_status> m_status; // set once reaped
};

/// What a program that ran to the end left behind.
struct completed_run {
    exit_status status;
    std::string out;
    std::string err;
};

/// Runs a program to completion (bounded by `timeout`) and collects its output.
inline completed_run run_program(std::vector<std::string> argv,
                                 std::chrono::milliseconds timeout = default_wait) {
    child_process child(std::move(argv));
    const exit_status status = child.wait(timeout);
    return {status, child.stdout_text(), child.stderr_text()};
}

/// Splits text into lines (without the '\n').
inline std::vector<std::string> split_lines(std::string_view text) {
    std::vector<std::string> lines;
    while (!text.empty()) {
        const std::size_t newline = text.find('\n');
        lines.emplace_back(text.substr(0, newline));
        text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    }
    return lines;
}

/// The echo server announces its port as "listening on 127.0.0.1:PORT"; most app tests
/// start it on port 0 and need that number. nullopt if the line is not that announcement.
inline std::optional<std::uint16_t> parse_listening_port(std::string_view line) {
    constexpr std::string_view prefix = "listening on ";
    if (line.substr(0, prefix.size()) != prefix) {
        return std::nullopt;
    }
    const std::size_t colon = line.rfind(':');
    if (colon == std::string_view::npos) {
        return std::nullopt;
    }
    const std::string_view digits = line.substr(colon + 1);
    std::uint16_t port = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (error != std::errc() || end != digits.data() + digits.size() || port == 0) {
        return std::nullopt;
    }
    return port;
}

/// The path of `name` in a directory of $PATH that has it executable, or nothing (then a
/// test that needs it skips, saying so).
inline std::optional<std::string> find_on_path(std::string_view name) {
    const char* path = std::getenv("PATH");
    std::string_view dirs = path != nullptr ? path : "/usr/bin:/bin";
    while (!dirs.empty()) {
        const std::size_t colon = dirs.find(':');
        const std::string candidate = std::string(dirs.substr(0, colon)) + "/" + std::string(name);
        if (::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
        dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    }
    return std::nullopt;
}

/// Reads a server's first line and returns the port it announces, or nothing if the line
/// is missing or is not "listening on HOST:PORT".
inline std::optional<std::uint16_t> read_listening_port(child_process& server) {
    const auto line = server.read_stdout_line();
    return line ? parse_listening_port(*line) : std::nullopt;
}

// ---------------------------------------------------------------------------------------
// Plain blocking sockets on 127.0.0.1, for the test's side of a conversation with a child
// (and for stand-in servers). All close-on-exec, so a child never inherits one and keeps a
// connection open behind the test's back.
// ---------------------------------------------------------------------------------------

inline sockaddr_in loopback_address(std::uint16_t port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    return address;
}

/// A TCP socket bound to 127.0.0.1 on a port the kernel picks; listening if `listen_too`
/// (a socket that is bound but not listening reserves a port nobody answers on).
inline unique_fd bind_loopback(bool listen_too) {
    unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        throw std::system_error(errno, std::system_category(), "socket");
    }
    const sockaddr_in address = loopback_address(0);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
        throw std::system_error(errno, std::system_category(), "bind 127.0.0.1:0");
    }
    if (listen_too && ::listen(fd.get(), SOMAXCONN) != 0) {
        throw std::system_error(errno, std::system_category(), "listen");
    }
    return fd;
}

/// The local port of a bound socket.
inline std::uint16_t local_port(int fd) {
    sockaddr_in address{};
    socklen_t length = sizeof(address);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        throw std::system_error(errno, std::system_category(), "getsockname");
    }
    return ntohs(address.sin_port);
}

/// A blocking TCP connection to 127.0.0.1:port.
inline unique_fd connect_loopback(std::uint16_t port) {
    unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        throw std::system_error(errno, std::system_category(), "socket");
    }
    const sockaddr_in address = loopback_address(port);
    int result = 0;
    do {
        result = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    } while (result != 0 && errno == EINTR);
    if (result != 0) {
        throw std::system_error(errno, std::system_category(),
                                "connect 127.0.0.1:" + std::to_string(port));
    }
    return fd;
}

/// Sends every byte of `bytes` on a plain (blocking) socket; throws if the socket fails.
inline void send_exactly(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            throw std::system_error(n < 0 ? errno : EPIPE, std::system_category(), "send");
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

inline bool wait_readable(int fd, std::chrono::milliseconds timeout = default_wait);

/// Reads until `size` bytes or end of stream, waiting at most `timeout` for each piece:
/// what arrived, possibly less.
inline std::string receive_exactly(int fd, std::size_t size,
                                   std::chrono::milliseconds timeout = default_wait) {
    std::string received;
    std::array<char, 16384> buffer{};
    while (received.size() < size) {
        if (!wait_readable(fd, timeout)) {
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

/// Waits (bounded) until `fd` is readable or at end of stream. False on timeout.
inline bool wait_readable(int fd, std::chrono::milliseconds timeout) {
    pollfd entry{fd, POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return false;
        }
        const int ready = ::poll(&entry, 1, static_cast<int>(left.count()));
        if (ready > 0) {
            return true;
        }
        if (ready < 0 && errno != EINTR) {
            throw std::system_error(errno, std::system_category(), "poll");
        }
    }
}

} // namespace ucoro_test
