// The awaitable every single-shot operation (accept, connect, recv, send, close...) builds on.
#pragma once

#include <coroutine>
#include <cstdint>
#include <system_error>
#include <type_traits>

#include "ucoro/detail/operation.hpp"
#include "ucoro/task.hpp"

namespace ucoro::detail {

/// An operation that one coroutine awaits: it submits itself on suspension and resumes
/// the coroutine when its CQE arrives. The result lives here, in the awaiter, which lives
/// in the suspended coroutine's frame: nothing is allocated per operation.
///
/// Subclasses add prepare() and an await_resume() that turns m_result into a value. One
/// that needs several round trips for one await (send_all after a short send) overrides
/// resubmit_after() instead of writing its own await_suspend or complete.
class io_awaitable : public operation {
public:
    bool await_ready() const noexcept { return !has_context(); }
    void await_suspend(std::coroutine_handle<> waiter) { suspend(waiter, nullptr); }
    /// Awaited in a task: the task's cancellation scope can reach this operation.
    template <typename Promise>
    requires std::is_base_of_v<task_promise_base, Promise>
    void await_suspend(std::coroutine_handle<Promise> waiter) {
        suspend(waiter, waiter.promise().m_scope);
    }
    void complete(int result, std::uint32_t flags) noexcept final;
    std::coroutine_handle<> waiter() const noexcept final { return m_waiter; }

    /// For an awaiter that wraps this operation and puts it in the ring itself (with_timeout
    /// links it to a timer, then hands it its result through complete()).
    void set_waiter(std::coroutine_handle<> waiter) noexcept { m_waiter = waiter; }

protected:
    explicit io_awaitable(io_context& context) noexcept : operation(&context) {}
    /// `context` may be null (a default-constructed socket): the operation then completes
    /// without suspending, with EBADF, rather than dereferencing it.
    explicit io_awaitable(io_context* context) noexcept;
    ~io_awaitable() = default;

    /// Sees each CQE before the waiter is resumed. Return true if the operation submitted
    /// itself again (the waiter stays suspended until a later CQE); the default never does.
    virtual bool resubmit_after(int /*result*/, std::uint32_t /*flags*/) noexcept { return false; }

    /// For a resubmit_after() that has more to do (the rest of a short send): submits this
    /// operation again and returns true; or returns false with `error` set when a cancel
    /// or stop() has come in meanwhile (operation_canceled: a cancel that raced with the
    /// short completion and lost is honoured here) or the submit failed.
    bool resubmit(std::error_code& error) noexcept;

    int m_result = 0;
    std::uint32_t m_flags = 0;

private:
    void suspend(std::coroutine_handle<> waiter, cancellation_scope* scope);

    std::coroutine_handle<> m_waiter;
    cancellation_scope* m_scope = nullptr;
};

} // namespace ucoro::detail
