// 01_tasks: what a task is, before any I/O.
//
// Shows: a coroutine returning ucoro::task<T>; laziness (nothing runs until awaited);
// co_await passing a value and an exception back to the awaiter; a chain of awaits that
// resumes each awaiter in turn (symmetric transfer); io_context::block_on to run a task
// from main().
// Tutorial: docs/tutorial/01_coroutines.md
// Needs: Linux >= 5.11 (block_on runs an io_context, which sets up an io_uring).
// Try: build/debug/bin/01_tasks
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>

#include <stdexcept>

namespace {

// ANCHOR: answer
ucoro::task<int> answer() {
    fmt::print("  answer() runs only now, when awaited\n");
    co_return 42;
}
// ANCHOR_END: answer

ucoro::task<int> fail() {
    throw std::runtime_error("something went wrong inside fail()");
    co_return 0; // never reached; the co_return makes this a coroutine
}

// ANCHOR: chain
ucoro::task<int> inner() {
    fmt::print("    inner() runs\n");
    co_return 1;
}

ucoro::task<int> middle() {
    fmt::print("  middle() runs, awaits inner()\n");
    const int value = co_await inner(); // inner's end resumes us right here
    fmt::print("  middle() resumed with {}\n", value);
    co_return value + 1;
}
// ANCHOR_END: chain

// ANCHOR: main_task
ucoro::task<void> main_task() {
    ucoro::task<int> pending = answer(); // allocates the frame, runs nothing
    fmt::print("created answer(), not started yet\n");
    const int value = co_await std::move(pending); // starts it; we resume with its value
    fmt::print("answer() returned {}\n", value);

    try {
        co_await fail();
    } catch (const std::exception& e) {
        // The exception travelled from fail()'s frame to the line that awaited it.
        fmt::print("caught: {}\n", e.what());
    }

    fmt::print("main_task() awaits middle()\n");
    fmt::print("middle() returned {}\n", co_await middle());
}
// ANCHOR_END: main_task

} // namespace

// ANCHOR: main
int main() {
    ucoro::io_context context;
    context.block_on(main_task());
}
// ANCHOR_END: main
