// co_await sock.shutdown(how): IORING_OP_SHUTDOWN.
#pragma once

#include <sys/socket.h>

#include <system_error>

#include "ucoro/detail/io_awaitable.hpp"

namespace ucoro::net {

enum class shutdown_how { receive = SHUT_RD, send = SHUT_WR, both = SHUT_RDWR };

/// Shuts down one or both directions of a connection without closing the descriptor.
class [[nodiscard]] shutdown_operation final : public detail::io_awaitable {
public:
    shutdown_operation(io_context* context, int fd, shutdown_how how) noexcept
        : io_awaitable(context), m_fd(fd), m_how(how) {}

    void prepare(io_uring_sqe& sqe) noexcept override;
    [[nodiscard]] std::error_code await_resume() const noexcept;

private:
    int m_fd;
    shutdown_how m_how;
};

} // namespace ucoro::net
