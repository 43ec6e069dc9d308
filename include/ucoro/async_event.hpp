// async_event: co_await event.wait() until another coroutine calls event.set().
#pragma once

#include <coroutine>
#include <cstdint>
#include <system_error>
#include <type_traits>

#include "ucoro/detail/operation.hpp"
#include "ucoro/task.hpp"

namespace ucoro {

class io_context;

/// A flag coroutines of one io_context can wait for: set() wakes every waiter, reset()
/// lowers the flag again, and a wait that begins while it is set does not suspend.
///
/// - Waiters are resumed on the next turn of the loop (io_context::post), never inside
///   set(): the coroutine that sets the event runs on undisturbed until it suspends.
/// - `co_await event.wait()` returns an empty error_code when the event was set, or
///   operation_canceled when the waiting task was cancelled first (a when_any loser,
///   task_handle::cancel, io_context::stop()): a wait is reached by the task's cancellation
///   scope the way an operation in the ring is. A task already cancelled gets
///   operation_canceled at once, set or not, so a cancelled loop cannot spin on a set event.
/// - Destroying the event while coroutines wait: each is resumed (on the next turn) with
///   operation_canceled. Destroy it before its io_context, or when nobody waits.
/// - Nothing is allocated per wait: the waiter's node lives in the awaiter, in the waiting
///   coroutine's frame, and the event keeps them in an intrusive list.
///
/// Single-threaded, like everything on an io_context: use it on the context's thread only.
/// A wait outside a task (a plain coroutine) has no scope: only set() or the event's end
/// resumes it, not stop().
class async_event {
public:
    explicit async_event(io_context& context, bool initially_set = false) noexcept
        : m_context(&context), m_set(initially_set) {}
    async_event(const async_event&) = delete;
    async_event& operator=(const async_event&) = delete;
    ~async_event();

    /// Raises the flag and schedules every waiter to resume with success. May throw
    /// std::bad_alloc from io_context::post; the waiters not yet scheduled then stay
    /// waiting, and the flag stays up.
    void set();
    /// Lowers the flag. Waiters already woken by set() still see success.
    void reset() noexcept { m_set = false; }
    bool is_set() const noexcept { return m_set; }

    class wait_operation;
    /// `co_await event.wait()`: see above. The awaiter belongs in the co_await expression.
    [[nodiscard]] wait_operation wait() noexcept;

private:
    io_context* m_context;
    bool m_set;
    wait_operation* m_first = nullptr;
    wait_operation* m_last = nullptr;
};

/// One coroutine waiting on an async_event. It is a detail::operation only so that a
/// cancellation scope can hold it: it never goes into the ring (nor the in-flight list),
/// and its cancel_from_scope() takes it off the event's list and schedules its resumption
/// with operation_canceled.
class [[nodiscard]] async_event::wait_operation final : private detail::operation {
public:
    wait_operation(wait_operation&&) = delete;
    ~wait_operation();

    bool await_ready() const noexcept { return false; }
    /// Returns false (no suspension) when the event is set or the task was cancelled.
    bool await_suspend(std::coroutine_handle<> waiter) { return suspend(waiter, nullptr); }
    template <typename Promise>
    requires std::is_base_of_v<detail::task_promise_base, Promise>
    bool await_suspend(std::coroutine_handle<Promise> waiter) {
        return suspend(waiter, waiter.promise().m_scope);
    }
    [[nodiscard]] std::error_code await_resume() const noexcept { return m_error; }

private:
    friend class async_event;
    explicit wait_operation(async_event& event) noexcept;

    enum class state : std::uint8_t {
        idle,   // not waiting (before the await, or resumed without suspending)
        listed, // on the event's list, waiting
        woken   // taken off the list and posted; its result is final
    };

    bool suspend(std::coroutine_handle<> waiter, detail::cancellation_scope* scope);
    /// Off the event's list, result fixed, resumption posted. Posts first: if post throws,
    /// the waiter stays listed and nothing is lost.
    void wake(std::error_code error);
    void unlink() noexcept;

    // Never called: the node is never submitted to the ring.
    void prepare(io_uring_sqe& sqe) noexcept override;
    void complete(int result, std::uint32_t flags) noexcept override;
    std::coroutine_handle<> waiter() const noexcept override { return m_waiter; }
    void cancel_from_scope() override;

    async_event* m_event;
    std::coroutine_handle<> m_waiter;
    std::error_code m_error;
    state m_state = state::idle;
    wait_operation* m_prev_waiter = nullptr; // the event's list, in the order of arrival
    wait_operation* m_next_waiter = nullptr;
};

inline async_event::wait_operation async_event::wait() noexcept {
    return wait_operation(*this);
}

} // namespace ucoro
