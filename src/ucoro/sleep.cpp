#include "ucoro/sleep.hpp"

#include <liburing.h>

#include <cerrno>

#include "ucoro/io_result.hpp"

namespace ucoro {

sleep_operation::sleep_operation(io_context& context, std::chrono::nanoseconds duration) noexcept
    : io_awaitable(context) {
    if (duration < std::chrono::nanoseconds::zero()) {
        duration = std::chrono::nanoseconds::zero();
    }
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(duration);
    m_timeout.tv_sec = seconds.count();
    m_timeout.tv_nsec = (duration - seconds).count();
}

void sleep_operation::prepare(io_uring_sqe& sqe) noexcept {
    // count 0: a pure timer, not "wake after N completions".
    io_uring_prep_timeout(&sqe, &m_timeout, 0, 0);
}

std::error_code sleep_operation::await_resume() const noexcept {
    // A timeout that expires completes with -ETIME: for a sleep, that is success.
    return m_result == -ETIME ? std::error_code() : make_io_error(m_result);
}

} // namespace ucoro
