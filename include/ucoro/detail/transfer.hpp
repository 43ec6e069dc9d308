// Symmetric transfer that never grows the stack, on every compiler and build type.
#pragma once

#include <cassert>
#include <coroutine>
#include <utility>

namespace ucoro::detail {

// Returning a handle from await_suspend asks the compiler to resume it as a tail call.
// Clang always emits that tail call. GCC 12 does only when the optimizer finds it: at -O0,
// -O1 or under AddressSanitizer each transfer nests one more native frame, and a chain of
// 100,000 nested co_awaits overflows an 8 MiB stack (measured: tests/task_test.cpp).
#if defined(__clang__)
#define UCORO_GUARANTEED_SYMMETRIC_TRANSFER 1
#else
#define UCORO_GUARANTEED_SYMMETRIC_TRANSFER 0
#endif

/// What await_suspend returns to transfer control to `next`.
///
/// Where the tail call is guaranteed this is `next` itself. Elsewhere it is a trampoline:
/// the first transfer on this thread runs a loop that resumes one coroutine at a time;
/// a transfer made while that loop runs just hands the next handle back to it and lets the
/// current coroutine suspend, so the native stack stays one frame deep.
inline std::coroutine_handle<> transfer_to(std::coroutine_handle<> next) noexcept {
#if UCORO_GUARANTEED_SYMMETRIC_TRANSFER
    return next;
#else
    static thread_local std::coroutine_handle<>* pending = nullptr;
    if (pending != nullptr) {
        assert(!*pending && "one transfer per suspension");
        *pending = next; // the loop below resumes it once the caller has suspended
        return std::noop_coroutine();
    }
    std::coroutine_handle<> current = next;
    pending = &current;
    while (current) {
        std::exchange(current, nullptr).resume();
    }
    pending = nullptr;
    return std::noop_coroutine();
#endif
}

} // namespace ucoro::detail
