// socket: a connected TCP socket and the operations on it.
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include "ucoro/net/address.hpp"
#include "ucoro/net/close.hpp"
#include "ucoro/net/recv.hpp"
#include "ucoro/net/recv_stream.hpp"
#include "ucoro/net/send.hpp"
#include "ucoro/net/send_gather.hpp"
#include "ucoro/net/shutdown.hpp"

namespace ucoro {
class io_context;
}

namespace ucoro::net {

/// Owns the file descriptor of a connected stream socket (from accept or connect) and
/// starts operations on it. Move-only. Destroying an open socket closes it synchronously;
/// `co_await sock.close()` closes it through the ring and reports the error.
///
/// The buffers handed to recv/send must stay alive until the operation completes, which
/// they do when they live in the awaiting coroutine's frame.
///
/// A default-constructed socket (what an io_result<socket> holds on error) belongs to no
/// context: every operation on it completes at once with std::errc::bad_file_descriptor.
class socket {
public:
    socket() noexcept = default;
    socket(io_context& context, int fd, const address& peer) noexcept
        : m_context(&context), m_fd(fd), m_peer(peer) {}
    socket(socket&& other) noexcept
        : m_context(other.m_context), m_fd(std::exchange(other.m_fd, -1)), m_peer(other.m_peer) {}
    socket& operator=(socket&& other) noexcept;
    socket(const socket&) = delete;
    socket& operator=(const socket&) = delete;
    ~socket();

    bool is_open() const noexcept { return m_fd >= 0; }
    int native_handle() const noexcept { return m_fd; }
    /// The address of the other end, as accept or connect saw it.
    const address& peer_address() const noexcept { return m_peer; }
    /// The address of this end (getsockname).
    address local_address() const;

    recv_operation recv(std::span<std::byte> buffer) noexcept { return {m_context, m_fd, buffer}; }
    /// Receives into buffers of `ring` with one multishot request (recv_stream.hpp); the
    /// stream must not outlive the socket. The ring must belong to this socket's context:
    /// one from another context throws std::invalid_argument here, at the call, since its
    /// buffer group means nothing to this socket's ring (a programming error, not an I/O
    /// outcome for next() to report).
    net::recv_stream recv_multishot(buffer_ring& ring);
    send_operation send(std::span<const std::byte> bytes) noexcept {
        return {m_context, m_fd, bytes};
    }
    send_all_operation send_all(std::span<const std::byte> bytes) noexcept {
        return {m_context, m_fd, bytes};
    }
    /// Sends every byte of several buffers with sendmsg (send_gather.hpp); advances
    /// `buffers` in place, so it must stay alive until the await completes.
    send_all_gather_operation send_all_gather(std::span<iovec> buffers) noexcept {
        return {m_context, m_fd, buffers};
    }
    /// Half-closes: `shutdown_how::send` tells the peer we will send no more (it reads end
    /// of stream) while we can still receive.
    shutdown_operation shutdown(shutdown_how how = shutdown_how::send) noexcept {
        return {m_context, m_fd, how};
    }
    /// Closes through the ring, first cancelling whatever is still armed on the descriptor
    /// (see close.hpp). The socket gives up its descriptor at once, so it is closed exactly
    /// once whatever the outcome, even if the operation is never awaited.
    close_operation close() noexcept { return {m_context, std::exchange(m_fd, -1)}; }

    /// Disables Nagle's algorithm (TCP_NODELAY): small writes go out at once.
    void set_no_delay(bool enabled = true) noexcept;

    /// Gives up ownership of the descriptor without closing it.
    int release() noexcept { return std::exchange(m_fd, -1); }

private:
    io_context* m_context = nullptr;
    int m_fd = -1;
    address m_peer;
};

} // namespace ucoro::net
