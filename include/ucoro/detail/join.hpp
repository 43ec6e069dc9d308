// What when_all and when_any share: children run concurrently, each in its own cancellation
// scope, and the awaiting coroutine resumes once the last of them has finished.
#pragma once

#include <array>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/detail/transfer.hpp"
#include "ucoro/task.hpp"

namespace ucoro::detail {

/// What a child's value is stored as: void becomes std::monostate.
template <typename T>
using non_void_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

class join_state;

/// The coroutine that runs one child task and reports to the join when the child is done.
/// It owns its own cancellation scope, attached under the awaiting task's, so one child
/// can be cancelled alone (when_any's losers) and all are cancelled with their parent.
class join_child {
public:
    class promise_type : public task_promise_base {
    public:
        join_child get_return_object() noexcept {
            return join_child(std::coroutine_handle<promise_type>::from_promise(*this));
        }
        struct final_awaiter {
            bool await_ready() const noexcept { return false; }
            std::coroutine_handle<>
            await_suspend(std::coroutine_handle<promise_type> self) noexcept;
            void await_resume() const noexcept {}
        };
        final_awaiter final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        // The body catches everything the child throws and keeps it for the awaiter.
        void unhandled_exception() noexcept { std::terminate(); }

    private:
        friend class join_child;
        join_state* m_join = nullptr;
        cancellation_scope m_own_scope;
    };

    join_child(join_child&& other) noexcept : m_handle(std::exchange(other.m_handle, nullptr)) {}
    join_child& operator=(join_child&&) = delete;
    ~join_child() {
        if (m_handle) {
            destroy_chain(m_handle, promise()); // torn down unfinished: free leaf first
        }
    }

    /// Runs the child until its first suspension (or its end).
    void start(join_state& join, cancellation_scope* parent) noexcept;
    void cancel() noexcept { promise().m_own_scope.request(); }

private:
    explicit join_child(std::coroutine_handle<promise_type> handle) noexcept : m_handle(handle) {}
    promise_type& promise() const noexcept {
        return std::coroutine_handle<promise_type>::from_address(m_handle.address()).promise();
    }

    std::coroutine_handle<> m_handle;
};

/// The count of children still running, and what happens when one finishes.
class join_state {
public:
    static constexpr std::size_t none = static_cast<std::size_t>(-1);

    join_state(std::size_t children, bool first_wins) noexcept
        : m_remaining(children + 1), m_first_wins(first_wins) {}

    /// Starts every child, then suspends `parent` unless all of them have already finished.
    /// The extra count held until every child is started keeps a child that finishes at once
    /// from resuming the parent while it is still inside this call.
    bool start(std::span<join_child> children, std::coroutine_handle<> parent,
               cancellation_scope* scope) noexcept;
    /// A child's body has finished (failed: it threw). The first to finish wins a when_any;
    /// the others are cancelled then.
    void finished(std::size_t index, bool failed) noexcept;
    /// The child's frame is at its end: the last one resumes the parent.
    std::coroutine_handle<> arrive() noexcept {
        return --m_remaining == 0 ? m_parent : std::noop_coroutine();
    }

    std::size_t winner() const noexcept { return m_winner; }
    std::size_t first_failure() const noexcept { return m_first_failure; }

private:
    std::span<join_child> m_children;
    std::coroutine_handle<> m_parent;
    std::size_t m_remaining;
    std::size_t m_winner = none;
    std::size_t m_first_failure = none;
    bool m_first_wins;
};

/// A child's value or exception.
template <typename T>
class child_result {
public:
    template <typename U>
    void set_value(U&& value) {
        m_state.template emplace<1>(std::forward<U>(value));
    }
    void set_exception(std::exception_ptr error) noexcept { m_state.template emplace<2>(error); }
    bool failed() const noexcept { return m_state.index() == 2; }
    void rethrow_if_failed() const {
        if (failed()) {
            std::rethrow_exception(std::get<2>(m_state));
        }
    }
    non_void_t<T> take() {
        rethrow_if_failed();
        return std::move(std::get<1>(m_state));
    }

private:
    std::variant<std::monostate, non_void_t<T>, std::exception_ptr> m_state;
};

template <typename T>
join_child run_child(task<T>& child, child_result<T>& result, join_state& join, std::size_t index) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(child);
            result.set_value(std::monostate{});
        } else {
            result.set_value(co_await std::move(child));
        }
    } catch (...) {
        result.set_exception(std::current_exception());
    }
    join.finished(index, result.failed());
}

/// The state of one when_all / when_any, a local of its coroutine: the children's tasks,
/// their results, and the coroutines that run them.
template <typename... T>
class join_group {
public:
    join_group(bool first_wins, task<T>&&... tasks)
        : m_tasks(std::move(tasks)...), m_state(sizeof...(T), first_wins),
          m_children(make_children(std::index_sequence_for<T...>{})) {}
    join_group(const join_group&) = delete;
    join_group& operator=(const join_group&) = delete;

    /// What group.wait() returns.
    class awaiter {
    public:
        explicit awaiter(join_group& group) noexcept : m_group(group) {}
        bool await_ready() const noexcept { return false; }
        template <typename Promise>
        bool await_suspend(std::coroutine_handle<Promise> parent) noexcept {
            cancellation_scope* scope = nullptr;
            if constexpr (std::is_base_of_v<task_promise_base, Promise>) {
                scope = parent.promise().m_scope;
            }
            return m_group.m_state.start(m_group.m_children, parent, scope);
        }
        void await_resume() const noexcept {}

    private:
        join_group& m_group;
    };

    /// co_await group.wait(): runs every child and resumes when all have finished.
    awaiter wait() noexcept { return awaiter{*this}; }

    const join_state& state() const noexcept { return m_state; }
    std::tuple<child_result<T>...>& results() noexcept { return m_results; }

private:
    template <std::size_t... I>
    std::array<join_child, sizeof...(T)> make_children(std::index_sequence<I...>) {
        return {run_child(std::get<I>(m_tasks), std::get<I>(m_results), m_state, I)...};
    }

    std::tuple<task<T>...> m_tasks;
    std::tuple<child_result<T>...> m_results;
    join_state m_state;
    std::array<join_child, sizeof...(T)> m_children;
};

} // namespace ucoro::detail
