// listener: a listening TCP socket.
#pragma once

#include <sys/socket.h>

#include <utility>

#include "ucoro/net/accept.hpp"
#include "ucoro/net/accept_stream.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/close.hpp"

namespace ucoro {
class io_context;
}

namespace ucoro::net {

/// A bound, listening TCP socket (SO_REUSEADDR, close-on-exec). Bind to port 0 and read
/// local_address() to learn the port the kernel chose.
class listener {
public:
    /// Throws std::system_error naming the step that failed ("bind 127.0.0.1:65432") and
    /// carrying its errno (EADDRINUSE when the port is taken).
    listener(io_context& context, const address& local, int backlog = SOMAXCONN);
    listener(listener&& other) noexcept;
    listener& operator=(listener&&) = delete;
    listener(const listener&) = delete;
    listener& operator=(const listener&) = delete;
    ~listener();

    /// The bound address, with the real port.
    const address& local_address() const noexcept { return m_local; }
    int native_handle() const noexcept { return m_fd; }

    /// Accepts one connection.
    accept_operation accept() noexcept { return {*m_context, m_fd}; }
    /// Accepts connection after connection with one multishot request (accept_stream.hpp).
    net::accept_stream accept_multishot() { return {*m_context, m_fd}; }
    /// Asks the kernel to cancel every accept armed on this listener, plain or multishot
    /// (IORING_ASYNC_CANCEL_FD, Linux 5.19; nothing on older kernels): each waiter sees
    /// operation_canceled, and the listener stays open, so a later accept or next() arms
    /// again. A server that stops accepting (a drain) ends its accept loop with it. Throws
    /// std::system_error if the ring cannot take the cancel.
    void cancel();
    /// Closes through the ring, cancelling first any accept still armed on the socket. The
    /// listener gives up its descriptor at once.
    close_operation close() noexcept { return {m_context, std::exchange(m_fd, -1)}; }

private:
    io_context* m_context;
    int m_fd;
    address m_local;
};

} // namespace ucoro::net
