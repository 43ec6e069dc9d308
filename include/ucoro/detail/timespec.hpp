// The kernel's timespec for io_uring timeouts, from a std::chrono duration.
#pragma once

#include <linux/time_types.h>

#include <chrono>

namespace ucoro::detail {

/// A negative duration becomes zero: "now", not EINVAL.
inline __kernel_timespec to_kernel_timespec(std::chrono::nanoseconds duration) noexcept {
    if (duration < std::chrono::nanoseconds::zero()) {
        duration = std::chrono::nanoseconds::zero();
    }
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(duration);
    return {seconds.count(), (duration - seconds).count()};
}

} // namespace ucoro::detail
