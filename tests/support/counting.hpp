// Helpers shared by the core runtime tests (task, io_context, sleep, signal_set): counting
// object lifetimes to prove coroutine frames are freed, and making a context on machines
// that may not allow io_uring.
#pragma once

#include <catch2/catch.hpp>

#include <coroutine>
#include <memory>
#include <system_error>

#include "support/context.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro_test {

/// How many `counted` objects were made and destroyed. A coroutine frame that holds one
/// (as a parameter or a local) balances the two only once the frame has been freed.
struct lifetime_counts {
    int constructed = 0;
    int destroyed = 0;

    int alive() const noexcept { return constructed - destroyed; }
};

/// An object that reports its construction (copies and moves included) and destruction.
class counted {
public:
    explicit counted(lifetime_counts& counts) noexcept : m_counts(&counts) {
        ++m_counts->constructed;
    }
    // No move constructor is declared, so a move copies, and is counted like a copy.
    counted(const counted& other) noexcept : m_counts(other.m_counts) { ++m_counts->constructed; }
    counted& operator=(const counted&) = delete;
    ~counted() { ++m_counts->destroyed; }

private:
    lifetime_counts* m_counts;
};

/// `co_await next_turn{context}` suspends until the next turn of the loop. A turn that
/// leaves a coroutine ready submits what was prepared without waiting, so after one
/// next_turn every operation started in the previous turn is in the kernel: a way to wait
/// for that event without sleeping.
struct next_turn {
    ucoro::io_context& context;

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> waiter) { context.post(waiter); }
    void await_resume() const noexcept {}
};

} // namespace ucoro_test

namespace ucoro_test {

/// A task that returns on the next turn of the loop (see next_turn).
inline ucoro::task<void> next_turn_of(ucoro::io_context& context) {
    co_await next_turn{context};
}

} // namespace ucoro_test
