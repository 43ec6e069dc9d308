// listener: a listening TCP or Unix-domain stream socket.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <string>
#include <utility>

#include "ucoro/net/accept.hpp"
#include "ucoro/net/accept_stream.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/close.hpp"

namespace ucoro {
class io_context;
}

namespace ucoro::net {

/// A bound, listening stream socket (close-on-exec): TCP (SO_REUSEADDR) for an IP address,
/// Unix-domain for a Unix name (address::unix_socket). Bind to port 0 and read
/// local_address() to learn the port the kernel chose.
///
/// A Unix path is a file, and it outlives the socket that made it. So:
/// - a stale socket file at the path (a socket nobody listens on: connecting to it is
///   refused, as after a crash) is removed and the bind retried; anything else there (a
///   live listener, even one with a full backlog, which the probe does not wait for; a
///   regular file; a symlink, even to a stale socket) is left alone and the bind fails
///   with EADDRINUSE (a live listener sees that probe as one connection, closed at once);
/// - the listener removes the file it created when it is closed or destroyed, if the path
///   still names that file (not one another process has put there since).
/// An abstract name ("@name") has no file: none of this applies.
class listener {
public:
    /// Throws std::system_error naming the step that failed ("bind 127.0.0.1:65432") and
    /// carrying its errno (EADDRINUSE when the port or path is taken).
    /// With `reuse_port` (SO_REUSEPORT), several listeners, one per thread, may bind the
    /// same address and port, and the kernel spreads new connections over them by a hash
    /// of each connection's addresses and ports (TCP only).
    listener(io_context& context, const address& local, int backlog = SOMAXCONN,
             bool reuse_port = false);
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
    /// listener gives up its descriptor at once (and removes its Unix path, see above).
    close_operation close() noexcept {
        remove_path();
        return {m_context, std::exchange(m_fd, -1)};
    }

private:
    /// Removes the Unix path this listener created, if it still names the same file.
    void remove_path() noexcept;

    io_context* m_context;
    int m_fd;
    address m_local;
    std::string m_path; // the Unix socket file we created, until removed
    dev_t m_path_device = 0;
    ino_t m_path_inode = 0;
};

} // namespace ucoro::net
