// Peers that never read, for end-to-end tests of a server's fairness and defences: each
// connects with a tiny receive buffer and pushes until every buffer on the way to the
// server and back is full. Plain sockets and poll, nothing of ucoro.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "support/process.hpp"
#include "support/unique_fd.hpp"

namespace ucoro_test {

/// A non-blocking TCP connection to 127.0.0.1:port whose SO_RCVBUF was set before connect:
/// the window (and its scale) is negotiated in the handshake, so setting it later would not
/// keep the server from filling a large one.
inline unique_fd connect_small_window(std::uint16_t port, int receive_buffer = 4096) {
    unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        throw std::system_error(errno, std::system_category(), "socket");
    }
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer)) !=
        0) {
        throw std::system_error(errno, std::system_category(), "setsockopt SO_RCVBUF");
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
    if (::fcntl(fd.get(), F_SETFL, O_NONBLOCK) != 0) {
        throw std::system_error(errno, std::system_category(), "fcntl O_NONBLOCK");
    }
    return fd;
}

/// What push_until_stalled did.
struct push_outcome {
    std::vector<std::size_t> pushed; // bytes each peer's socket took
    std::vector<bool> closed;        // the server closed or reset it while we pushed
    bool stalled = false;            // ended because no socket was writable for `quiet`
    std::chrono::steady_clock::time_point ended;
};

/// Pushes into each of `peers` (non-blocking sockets) whenever it is writable, never
/// reading, until none has been writable for `quiet` (its send buffer and the server's
/// whole echo path are full), or each has taken `cap` bytes or been closed, or `limit`
/// passes. Every turn sends at least a byte or ends, so the loop is bounded by the bytes,
/// and `limit` bounds it in time.
inline push_outcome push_until_stalled(std::span<const unique_fd> peers,
                                       std::chrono::milliseconds quiet, std::size_t cap,
                                       std::chrono::milliseconds limit) {
    push_outcome outcome;
    outcome.pushed.assign(peers.size(), 0);
    outcome.closed.assign(peers.size(), false);
    const std::string chunk(64 * 1024, 'n');
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        std::vector<pollfd> waiting;
        std::vector<std::size_t> index;
        for (std::size_t i = 0; i < peers.size(); ++i) {
            if (!outcome.closed[i] && outcome.pushed[i] < cap) {
                waiting.push_back({peers[i].get(), POLLOUT | POLLRDHUP, 0});
                index.push_back(i);
            }
        }
        if (waiting.empty()) {
            break;
        }
        const int ready = ::poll(waiting.data(), waiting.size(), static_cast<int>(quiet.count()));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready < 0) {
            throw std::system_error(errno, std::system_category(), "poll");
        }
        if (ready == 0) {
            outcome.stalled = true;
            break;
        }
        for (std::size_t k = 0; k < waiting.size(); ++k) {
            const std::size_t i = index[k];
            if ((waiting[k].revents & (POLLERR | POLLHUP | POLLRDHUP)) != 0) {
                outcome.closed[i] = true;
            } else if ((waiting[k].revents & POLLOUT) != 0) {
                const std::size_t want = std::min(chunk.size(), cap - outcome.pushed[i]);
                const ssize_t n = ::send(peers[i].get(), chunk.data(), want, MSG_NOSIGNAL);
                if (n > 0) {
                    outcome.pushed[i] += static_cast<std::size_t>(n);
                } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                    outcome.closed[i] = true; // EPIPE, ECONNRESET: the server closed it
                }
            }
        }
    }
    outcome.ended = std::chrono::steady_clock::now();
    return outcome;
}

/// True if `fd` has seen its peer close or reset the connection (POLLRDHUP, POLLHUP or
/// POLLERR), without reading: unread echoes may still sit in front of the end of stream.
inline bool peer_has_closed(int fd) {
    pollfd entry{fd, POLLRDHUP, 0};
    int ready = 0;
    do {
        ready = ::poll(&entry, 1, 0);
    } while (ready < 0 && errno == EINTR);
    if (ready < 0) {
        throw std::system_error(errno, std::system_category(), "poll");
    }
    return (entry.revents & (POLLERR | POLLHUP | POLLRDHUP)) != 0;
}

} // namespace ucoro_test
