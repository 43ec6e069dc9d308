// co_await sock.shutdown(how): IORING_OP_SHUTDOWN.
#pragma once

#include <sys/socket.h>

#include <system_error>

#include "ucoro/operation.hpp"

namespace ucoro::net {

enum class shutdown_how { receive = SHUT_RD, send = SHUT_WR, both = SHUT_RDWR };

/// Shuts down one or both directions of a connection without closing the descriptor.
class [[nodiscard]] shutdown_operation final : public io_operation {
public:
    void prepare(io_uring_sqe& sqe) noexcept override;
    [[nodiscard]] std::error_code await_resume() const noexcept;

private:
    // Made by socket, which passes its context (null for a default-constructed
    // socket: the await then completes at once with EBADF) and its descriptor.
    friend class socket;
    shutdown_operation(io_context* context, int fd, shutdown_how how) noexcept
        : io_operation(context), m_fd(fd), m_how(how) {}

    int m_fd;
    shutdown_how m_how;
};

} // namespace ucoro::net
