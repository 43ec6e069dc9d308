// async_event: a wait on a set event returns at once; set() wakes every waiter once, on
// the next turn and not inside set(); reset() makes later waits wait again; a wait is ended
// with operation_canceled by task_handle::cancel, by losing a when_any (and wins one against
// a sleep when set first), by stop(), and by the event's destruction.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <system_error>
#include <vector>

#include "support/counting.hpp"
#include "ucoro/async_event.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/task_handle.hpp"
#include "ucoro/when_any.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::async_event;
using ucoro::io_context;
using ucoro::task;
using ucoro_test::make_context;
using ucoro_test::next_turn;

/// What one waiter saw: how often it came back, and with what.
struct wait_record {
    int resumed = 0;
    std::error_code error = std::make_error_code(std::errc::io_error);
};

task<void> wait_on(async_event& event, wait_record& record) {
    record.error = co_await event.wait();
    ++record.resumed;
}

task<std::error_code> wait_for(async_event& event) {
    co_return co_await event.wait();
}

task<std::error_code> sleep_task(io_context& context, std::chrono::nanoseconds duration) {
    co_return co_await ucoro::sleep_for(context, duration);
}

/// Yields `turns` times: lets everything that was posted run, without sleeping.
task<void> turns(io_context& context, int count) {
    for (int i = 0; i < count; ++i) {
        co_await next_turn{context};
    }
}

TEST_CASE("async_event: a wait on a set event returns success without suspending") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event event(*context);
    event.set();
    CHECK(event.is_set());
    context->block_on([&]() -> task<void> {
        const auto completions = context->stats().completions;
        const std::error_code error = co_await event.wait();
        CHECK_FALSE(error);
        CHECK(context->stats().completions == completions); // nothing went to the ring
    }());
    CHECK(event.is_set()); // a wait does not consume the event
}

TEST_CASE("async_event: set() wakes the waiter on the next turn, not inside set()") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event event(*context);
    wait_record record;
    context->spawn(wait_on(event, record));
    context->block_on([&]() -> task<void> {
        co_await next_turn{*context}; // the waiter is waiting now
        CHECK(record.resumed == 0);
        event.set();
        CHECK(record.resumed == 0); // set() only scheduled it
        co_await next_turn{*context};
        CHECK(record.resumed == 1);
    }());
    CHECK(record.resumed == 1);
    CHECK_FALSE(record.error);
}

TEST_CASE("async_event: set() wakes every waiter exactly once, in the order they came") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event event(*context);
    std::vector<wait_record> records(5);
    std::vector<int> order;
    for (std::size_t i = 0; i < records.size(); ++i) {
        context->spawn(
            [](async_event& e, wait_record& r, std::vector<int>& o, int id) -> task<void> {
                r.error = co_await e.wait();
                ++r.resumed;
                o.push_back(id);
            }(event, records[i], order, static_cast<int>(i)));
    }
    context->block_on([&]() -> task<void> {
        co_await next_turn{*context};
        event.set();
        event.set(); // nobody is waiting any more: nothing happens twice
        co_await turns(*context, 3);
    }());
    for (const auto& record : records) {
        CHECK(record.resumed == 1);
        CHECK_FALSE(record.error);
    }
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("async_event: after reset() a wait waits again until the next set()") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event event(*context, /*initially_set=*/true);
    CHECK(event.is_set());
    event.reset();
    CHECK_FALSE(event.is_set());
    wait_record record;
    context->spawn(wait_on(event, record));
    context->block_on([&]() -> task<void> {
        co_await turns(*context, 5);
        CHECK(record.resumed == 0); // reset: the earlier set no longer counts
        event.set();
        co_await next_turn{*context};
    }());
    CHECK(record.resumed == 1);
    CHECK_FALSE(record.error);
}

TEST_CASE("async_event: a waiter that set() woke sees success even if reset() follows at once") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event event(*context);
    wait_record record;
    context->spawn(wait_on(event, record));
    context->block_on([&]() -> task<void> {
        co_await next_turn{*context};
        event.set();
        event.reset(); // before the waiter has run
        co_await next_turn{*context};
    }());
    CHECK(record.resumed == 1);
    CHECK_FALSE(record.error);
    CHECK_FALSE(event.is_set());
}

TEST_CASE("async_event: task_handle::cancel ends a wait with operation_canceled") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event event(*context);
    wait_record record;
    auto handle = context->spawn(wait_on(event, record));
    context->block_on([&]() -> task<void> {
        co_await next_turn{*context};
        handle.cancel();
        CHECK(record.resumed == 0); // resumed on the next turn, like set()
        co_await handle.join();
        event.set(); // the cancelled waiter left the list: nobody to wake
        co_await next_turn{*context};
    }());
    CHECK(record.resumed == 1);
    CHECK(record.error == std::errc::operation_canceled);
}

TEST_CASE("async_event: a cancel that comes after set() in the same turn leaves the success") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event event(*context);
    wait_record record;
    auto handle = context->spawn(wait_on(event, record));
    context->block_on([&]() -> task<void> {
        co_await next_turn{*context};
        event.set();
        handle.cancel(); // too late: the waiter was woken by set()
        co_await handle.join();
    }());
    CHECK(record.resumed == 1);
    CHECK_FALSE(record.error);
}

TEST_CASE("async_event: a task cancelled before it waits gets operation_canceled, set or not") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event unset(*context);
    async_event set(*context, /*initially_set=*/true);
    wait_record on_unset;
    wait_record on_set;
    auto first = context->spawn(wait_on(unset, on_unset));
    auto second = context->spawn(wait_on(set, on_set));
    first.cancel(); // neither has started
    second.cancel();
    context->run();
    CHECK(on_unset.resumed == 1);
    CHECK(on_unset.error == std::errc::operation_canceled);
    CHECK(on_set.resumed == 1);
    CHECK(on_set.error == std::errc::operation_canceled);
}

TEST_CASE("async_event: when_any of a wait and a sleep, the event set first wins") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event event(*context);
    context->spawn([](io_context& c, async_event& e) -> task<void> {
        co_await next_turn{c};
        e.set();
    }(*context, event));
    const auto start = std::chrono::steady_clock::now();
    auto outcome = context->block_on(ucoro::when_any(wait_for(event), sleep_task(*context, 1h)));
    CHECK(outcome.index == 0);
    CHECK_FALSE(std::get<0>(outcome.value));
    CHECK(std::chrono::steady_clock::now() - start < 10s); // the hour's sleep was cancelled
    CHECK(context->in_flight() == 0);
}

TEST_CASE("async_event: when_any of a wait and a sleep, the sleep wins and the wait is "
          "cancelled") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event event(*context);
    wait_record loser;
    auto outcome = context->block_on(ucoro::when_any(
        [](async_event& e, wait_record& r) -> task<std::error_code> {
            r.error = co_await e.wait();
            ++r.resumed;
            co_return r.error;
        }(event, loser),
        sleep_task(*context, 10ms)));
    CHECK(outcome.index == 1);
    CHECK_FALSE(std::get<1>(outcome.value));
    CHECK(loser.resumed == 1);
    CHECK(loser.error == std::errc::operation_canceled);
    // The wait left the event: a set now wakes nobody, and nothing is left to run.
    event.set();
    context->run();
    CHECK(loser.resumed == 1);
}

TEST_CASE("async_event: stop() ends every wait with operation_canceled") {
    auto context = make_context();
    if (!context) {
        return;
    }
    async_event event(*context);
    std::vector<wait_record> records(3);
    for (auto& record : records) {
        context->spawn(wait_on(event, record));
    }
    context->spawn([](io_context& c) -> task<void> {
        co_await next_turn{c};
        c.stop();
    }(*context));
    context->run(); // returns: the waits ended, nothing else is left
    for (const auto& record : records) {
        CHECK(record.resumed == 1);
        CHECK(record.error == std::errc::operation_canceled);
    }
}

TEST_CASE("async_event: destroying the event resumes its waiters with operation_canceled") {
    auto context = make_context();
    if (!context) {
        return;
    }
    std::optional<async_event> event;
    event.emplace(*context);
    std::vector<wait_record> records(3);
    for (auto& record : records) {
        context->spawn(wait_on(*event, record));
    }
    context->block_on([&]() -> task<void> {
        co_await next_turn{*context};
        event.reset();                  // destroys it, waiters and all
        CHECK(records[0].resumed == 0); // on the next turn, as ever
        co_await next_turn{*context};
    }());
    for (const auto& record : records) {
        CHECK(record.resumed == 1);
        CHECK(record.error == std::errc::operation_canceled);
    }
}

TEST_CASE("async_event: a context destroyed while tasks wait frees them and the event forgets "
          "them") {
    auto context = make_context();
    if (!context) {
        return;
    }
    ucoro_test::lifetime_counts frames;
    // Outlives the context (reset below): the frames the context frees must take their
    // nodes off the event's list, or set() below would touch freed memory.
    async_event event(*context);
    for (int i = 0; i < 3; ++i) {
        context->spawn([](async_event& e, ucoro_test::counted) -> task<void> {
            (void)co_await e.wait();
        }(event, ucoro_test::counted(frames)));
    }
    context->block_on(turns(*context, 1));
    CHECK(frames.alive() == 3);
    context.reset();
    CHECK(frames.alive() == 0);
    event.set(); // nobody is listed, so the context that is gone is not touched
    CHECK(event.is_set());
}

} // namespace
