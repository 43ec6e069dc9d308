// Which operations with_timeout takes, checked at compile time: every single-shot operation
// built on io_operation (send_all and send_all_gather too, whose later rounds carry the
// deadline), and not close (a cancelled close leaves its descriptor neither ours nor
// closed), nor what is not an operation in the ring (a task, a stream's next(), an event
// wait). The test case below only makes ctest list this file; the checks are the
// static_asserts, which fail the build.
#include <catch2/catch.hpp>

#include <chrono>
#include <type_traits>
#include <utility>

#include "ucoro/async_event.hpp"
#include "ucoro/net/accept.hpp"
#include "ucoro/net/accept_stream.hpp"
#include "ucoro/net/close.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/recv.hpp"
#include "ucoro/net/recv_stream.hpp"
#include "ucoro/net/send.hpp"
#include "ucoro/net/send_gather.hpp"
#include "ucoro/net/shutdown.hpp"
#include "ucoro/poll.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/timeout.hpp"

namespace {

using namespace ucoro;
using namespace ucoro::net;

/// with_timeout(op, 1s) is a valid call for an rvalue operation.
template <typename Operation>
concept callable_with_timeout = requires(Operation&& operation) {
    with_timeout(std::forward<Operation>(operation), std::chrono::seconds(1));
};

/// What with_timeout returns can be awaited: it has operator co_await for an rvalue (the
/// only way it may be awaited, inside the co_await expression).
template <typename Operation>
concept awaitable_with_timeout = requires(Operation&& operation) {
    with_timeout(std::forward<Operation>(operation), std::chrono::seconds(1)).operator co_await();
};

template <typename Operation>
constexpr bool accepted = timeout_linkable<Operation>&& callable_with_timeout<Operation>&&
    awaitable_with_timeout<Operation>;

template <typename Operation>
constexpr bool refused = !timeout_linkable<Operation> && !callable_with_timeout<Operation> &&
                         !awaitable_with_timeout<Operation>;

// One SQE per round, every round linked to the timer and inside the task's scope.
static_assert(accepted<recv_operation>);
static_assert(accepted<send_operation>);
static_assert(accepted<send_all_operation>);
static_assert(accepted<send_all_gather_operation>);
static_assert(accepted<accept_operation>);
static_assert(accepted<connect_operation>);
static_assert(accepted<shutdown_operation>);
static_assert(accepted<poll_operation>);
static_assert(accepted<sleep_operation>);

// The operation says no: a close cut short would leave its descriptor in limbo.
static_assert(!close_operation::supports_timeout);
static_assert(refused<close_operation>);
// Not operations in the ring: time these with when_any and a sleep.
static_assert(refused<task<void>>);
static_assert(refused<task<int>>);
static_assert(refused<recv_stream::next_awaiter>);
static_assert(refused<accept_stream::next_awaiter>);
static_assert(refused<async_event::wait_operation>);
static_assert(refused<int>);

// The timed operation is awaited as a temporary only: an lvalue of it has no co_await,
// since the wrapped operation (a temporary of the same full expression) would be gone.
template <typename Timed>
concept lvalue_awaitable = requires(Timed& timed) {
    timed.operator co_await();
};
static_assert(!lvalue_awaitable<timed_operation<recv_operation>>);
// Nor is an lvalue operation accepted: awaited again after a timed await, it would still
// point at that await's (gone) state.
template <typename Operation>
concept callable_on_lvalue = requires(Operation& operation) {
    with_timeout(operation, std::chrono::seconds(1));
};
static_assert(!callable_on_lvalue<send_all_operation>);
static_assert(!callable_on_lvalue<recv_operation>);
static_assert(
    std::is_same_v<decltype(with_timeout(std::declval<recv_operation>(), std::chrono::seconds(1))),
                   timed_operation<recv_operation>>);

} // namespace

TEST_CASE("with_timeout takes exactly the operations that can be bounded in every round") {
    // Compiling this file is the test; these say the same at run time for the report.
    CHECK(accepted<send_all_gather_operation>);
    CHECK(refused<close_operation>);
}
