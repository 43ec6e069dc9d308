// The loop's internals that ucoro's own operations use and a program never names.
#pragma once

#include <cstddef>

#include "ucoro/detail/operation.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::detail {

/// The one door from the library's operations into io_context's private side: putting a
/// request in the ring, cancelling it, and what a close or a released stream needs. Kept out
/// of io_context's public face so that the loop's user sees run(), stop(), spawn() and
/// post(), and an operation written outside the library goes through io_operation, which
/// does all of this for it (operation.hpp). Each function is documented at its declaration
/// in io_context.hpp.
struct context_access {
    static void submit(io_context& context, operation& op) { context.submit(op); }
    static void submit_linked(io_context& context, operation& first, operation& second) {
        context.submit_linked(first, second);
    }
    static void cancel(io_context& context, operation& op) { context.cancel(op); }
    static void cancel_fd(io_context& context, int fd) { context.cancel_fd(fd); }
    static std::size_t cancels_needed_on(const io_context& context, int fd) noexcept {
        return context.cancels_needed_on(fd);
    }
    static void cancel_operations_on(io_context& context, int fd) {
        context.cancel_operations_on(fd);
    }
    static void release(io_context& context, operation& op) noexcept { context.release(op); }
    static void reserve_sqes(io_context& context, unsigned count) { context.reserve_sqes(count); }
};

} // namespace ucoro::detail
