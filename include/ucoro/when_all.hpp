// co_await when_all(a(), b(), c()): run tasks concurrently, get every result.
#pragma once

#include <tuple>
#include <utility>

#include "ucoro/detail/join.hpp"
#include "ucoro/task.hpp"

namespace ucoro {

/// Runs every task concurrently on the awaiting coroutine's context and returns all their
/// values, in argument order (a task<void> gives std::monostate). It returns only once every
/// task has finished, so nothing a task owns is freed while the kernel may still use it.
///
/// If any task throws, the others still run to their end, and the exception of the first
/// task to fail (in completion order) is rethrown. Cancelling the task that awaits
/// when_all (when_any, cancellation_scope) cancels every child.
template <typename... T>
task<std::tuple<detail::non_void_t<T>...>> when_all(task<T>... tasks) {
    static_assert(sizeof...(T) > 0, "when_all needs at least one task");
    detail::join_group<T...> group(/*first_wins=*/false, std::move(tasks)...);
    co_await group.wait();
    if (const std::size_t failed = group.state().first_failure();
        failed != detail::join_state::none) {
        std::apply(
            [failed](auto&... results) {
                std::size_t i = 0;
                ((i++ == failed ? results.rethrow_if_failed() : void()), ...);
            },
            group.results());
    }
    co_return std::apply(
        [](auto&... results) { return std::tuple<detail::non_void_t<T>...>(results.take()...); },
        group.results());
}

} // namespace ucoro
