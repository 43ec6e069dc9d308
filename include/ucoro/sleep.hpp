// co_await sleep_for(context, duration): IORING_OP_TIMEOUT.
#pragma once

#include <linux/time_types.h>

#include <chrono>
#include <system_error>

#include "ucoro/io_context.hpp"
#include "ucoro/operation.hpp"

namespace ucoro {

/// Suspends for at least `duration`, or until `deadline` (io_context::clock), on an io_uring
/// timeout: no timer thread, no timerfd. Succeeds with an empty error_code, or reports
/// operation_canceled if the context stops (or the task is cancelled) first.
class [[nodiscard]] sleep_operation final : public io_operation {
public:
    sleep_operation(io_context& context, std::chrono::nanoseconds duration) noexcept;
    sleep_operation(io_context& context, io_context::clock::time_point deadline) noexcept;

    void prepare(io_uring_sqe& sqe) noexcept override;
    [[nodiscard]] std::error_code await_resume() const noexcept;

private:
    __kernel_timespec m_timeout; // read by the kernel when the SQE is submitted
    unsigned m_flags = 0;        // IORING_TIMEOUT_ABS for a deadline
};

inline sleep_operation sleep_for(io_context& context, std::chrono::nanoseconds duration) noexcept {
    return {context, duration};
}

/// A deadline in the past completes at once, successfully. Deadlines do not drift the way
/// repeated sleep_for calls do: `next += period; co_await sleep_until(context, next);`.
inline sleep_operation sleep_until(io_context& context,
                                   io_context::clock::time_point deadline) noexcept {
    return {context, deadline};
}

} // namespace ucoro
