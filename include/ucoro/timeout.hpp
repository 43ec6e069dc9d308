// co_await with_timeout(sock.recv(buffer), 5s): an operation with a deadline, on
// IORING_OP_LINK_TIMEOUT.
#pragma once

#include <linux/time_types.h>

#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstdint>
#include <type_traits>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/detail/io_awaitable.hpp"
#include "ucoro/detail/operation.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/operation.hpp"
#include "ucoro/task.hpp"

namespace ucoro {

/// What with_timeout accepts: an operation whose every round is one SQE that a linked
/// timeout can cut short and a cancellation scope can reach, and for which being cut short
/// is a clean outcome: an io_operation (operation.hpp) whose `supports_timeout` is true, as
/// it is unless the class says otherwise; close says false, since a cancelled close leaves
/// its descriptor neither ours nor closed. Multishot streams, tasks and event waits are not
/// operations of this kind (time them with when_any and a sleep).
template <typename Operation>
concept timeout_linkable =
    std::derived_from<Operation, io_operation> && Operation::supports_timeout;

namespace detail {

/// The part of a timed await that does not depend on the operation's type: each round is
/// two operations in the ring, linked (the wrapped operation's SQE, then its LINK_TIMEOUT),
/// each completing exactly once. The deadline is absolute (CLOCK_MONOTONIC, the clock of
/// io_context::now()), fixed once when the await starts, so a round submitted after a short
/// send carries the same deadline, not a fresh timeout. The stand-in for the operation stays
/// registered with the task's scope from the first round to the last. The caller is resumed
/// once, after the last round's two CQEs: the timer lives in this awaiter, so the frame must
/// not be freed while its CQE is still to come.
class timed_await : private io_awaitable::wrapper {
public:
    timed_await(const timed_await&) = delete;
    timed_await& operator=(const timed_await&) = delete;

protected:
    timed_await(io_awaitable& target, std::chrono::nanoseconds timeout) noexcept;
    ~timed_await() = default;

    void suspend(std::coroutine_handle<> waiter, cancellation_scope* scope);

private:
    // Stands in the ring for the wrapped operation: prepares its SQE, keeps its result until
    // the timer's CQE is in too.
    class primary final : public operation {
    public:
        explicit primary(timed_await& owner) noexcept;
        void prepare(io_uring_sqe& sqe) noexcept override;
        void complete(int result, std::uint32_t flags) noexcept override;
        void discard(int result, std::uint32_t flags) noexcept override;
        std::coroutine_handle<> waiter() const noexcept override;
        bool cancelled_since_submit() const noexcept { return cancel_requested(); }

    private:
        timed_await& m_owner;
    };

    class link_timer final : public operation {
    public:
        explicit link_timer(timed_await& owner) noexcept;
        void prepare(io_uring_sqe& sqe) noexcept override;
        void complete(int result, std::uint32_t flags) noexcept override;

    private:
        timed_await& m_owner;
    };

    bool next_round(std::error_code& error) noexcept override;
    void submit_round();
    void arrived() noexcept;

    io_awaitable& m_target;
    primary m_primary{*this};
    link_timer m_timer{*this};
    std::chrono::nanoseconds m_timeout;
    io_context::clock::time_point m_deadline{};
    __kernel_timespec m_deadline_spec{}; // read by the kernel when each timer SQE is submitted
    cancellation_scope* m_scope = nullptr;
    int m_result = 0;
    std::uint32_t m_flags = 0;
    int m_timer_result = 0;
    int m_pending = 0; // CQEs of this round still to come
};

} // namespace detail

/// Awaits `operation` for at most `timeout`. The operation and an IORING_OP_LINK_TIMEOUT go
/// into the ring as one link, in one reservation of two SQEs, so a full SQ never splits
/// them. The result is the operation's own, with one change: if the timer fired and
/// cancelled it, the error is std::errc::timed_out instead of operation_canceled.
///
/// What the caller sees when the timer and the operation race:
/// - The operation completed first (even if the timer fired in the same instant, and even if
///   its CQE arrives after the timer's): its own result, bytes and all. A recv that took
///   bytes reports them; nothing is dropped because the deadline also passed.
/// - The timer cancelled it first: timed_out, and the operation moved nothing (a cancelled
///   recv took no byte; the next recv gets them all).
/// - The task was cancelled (when_any, task_handle::cancel, stop()): operation_canceled.
/// The caller is resumed once, after both CQEs have arrived.
///
/// An operation that takes several rounds (send_all, send_all_gather after a short send)
/// is bounded as a whole: every round goes in linked to a timer for the same absolute
/// deadline, inside the same cancellation scope. A deadline that passes between rounds
/// ends it with timed_out and a cancel with operation_canceled, instead of another round;
/// either way the value says how many bytes went before.
///
/// Use it inside the co_await expression, `co_await with_timeout(sock.recv(buffer), 5s)`:
/// the operation is a temporary there, alive until the await ends; so only an rvalue of
/// the result can be awaited. Only a timeout_linkable operation is accepted (not close).
template <timeout_linkable Operation>
class [[nodiscard]] timed_operation {
public:
    timed_operation(Operation& operation, std::chrono::nanoseconds timeout) noexcept
        : m_operation(operation), m_timeout(timeout) {}

    class awaiter final : private detail::timed_await {
    public:
        awaiter(Operation& operation, std::chrono::nanoseconds timeout) noexcept
            : timed_await(operation, timeout), m_operation(operation) {}

        bool await_ready() const noexcept { return m_operation.await_ready(); }
        void await_suspend(std::coroutine_handle<> waiter) { suspend(waiter, nullptr); }
        template <typename Promise>
        requires std::is_base_of_v<detail::task_promise_base, Promise>
        void await_suspend(std::coroutine_handle<Promise> waiter) {
            suspend(waiter, waiter.promise().m_scope);
        }
        decltype(auto) await_resume() { return m_operation.await_resume(); }

    private:
        Operation& m_operation;
    };

    awaiter operator co_await() && noexcept { return {m_operation, m_timeout}; }

private:
    Operation& m_operation;
    std::chrono::nanoseconds m_timeout;
};

namespace detail {

/// with_timeout's argument: a timeout_linkable operation, whatever reference it comes as.
template <typename Argument>
concept timeout_linkable_argument = timeout_linkable<std::remove_cvref_t<Argument>>;

} // namespace detail

/// See timed_operation. Not callable (the constraint fails) for an operation that is not
/// timeout_linkable, nor for an lvalue: an operation object that outlives the timed await
/// could be awaited again later, and must not carry the timed await's state into it.
template <detail::timeout_linkable_argument Operation>
requires(!std::is_lvalue_reference_v<Operation>)
    timed_operation<std::remove_cvref_t<Operation>> with_timeout(Operation&& operation,
                                                                 std::chrono::nanoseconds timeout)
noexcept {
    return {operation, timeout};
}

} // namespace ucoro
