// 02_concurrent_sleeps: many coroutines, one thread, one ring.
//
// Shows: io_context::spawn to start independent tasks; sleep_for, an io_uring timeout
// (IORING_OP_TIMEOUT), as the simplest operation; run() returning when no work is left.
// Three sleeps of 300, 100 and 200 ms finish in about 300 ms in all, in order of their
// length, because they wait in the kernel at the same time; the three requests reach the
// kernel in a single io_uring_enter.
// Tutorial: docs/tutorial/02_event_loop.md
// Needs: Linux >= 5.11.
// Try: build/debug/bin/02_concurrent_sleeps
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>

#include <chrono>

namespace {

using namespace std::chrono_literals;

// ANCHOR: nap
ucoro::task<void> nap(ucoro::io_context& context, const char* name, std::chrono::milliseconds d) {
    fmt::print("{} goes to sleep for {} ms\n", name, d.count());
    if (auto error = co_await ucoro::sleep_for(context, d)) {
        fmt::print("{} was woken early: {}\n", name, error.message());
        co_return;
    }
    fmt::print("{} woke up\n", name);
}
// ANCHOR_END: nap

} // namespace

// ANCHOR: main
int main() {
    ucoro::io_context context;
    context.spawn(nap(context, "slow", 300ms));
    context.spawn(nap(context, "quick", 100ms));
    context.spawn(nap(context, "medium", 200ms));
    const auto start = std::chrono::steady_clock::now();
    context.run(); // returns once all three have finished
    const auto elapsed = std::chrono::steady_clock::now() - start;
    fmt::print("all done in about {} ms, not 600\n",
               std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() / 100 * 100);
    fmt::print("the loop entered the kernel {} times and saw {} completions\n",
               context.stats().submit_calls, context.stats().completions);
}
// ANCHOR_END: main
