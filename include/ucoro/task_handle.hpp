// task_handle: what io_context::spawn gives back, to join or cancel the spawned task.
#pragma once

#include <coroutine>

namespace ucoro {

class io_context;

namespace detail {
class spawned_promise;
}

/// Refers to one task started by io_context::spawn, while it runs. Ignoring it (letting it
/// go) detaches the task, as spawn always did: the task runs on and frees itself.
///
///     auto handle = context.spawn(serve(connection));
///     ...
///     handle.cancel();           // every operation it is suspended in, however deep its
///                                // await chain, completes with operation_canceled
///     co_await handle.join();    // resumes once the task has finished (at once if it has)
///
/// cancel() requests the task's own cancellation scope (detail/cancellation_scope.hpp): the
/// operation the task waits in is cancelled in the ring, so are its multishot streams and
/// every operation it starts afterwards, and the task unwinds through its ordinary error
/// paths. Cancelling a task that has not started yet works (its first operation is
/// cancelled as it is submitted); cancelling one that has finished does nothing.
///
/// Cheap and single-threaded: the handle and the task's promise point at each other (a
/// move updates the promise), so spawning allocates nothing more than before and nothing is
/// reference-counted. Not std::stop_token for the reason cancellation_scope gives: a stop
/// callback runs on the requesting thread and its shared state is atomic, where one
/// io_context thread needs two pointers and a flag. Use it on the context's thread only.
///
/// Move-only. Not [[nodiscard]] on purpose: dropping it is the ordinary way to detach.
class task_handle {
public:
    task_handle() noexcept = default;
    task_handle(task_handle&& other) noexcept;
    task_handle& operator=(task_handle&& other) noexcept;
    task_handle(const task_handle&) = delete;
    task_handle& operator=(const task_handle&) = delete;
    ~task_handle() { detach(); }

    /// True if no task is referred to any more: it has finished, or this handle is empty
    /// (default-constructed, moved from, detached).
    bool done() const noexcept { return m_promise == nullptr; }

    /// Cancels the task (see above). Harmless when done(). Call it on the context's thread.
    void cancel() noexcept;

    /// Lets the task go on alone; the handle becomes empty.
    void detach() noexcept;

    class join_awaiter;
    /// `co_await handle.join()` resumes on the turn after the task finished (or at once if
    /// done()). One coroutine may wait at a time. The task's exception, if it threw, still
    /// goes to the context's unhandled-exception handler. A wait outside the ring: the
    /// joining task's own cancellation does not end it (cancel the joined task instead).
    [[nodiscard]] join_awaiter join() noexcept;

private:
    friend class io_context; // spawn() makes them
    friend class detail::spawned_promise;
    explicit task_handle(detail::spawned_promise& promise) noexcept;

    detail::spawned_promise* m_promise = nullptr;
};

class [[nodiscard]] task_handle::join_awaiter {
public:
    bool await_ready() const noexcept { return m_handle->done(); }
    /// Throws std::logic_error if another coroutine is joining the same task already.
    void await_suspend(std::coroutine_handle<> waiter);
    void await_resume() const noexcept {}

private:
    friend class task_handle;
    explicit join_awaiter(task_handle& handle) noexcept : m_handle(&handle) {}

    task_handle* m_handle;
};

} // namespace ucoro
