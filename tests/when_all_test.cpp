// when_all: every value in argument order, the first failure rethrown only after every task
// has finished, tasks that never suspend, and when_all and when_any nested in each other.
#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>

#include "support/counting.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/when_all.hpp"
#include "ucoro/when_any.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro::when_all;
using ucoro::when_any;
using ucoro_test::make_context;
using ucoro_test::next_turn;

/// Returns `value` after `turns` turns of the loop: an order of completion fixed by events.
task<int> value_after(io_context& context, int value, int turns) {
    for (int i = 0; i < turns; ++i) {
        co_await next_turn{context};
    }
    co_return value;
}

task<std::string> text_at_once(std::string text) {
    co_return text;
}

task<void> sleep_then_mark(io_context& context, bool& done) {
    REQUIRE_FALSE(co_await ucoro::sleep_for(context, 1ms));
    done = true;
}

TEST_CASE("when_all returns every value in argument order") {
    auto context = make_context();
    if (!context) {
        return;
    }
    bool slept = false;
    auto [number, text, nothing] = context->block_on(when_all(
        value_after(*context, 42, 3), text_at_once("ready"), sleep_then_mark(*context, slept)));
    CHECK(number == 42);
    CHECK(text == "ready");
    CHECK(nothing == std::monostate{});
    CHECK(slept);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("when_all of tasks that never suspend returns at once") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto values = context->block_on(when_all(text_at_once("a"), text_at_once("b")));
    CHECK(values == std::tuple<std::string, std::string>("a", "b"));
}

task<int> fail_after(io_context& context, int turns, const char* what) {
    co_await value_after(context, 0, turns);
    throw std::runtime_error(what);
}

task<void> finish_after(io_context& context, int turns, bool& finished) {
    co_await value_after(context, 0, turns);
    finished = true;
}

task<void> expect_first_failure(io_context& context, bool& finished, std::string& caught) {
    try {
        co_await when_all(fail_after(context, 5, "second"), finish_after(context, 8, finished),
                          fail_after(context, 1, "first"));
    } catch (const std::runtime_error& e) {
        caught = e.what();
    }
}

TEST_CASE("when_all rethrows the first failure, after every task has finished") {
    auto context = make_context();
    if (!context) {
        return;
    }
    bool finished = false;
    std::string caught;
    context->block_on(expect_first_failure(*context, finished, caught));
    CHECK(caught == "first");
    CHECK(finished); // the slowest task ran to its end before when_all rethrew
}

TEST_CASE("when_all and when_any nest inside each other") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto [any_of_two, both] = context->block_on(
        when_all(when_any(value_after(*context, 1, 6), value_after(*context, 2, 2)),
                 when_all(value_after(*context, 3, 4), value_after(*context, 4, 1))));
    CHECK(any_of_two.index == 1);
    CHECK(std::get<1>(any_of_two.value) == 2);
    CHECK(both == std::tuple<int, int>(3, 4));
    CHECK(context->in_flight() == 0);
}

task<void> hold_and_sleep(io_context& context, ucoro_test::lifetime_counts& counts) {
    ucoro_test::counted local(counts);
    (void)co_await ucoro::sleep_for(context, 1h);
}

task<void> wait_for_both(io_context& context, ucoro_test::lifetime_counts& counts) {
    co_await when_all(hold_and_sleep(context, counts), hold_and_sleep(context, counts));
}

TEST_CASE("destroying the context while a when_all waits frees every frame") {
    ucoro_test::lifetime_counts counts;
    {
        auto context = make_context();
        if (!context) {
            return;
        }
        context->spawn(wait_for_both(*context, counts));
        // block_on returns after one turn, with the when_all and both sleeps suspended.
        context->block_on(ucoro_test::next_turn_of(*context));
        CHECK(counts.alive() == 2);
        CHECK(context->in_flight() == 2);
    }
    CHECK(counts.constructed == 2);
    CHECK(counts.alive() == 0);
}

} // namespace
