// Symmetric transfer that never grows the stack, on every compiler and build type.
#pragma once

#include <cassert>
#include <coroutine>
#include <utility>

namespace ucoro::detail {

// Returning a handle from await_suspend asks the compiler to resume it as a tail call.
// Clang always emits that tail call. GCC 12 does only when the optimizer finds it: at -O0,
// -O1 or under AddressSanitizer each transfer nests one more native frame, and a chain of
// 100,000 nested co_awaits overflows an 8 MiB stack (tests/task_test.cpp has that chain).
#if defined(__clang__)
#define UCORO_GUARANTEED_SYMMETRIC_TRANSFER 1
#else
#define UCORO_GUARANTEED_SYMMETRIC_TRANSFER 0
#endif

#if !UCORO_GUARANTEED_SYMMETRIC_TRANSFER
/// Where a transfer leaves the next coroutine for the innermost resume() loop on this
/// thread; null when no such loop is running.
inline thread_local std::coroutine_handle<>* t_next_to_resume = nullptr;
#endif

/// Resumes `handle` from code that is not itself a coroutine: the event loop, on a
/// completion or for a ready task. Every coroutine resumption ucoro makes goes through here.
///
/// Without a guaranteed tail call this is a trampoline: transfers made by the coroutines it
/// runs hand their target back to this loop, and the loop resumes it only after the
/// transferring coroutine has suspended and returned. So the native stack stays one frame
/// deep, and no coroutine is ever resumed while its own await_suspend is still running.
inline void resume(std::coroutine_handle<> handle) {
#if UCORO_GUARANTEED_SYMMETRIC_TRANSFER
    handle.resume();
#else
    std::coroutine_handle<>* const outer = t_next_to_resume; // resume() may nest
    std::coroutine_handle<> next = handle;
    t_next_to_resume = &next;
    while (next) {
        std::exchange(next, nullptr).resume();
    }
    t_next_to_resume = outer;
#endif
}

/// What await_suspend returns to transfer control to `next`: `next` itself where the tail
/// call is guaranteed or no resume() loop is running, otherwise a no-op after handing
/// `next` to the loop.
inline std::coroutine_handle<> transfer_to(std::coroutine_handle<> next) noexcept {
#if !UCORO_GUARANTEED_SYMMETRIC_TRANSFER
    if (t_next_to_resume != nullptr) {
        assert(!*t_next_to_resume && "one transfer per suspension");
        *t_next_to_resume = next;
        return std::noop_coroutine();
    }
#endif
    return next;
}

} // namespace ucoro::detail
