// co_await sock.close(): IORING_OP_CLOSE.
#pragma once

#include <system_error>

#include "ucoro/detail/operation.hpp"

namespace ucoro::net {

/// Closes a descriptor through the ring. Closing an fd that is already -1 does nothing and
/// succeeds, so closing a socket twice is harmless.
class [[nodiscard]] close_operation final : public detail::io_awaitable {
public:
    close_operation(io_context& context, int fd) noexcept : io_awaitable(context), m_fd(fd) {}

    bool await_ready() const noexcept { return m_fd < 0; }
    void prepare(io_uring_sqe& sqe) noexcept override;
    void discard(int result, std::uint32_t flags) noexcept override;
    [[nodiscard]] std::error_code await_resume() const noexcept;

private:
    int m_fd;
};

} // namespace ucoro::net
