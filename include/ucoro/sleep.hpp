// co_await sleep_for(context, duration): IORING_OP_TIMEOUT.
#pragma once

#include <linux/time_types.h>

#include <chrono>
#include <system_error>

#include "ucoro/detail/io_awaitable.hpp"

namespace ucoro {

/// Suspends for at least `duration` on an io_uring timeout: no timer thread, no timerfd.
/// Succeeds with an empty error_code, or reports operation_canceled if the context stops
/// first.
class [[nodiscard]] sleep_operation final : public detail::io_awaitable {
public:
    sleep_operation(io_context& context, std::chrono::nanoseconds duration) noexcept;

    void prepare(io_uring_sqe& sqe) noexcept override;
    [[nodiscard]] std::error_code await_resume() const noexcept;

private:
    __kernel_timespec m_timeout; // read by the kernel when the SQE is submitted
};

inline sleep_operation sleep_for(io_context& context, std::chrono::nanoseconds duration) noexcept {
    return {context, duration};
}

} // namespace ucoro
