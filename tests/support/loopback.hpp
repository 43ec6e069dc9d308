// Helpers shared by the tests in tests/net/: an io_context that tolerates a machine without
// io_uring, connected pairs of sockets over 127.0.0.1, a plain-fd peer whose options can be
// set before the handshake, byte patterns and bounded readers.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "support/context.hpp"
#include "support/unique_fd.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

namespace ucoro_test {

/// True when `fd` names no open descriptor: fcntl fails with EBADF.
inline bool fd_is_closed(int fd) {
    errno = 0;
    return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

inline void set_int_option(int fd, int level, int name, int value) {
    if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
        throw std::system_error(errno, std::system_category(), "setsockopt");
    }
}

inline int get_int_option(int fd, int level, int name) {
    int value = 0;
    socklen_t length = sizeof(value);
    if (::getsockopt(fd, level, name, &value, &length) != 0) {
        throw std::system_error(errno, std::system_category(), "getsockopt");
    }
    return value;
}

/// Tests about SIGPIPE are only meaningful if the signal would kill the program: set the
/// default disposition and unblock it, whatever the parent process arranged. (Kernels whose
/// io_uring adds MSG_NOSIGNAL to every send cannot raise it at all; older ones can.)
inline void restore_default_sigpipe() {
    struct sigaction action {};
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    REQUIRE(::sigaction(SIGPIPE, &action, nullptr) == 0);
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    REQUIRE(::sigprocmask(SIG_UNBLOCK, &pipe_only, nullptr) == 0);
}

/// A client and the server side the listener accepted for it.
struct connected_pair {
    ucoro::net::socket client;
    ucoro::net::socket server;
};

/// Connects to `server` and accepts the connection. Sequential awaits are enough: the
/// kernel completes the handshake into the listen backlog, so connect finishes before
/// accept is even submitted. Failures throw, which block_on hands to Catch.
inline ucoro::task<connected_pair> connect_pair(ucoro::io_context& context,
                                                ucoro::net::listener& server) {
    auto [connect_error, client] = co_await ucoro::net::connect(context, server.local_address());
    if (connect_error) {
        throw std::system_error(connect_error, "connect");
    }
    auto [accept_error, accepted] = co_await server.accept();
    if (accept_error) {
        throw std::system_error(accept_error, "accept");
    }
    co_return connected_pair{std::move(client), std::move(accepted)};
}

/// A TCP client built by hand so that SO_RCVBUF is set before connect: the receive window
/// (and its scale) is negotiated in the handshake, so setting it later would not keep the
/// sender from filling a large window. The blocking connect returns as soon as the
/// listener's backlog holds the connection. The result is adopted by a ucoro socket so
/// that the test can read from it in a coroutine.
inline ucoro::net::socket connect_with_receive_buffer(ucoro::io_context& context,
                                                      const ucoro::net::address& to,
                                                      int receive_buffer) {
    unique_fd fd(::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
        throw std::system_error(errno, std::system_category(), "socket");
    }
    set_int_option(fd.get(), SOL_SOCKET, SO_RCVBUF, receive_buffer);
    if (::connect(fd.get(), to.data(), to.size()) != 0) {
        throw std::system_error(errno, std::system_category(), "connect");
    }
    return ucoro::net::socket(context, fd.release(), to);
}

/// Bytes that do not repeat with a short period (xorshift), so a lost, duplicated or
/// reordered chunk cannot compare equal by accident the way a 0..255 ramp could.
inline std::vector<std::byte> make_pattern(std::size_t size, std::uint32_t seed = 0x9e3779b9u) {
    std::vector<std::byte> bytes(size);
    std::uint32_t state = seed != 0 ? seed : 1;
    for (auto& b : bytes) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        b = static_cast<std::byte>(state >> 24);
    }
    return bytes;
}

inline std::vector<std::byte> to_bytes(std::string_view text) {
    const auto* first = reinterpret_cast<const std::byte*>(text.data());
    return {first, first + text.size()};
}

/// The bytes as text, for assertions: Catch prints a std::string on failure, while a
/// std::byte vector needs a StringMaker that Catch2 v2 defines only for some compilers.
inline std::string as_text(const std::vector<std::byte>& bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

/// What a bounded reader saw.
struct read_result {
    std::vector<std::byte> bytes;
    std::error_code error;
    bool end_of_stream = false; // recv returned 0
    std::size_t recv_calls = 0;
};

/// Reads with `chunk`-byte recvs until end of stream, an error, or `limit` bytes. Every
/// recv that does not end the loop returns at least one byte, so limit + 1 calls bound it.
inline ucoro::task<read_result> read_until_end(ucoro::net::socket& sock, std::size_t chunk,
                                               std::size_t limit) {
    read_result result;
    std::vector<std::byte> buffer(chunk);
    while (result.bytes.size() < limit && result.recv_calls <= limit) {
        const std::size_t want = std::min(chunk, limit - result.bytes.size());
        auto [error, n] = co_await sock.recv(std::span(buffer).first(want));
        ++result.recv_calls;
        if (error) {
            result.error = error;
            break;
        }
        if (n == 0) {
            result.end_of_stream = true;
            break;
        }
        result.bytes.insert(result.bytes.end(), buffer.begin(),
                            buffer.begin() + static_cast<std::ptrdiff_t>(n));
    }
    co_return result;
}

/// The first index where `a` and `b` differ (or the shorter length), to report where a
/// byte-for-byte comparison broke instead of dumping megabytes.
inline std::size_t first_difference(std::span<const std::byte> a, std::span<const std::byte> b) {
    const std::size_t n = std::min(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        if (a[i] != b[i]) {
            return i;
        }
    }
    return n;
}

} // namespace ucoro_test

/// Byte-for-byte equality with a readable failure: sizes and the first differing offset.
#define UCORO_CHECK_SAME_BYTES(actual, expected)                                                   \
    do {                                                                                           \
        const std::span<const std::byte> ucoro_actual_{actual};                                    \
        const std::span<const std::byte> ucoro_expected_{expected};                                \
        INFO("actual size " << ucoro_actual_.size() << ", expected size "                          \
                            << ucoro_expected_.size() << ", first difference at "                  \
                            << ucoro_test::first_difference(ucoro_actual_, ucoro_expected_));      \
        CHECK((ucoro_actual_.size() == ucoro_expected_.size() &&                                   \
               std::equal(ucoro_actual_.begin(), ucoro_actual_.end(), ucoro_expected_.begin())));  \
    } while (false)
