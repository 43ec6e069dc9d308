// co_await with_timeout(sock.recv(buffer), 5s): an operation with a deadline, on
// IORING_OP_LINK_TIMEOUT.
#pragma once

#include <linux/time_types.h>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <type_traits>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/detail/io_awaitable.hpp"
#include "ucoro/detail/operation.hpp"
#include "ucoro/task.hpp"

namespace ucoro {

namespace net {
class close_operation;
class send_all_operation;
} // namespace net

namespace detail {

/// The part of a timed await that does not depend on the operation's type: two operations
/// in the ring, linked (the wrapped operation's SQE, then its LINK_TIMEOUT), each completing
/// exactly once, and the caller resumed only once both have: the timer lives in this awaiter,
/// so the frame must not be freed while its CQE is still to come.
class timed_await {
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

    void arrived() noexcept;

    io_awaitable& m_target;
    primary m_primary{*this};
    link_timer m_timer{*this};
    __kernel_timespec m_timeout{}; // read by the kernel when the SQE is submitted
    cancellation_scope* m_scope = nullptr;
    int m_result = 0;
    std::uint32_t m_flags = 0;
    int m_timer_result = 0;
    int m_pending = 0; // CQEs still to come
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
/// - The task was cancelled (when_any, cancellation_scope): operation_canceled.
/// The caller is resumed once, after both CQEs have arrived.
///
/// Use it inside the co_await expression, `co_await with_timeout(sock.recv(buffer), 5s)`:
/// the operation is a temporary there, alive until the await ends; so only an rvalue of
/// the result can be awaited. send_all is refused: it resubmits after a short send, and the
/// later rounds would run without the timer (await send in a loop instead); so is close,
/// which owns its descriptor and must run to its end.
template <typename Operation>
class [[nodiscard]] timed_operation {
    static_assert(std::is_base_of_v<detail::io_awaitable, Operation>,
                  "with_timeout takes a single-shot ucoro operation (recv, send, accept...)");
    static_assert(!std::is_same_v<Operation, net::send_all_operation>,
                  "send_all resubmits after a short send; time each send instead");
    static_assert(!std::is_same_v<Operation, net::close_operation>,
                  "a cancelled close would leave its fd neither ours nor closed");

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

template <typename Operation>
timed_operation<std::remove_reference_t<Operation>>
with_timeout(Operation&& operation, std::chrono::nanoseconds timeout) noexcept {
    return {operation, timeout};
}

} // namespace ucoro
