// co_await sock.close(), co_await listener.close(): IORING_OP_CLOSE.
#pragma once

#include <system_error>

#include "ucoro/operation.hpp"

namespace ucoro::fs {
class file;
}

namespace ucoro::net {

/// Closes a descriptor through the ring, after asking the kernel to cancel every request
/// of this context still armed on it (a recv another coroutine waits in, a multishot
/// accept), which then completes with operation_canceled instead of holding the file open.
/// Each is cancelled by its user_data (io_context::cancel_operations_on): a close costs
/// the same however many other requests are in flight.
///
/// The operation owns the descriptor from the moment it is made: if it is never awaited,
/// or the close is cancelled before it ran, it closes the descriptor itself. Closing an fd
/// that is already -1 does nothing and succeeds, so closing a socket twice is harmless.
///
/// A close is not reached by a task's cancellation (when_any, task_handle::cancel) and
/// cannot be timed (with_timeout refuses it): once it runs it must run to its end, or the
/// descriptor would be neither ours nor closed. stop() cancels it only before it ran; the
/// descriptor is then closed synchronously.
class [[nodiscard]] close_operation final : public io_operation {
public:
    close_operation(close_operation&&) = delete;
    ~close_operation();

    /// Not for with_timeout: a close cut short by a timer would leave its descriptor
    /// neither ours nor closed, and it must run to its end.
    static constexpr bool supports_timeout = false;

    bool await_ready() const noexcept { return m_fd < 0 || io_operation::await_ready(); }
    void await_suspend(std::coroutine_handle<> waiter);
    void prepare(io_uring_sqe& sqe) noexcept override;
    void discard(int result, std::uint32_t flags) noexcept override;
    void abandon() noexcept override { m_handed_to_kernel = true; } // may have run: never twice
    [[nodiscard]] std::error_code await_resume() noexcept;

private:
    // Made by the close() of socket, listener, udp_socket and fs::file, which pass their
    // context (null for a default-constructed one: the await then completes at once) and
    // descriptor.
    friend class socket;
    friend class listener;
    friend class udp_socket;
    friend class fs::file;
    close_operation(io_context* context, int fd) noexcept : io_operation(context), m_fd(fd) {}

    int m_fd;
    bool m_handed_to_kernel = false; // the close ran (or may have): the fd is not ours
};

} // namespace ucoro::net
