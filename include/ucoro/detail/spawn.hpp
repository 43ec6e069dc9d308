// The detached coroutine that io_context::spawn wraps around a task<void>.
#pragma once

#include <coroutine>

#include "ucoro/task.hpp"

namespace ucoro {
class io_context;
}

namespace ucoro::detail {

/// The promise of a detached task. It frees its own frame when it finishes (final_suspend
/// never suspends) and, while alive, sits in the context's list of spawned tasks so that
/// ~io_context can free the ones that never finished. An exception that escapes goes to
/// the context's unhandled-exception policy (io_context::set_unhandled_exception_handler).
class spawned_promise {
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
    void return_void() noexcept {}
    void unhandled_exception() noexcept;

private:
    io_context* m_context;
    const void* m_task_frame; // the spawned task's frame: its id in the trace
    spawned_promise* m_prev = nullptr;
    spawned_promise* m_next = nullptr;
};

} // namespace ucoro::detail
