#include "ucoro/sleep.hpp"

#include <liburing.h>

#include <cerrno>

#include "ucoro/detail/timespec.hpp"
#include "ucoro/io_result.hpp"

namespace ucoro {

sleep_operation::sleep_operation(io_context& context, std::chrono::nanoseconds duration) noexcept
    : io_operation(context), m_timeout(detail::to_kernel_timespec(duration)) {}

// steady_clock counts CLOCK_MONOTONIC on Linux, the clock IORING_TIMEOUT_ABS uses by default.
sleep_operation::sleep_operation(io_context& context,
                                 io_context::clock::time_point deadline) noexcept
    : io_operation(context), m_timeout(detail::to_kernel_timespec(deadline.time_since_epoch())),
      m_flags(IORING_TIMEOUT_ABS) {}

void sleep_operation::prepare(io_uring_sqe& sqe) noexcept {
    // count 0: a pure timer, not "wake after N completions".
    io_uring_prep_timeout(&sqe, &m_timeout, 0, m_flags);
}

std::error_code sleep_operation::await_resume() const noexcept {
    // A timeout that expires completes with -ETIME: for a sleep, that is success.
    return result() == -ETIME ? std::error_code() : error();
}

} // namespace ucoro
