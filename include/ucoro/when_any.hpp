// co_await when_any(a(), b()): the first task to finish wins; the others are cancelled.
#pragma once

#include <cstddef>
#include <tuple>
#include <utility>
#include <variant>

#include "ucoro/detail/join.hpp"
#include "ucoro/task.hpp"

namespace ucoro {

/// Which task won a when_any, and its value: `value.index() == index`, and
/// `std::get<I>(value)` is task I's value (std::monostate for a task<void>).
template <typename... T>
struct when_any_result {
    std::size_t index;
    std::variant<detail::non_void_t<T>...> value;
};

namespace detail {

template <std::size_t I, typename... T>
when_any_result<T...> take_winner(std::tuple<child_result<T>...>& results, std::size_t winner) {
    if constexpr (I + 1 < sizeof...(T)) {
        if (winner != I) {
            return take_winner<I + 1, T...>(results, winner);
        }
    }
    return {I, std::variant<non_void_t<T>...>(std::in_place_index<I>, std::get<I>(results).take())};
}

} // namespace detail

/// Runs every task concurrently; the first to finish wins, by returning or by throwing. The
/// others are then cancelled: every operation each one is suspended in, however deep in its
/// await chain, completes with std::errc::operation_canceled (or with its own result if it
/// was already done), and they unwind normally. when_any returns only after every loser has
/// finished, so no frame or buffer is freed while the kernel still holds it.
///
/// Returns the winner's index and value, or rethrows the winner's exception. The losers'
/// values and exceptions are dropped: a cancelled task often ends by throwing, and that is
/// not news. A loser suspended on something outside the ring (see cancellation_scope.hpp)
/// keeps when_any waiting until it finishes.
template <typename... T>
task<when_any_result<T...>> when_any(task<T>... tasks) {
    static_assert(sizeof...(T) > 0, "when_any needs at least one task");
    detail::join_group<T...> group(/*first_wins=*/true, std::move(tasks)...);
    co_await group.wait();
    co_return detail::take_winner<0, T...>(group.results(), group.state().winner());
}

} // namespace ucoro
