// The detached coroutine that io_context::spawn wraps around a task<void>.
#pragma once

#include <coroutine>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/task.hpp"

namespace ucoro {
class io_context;
class task_handle;
} // namespace ucoro

namespace ucoro::detail {

/// The promise of a detached task. It frees its own frame when it finishes (final_suspend
/// never suspends) and, while alive, sits in the context's list of spawned tasks so that
/// ~io_context can free the ones that never finished. An exception that escapes goes to
/// the context's unhandled-exception policy (io_context::set_unhandled_exception_handler).
///
/// It owns the task's cancellation scope, attached under the context's root scope (which
/// stop() requests), and is a task_promise_base so that the task it awaits, and every task
/// that one awaits, inherits that scope. A task_handle (task_handle.hpp) and the promise
/// point at each other; when the task finishes, the promise clears the handle and posts the
/// coroutine joining it.
class spawned_promise : public task_promise_base {
public:
    spawned_promise(io_context& context, task<void>&) noexcept;
    ~spawned_promise();

    std::coroutine_handle<spawned_promise> handle() noexcept {
        return std::coroutine_handle<spawned_promise>::from_promise(*this);
    }
    spawned_promise* next() const noexcept { return m_next; }

    struct spawned {
        using promise_type = spawned_promise;
        std::coroutine_handle<spawned_promise> handle;
    };
    spawned get_return_object() noexcept { return {handle()}; }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept { m_finished = true; }
    void unhandled_exception() noexcept;

private:
    friend class ucoro::task_handle;

    io_context* m_context;
    cancellation_scope m_own_scope;
    task_handle* m_handle = nullptr;  // the handle that refers to this task, if any
    std::coroutine_handle<> m_joiner; // the coroutine in handle.join(), if any
    bool m_finished = false;          // ran to its end (not destroyed unfinished)
    const void* m_task_frame;         // the spawned task's frame: its id in the trace
    spawned_promise* m_prev = nullptr;
    spawned_promise* m_next = nullptr;
};

} // namespace ucoro::detail
