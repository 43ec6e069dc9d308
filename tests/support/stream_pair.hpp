// stream_pair: a connected AF_UNIX stream, one end driven through the ring and the other by
// plain syscalls, for tests that need a silent or a scripted peer without a listener.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstddef>
#include <span>
#include <system_error>

#include "support/unique_fd.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/socket.hpp"

namespace ucoro_test {

struct stream_pair {
    ucoro::net::socket ours;
    unique_fd peer;
};

inline stream_pair make_stream_pair(ucoro::io_context& context) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        throw std::system_error(errno, std::system_category(), "socketpair");
    }
    return {ucoro::net::socket(context, fds[0], ucoro::net::address()), unique_fd(fds[1])};
}

/// Writes all of `bytes` to a plain descriptor (a socket buffer takes small writes whole).
inline void write_all(int fd, std::span<const std::byte> bytes) {
    REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
}

} // namespace ucoro_test
