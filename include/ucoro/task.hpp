// task<T>: the lazily started, single-awaiter coroutine type of ucoro.
#pragma once

#include <coroutine>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "ucoro/detail/transfer.hpp"

namespace ucoro {

template <typename T = void>
class task;

namespace detail {

class cancellation_scope;

/// What both promise types share: where to go when the task finishes.
class task_promise_base {
public:
    /// A task starts only when it is awaited, so the awaiter is known before any code runs.
    std::suspend_always initial_suspend() noexcept { return {}; }

    /// On completion, jump straight to the awaiting coroutine by symmetric transfer: a
    /// chain of nested awaits does not grow the stack, however deep it is (transfer.hpp
    /// says how that is guaranteed on GCC too).
    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        template <typename Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
            return transfer_to(self.promise().m_continuation);
        }
        void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }

    void set_continuation(std::coroutine_handle<> continuation) noexcept {
        m_continuation = continuation;
    }

    /// While this coroutine awaits another task: that task's promise, and the handle (inside
    /// the task object in this frame) that owns its frame. Lets destroy_chain() free a chain
    /// of unfinished tasks leaf first, without one native frame per level.
    task_promise_base* m_awaited = nullptr;
    std::coroutine_handle<>* m_awaited_owner = nullptr;
    /// What cancels this task (cancellation_scope.hpp), passed down to every task it awaits;
    /// null when nothing can. Operations awaited here register with it.
    cancellation_scope* m_scope = nullptr;

private:
    std::coroutine_handle<> m_continuation = std::noop_coroutine();
};

/// Frees the frame `owner` holds and, first, every unfinished task it is suspended on.
/// Destroying a frame destroys the task objects in it, which destroy their frames in turn:
/// a chain of 100,000 suspended tasks would recurse 100,000 deep. Instead the owning handles
/// are cleared from the leaf upwards, so each ~task on the way finds nothing left to free.
inline void destroy_chain(std::coroutine_handle<>& owner, task_promise_base& promise) noexcept {
    if (promise.m_awaited == nullptr) {
        std::exchange(owner, nullptr).destroy(); // the usual case: nothing below
        return;
    }
    std::vector<std::coroutine_handle<>*> owners;
    try {
        owners.push_back(&owner);
        for (task_promise_base* p = &promise; p->m_awaited != nullptr; p = p->m_awaited) {
            owners.push_back(p->m_awaited_owner);
        }
    } catch (...) {
        // Out of memory: fall back to destroying recursively.
        std::exchange(owner, nullptr).destroy();
        return;
    }
    for (auto it = owners.rbegin(); it != owners.rend(); ++it) {
        std::exchange(**it, nullptr).destroy();
    }
}

template <typename T>
class task_promise final : public task_promise_base {
public:
    task<T> get_return_object() noexcept;

    template <typename U>
    requires std::is_convertible_v<U&&, T>
    void return_value(U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
        m_result.template emplace<1>(std::forward<U>(value));
    }
    void unhandled_exception() noexcept { m_result.template emplace<2>(std::current_exception()); }

    T result() && {
        if (m_result.index() == 2) {
            std::rethrow_exception(std::get<2>(m_result));
        }
        return std::move(std::get<1>(m_result));
    }

private:
    std::variant<std::monostate, T, std::exception_ptr> m_result;
};

template <>
class task_promise<void> final : public task_promise_base {
public:
    task<void> get_return_object() noexcept;

    void return_void() noexcept {}
    void unhandled_exception() noexcept { m_exception = std::current_exception(); }

    void result() && {
        if (m_exception) {
            std::rethrow_exception(m_exception);
        }
    }

private:
    std::exception_ptr m_exception;
};

} // namespace detail

/// A coroutine that produces one T (or throws) and is started by the one coroutine that
/// awaits it.
///
/// - Lazy: calling a task function allocates its frame and runs nothing.
/// - Owning: the task object owns the frame; destroying a task that was never started or
///   has finished frees it. (A started, unfinished task is never destroyed: its awaiter is
///   suspended on it, so the awaiter's frame, which owns the task, is alive.)
/// - `co_await std::move(t)` starts it and resumes the awaiter when it finishes, by
///   symmetric transfer in both directions; the value or the exception comes back there.
///
/// A task that is not awaited does nothing: to run one on its own, hand it to
/// `io_context::spawn` or `io_context::block_on`.
template <typename T>
class [[nodiscard]] task {
public:
    using promise_type = detail::task_promise<T>;
    using value_type = T;

    task() noexcept = default;
    explicit task(std::coroutine_handle<promise_type> handle) noexcept : m_handle(handle) {}
    task(task&& other) noexcept : m_handle(std::exchange(other.m_handle, nullptr)) {}
    task& operator=(task&& other) noexcept {
        if (this != &other) {
            destroy();
            m_handle = std::exchange(other.m_handle, nullptr);
        }
        return *this;
    }
    task(const task&) = delete;
    task& operator=(const task&) = delete;
    ~task() { destroy(); }

    /// True if this task still owns a coroutine (it has not been moved from).
    bool valid() const noexcept { return static_cast<bool>(m_handle); }
    /// True once the coroutine has run to its end (returned or thrown).
    bool done() const noexcept { return m_handle && m_handle.done(); }
    /// The address of the coroutine's frame, which identifies it (the trace prints it);
    /// null if this task owns none.
    const void* address() const noexcept { return m_handle.address(); }

    class awaiter;
    /// Awaiting a task runs it; only rvalues may be awaited, so a task runs at most once.
    awaiter operator co_await() && noexcept { return awaiter{*this}; }

private:
    promise_type& promise() const noexcept {
        return std::coroutine_handle<promise_type>::from_address(m_handle.address()).promise();
    }
    void destroy() noexcept {
        if (m_handle) {
            detail::destroy_chain(m_handle, promise());
        }
    }

    // Type-erased so that a parent's promise can point at it whatever the child's T.
    std::coroutine_handle<> m_handle;
};

/// What `co_await std::move(t)` suspends on: it starts the task by symmetric transfer and
/// takes its value (or exception) when the task resumes us.
template <typename T>
class task<T>::awaiter {
public:
    explicit awaiter(task& t) noexcept : m_task(&t) {}

    bool await_ready() const noexcept { return false; }

    template <typename Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> awaiting) noexcept {
        m_task->promise().set_continuation(awaiting);
        if constexpr (std::is_base_of_v<detail::task_promise_base, Promise>) {
            // Record the chain, for destroy_chain(), and hand down what cancels it.
            m_awaiting = &awaiting.promise();
            m_awaiting->m_awaited = &m_task->promise();
            m_awaiting->m_awaited_owner = &m_task->m_handle;
            m_task->promise().m_scope = m_awaiting->m_scope;
        }
        return detail::transfer_to(m_task->m_handle); // start the task
    }

    T await_resume() {
        if (m_awaiting != nullptr) {
            m_awaiting->m_awaited = nullptr; // the child has finished
        }
        return std::move(m_task->promise()).result();
    }

private:
    task* m_task;
    detail::task_promise_base* m_awaiting = nullptr;
};

namespace detail {

template <typename T>
task<T> task_promise<T>::get_return_object() noexcept {
    return task<T>{std::coroutine_handle<task_promise<T>>::from_promise(*this)};
}

inline task<void> task_promise<void>::get_return_object() noexcept {
    return task<void>{std::coroutine_handle<task_promise<void>>::from_promise(*this)};
}

} // namespace detail
} // namespace ucoro
