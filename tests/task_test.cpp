// task<T>: lazy start, results of every kind, exception propagation, deep await chains and
// the lifetime of coroutine frames. Tasks are driven by io_context::block_on.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/counting.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"

namespace {

using ucoro::task;
using ucoro_test::counted;
using ucoro_test::lifetime_counts;
using ucoro_test::make_context;

/// A distinct type, so a test catches exactly what it threw and nothing the library made.
struct test_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

task<void> set_flag(bool& flag) {
    flag = true;
    co_return;
}

task<void> append(std::vector<std::string>& log, std::string entry) {
    log.push_back(std::move(entry));
    co_return;
}

// Logs between creating a child task and awaiting it: the child's entry must come after.
task<void> create_then_await(std::vector<std::string>& log) {
    task<void> child = append(log, "child ran");
    log.push_back("child created");
    co_await std::move(child);
    log.push_back("child awaited");
}

TEST_CASE("calling a task function runs none of its body until the task is awaited") {
    bool ran = false;
    {
        task<void> never_awaited = set_flag(ran);
        CHECK(never_awaited.valid());
        CHECK_FALSE(never_awaited.done());
        CHECK_FALSE(ran);
    }
    // Destroyed without being awaited: the body never ran at all.
    CHECK_FALSE(ran);

    auto context = make_context();
    if (!context) {
        return;
    }
    task<void> awaited = set_flag(ran);
    CHECK_FALSE(ran);
    context->block_on(std::move(awaited));
    CHECK(ran);

    std::vector<std::string> log;
    context->block_on(create_then_await(log));
    CHECK(log == std::vector<std::string>{"child created", "child ran", "child awaited"});
}

task<int> forty_two() {
    co_return 42;
}

// Longer than any small-string buffer, so the value really lives on the heap.
task<std::string> long_text() {
    co_return std::string(200, 'u');
}

// Returns a named local: co_return moves it (a unique_ptr cannot be copied).
task<std::unique_ptr<int>> boxed(int value) {
    auto box = std::make_unique<int>(value);
    co_return box;
}

struct collected {
    int number = 0;
    std::string text;
    std::unique_ptr<int> box;
    bool void_task_ran = false;
};

task<void> collect(collected& out) {
    out.number = co_await forty_two();
    out.text = co_await long_text();
    out.box = co_await boxed(7);
    co_await set_flag(out.void_task_ran);
}

TEST_CASE("a task hands an int, a std::string and a move-only value to its awaiter") {
    auto context = make_context();
    if (!context) {
        return;
    }
    collected out;
    context->block_on(collect(out));
    CHECK(out.number == 42);
    CHECK(out.text == std::string(200, 'u'));
    REQUIRE(out.box != nullptr);
    CHECK(*out.box == 7);
    CHECK(out.void_task_ran);

    // The same values straight out of block_on.
    CHECK(context->block_on(forty_two()) == 42);
    CHECK(context->block_on(long_text()) == std::string(200, 'u'));
    const std::unique_ptr<int> box = context->block_on(boxed(-3));
    REQUIRE(box != nullptr);
    CHECK(*box == -3);
}

TEST_CASE("a task<void> runs to its end when awaited") {
    auto context = make_context();
    if (!context) {
        return;
    }
    bool ran = false;
    context->block_on(set_flag(ran));
    CHECK(ran);
}

// Throws at the bottom of a chain `levels` deep; every level above adds 1 if it returns.
task<int> fail_at_bottom(int levels) {
    if (levels == 0) {
        throw test_error("thrown at the bottom");
    }
    co_return 1 + co_await fail_at_bottom(levels - 1);
}

// Catches what a nested task threw: co_return is allowed in a handler (co_await is not).
task<std::string> catch_from(int levels) {
    try {
        const int value = co_await fail_at_bottom(levels);
        co_return "no exception, value " + std::to_string(value);
    } catch (const test_error& e) {
        co_return std::string("caught: ") + e.what();
    }
}

TEST_CASE("an exception thrown in a task propagates to its awaiter through several levels") {
    auto context = make_context();
    if (!context) {
        return;
    }
    // Thrown by the awaited task itself.
    CHECK(context->block_on(catch_from(0)) == "caught: thrown at the bottom");
    // Thrown five awaits below the catching task, passing through four that do not catch.
    CHECK(context->block_on(catch_from(5)) == "caught: thrown at the bottom");
    // Nobody catches: block_on rethrows the original exception.
    CHECK_THROWS_MATCHES(context->block_on(fail_at_bottom(3)), test_error,
                         Catch::Matchers::Message("thrown at the bottom"));
}

task<int> depth(int n) {
    if (n == 0) {
        co_return 0;
    }
    co_return 1 + co_await depth(n - 1);
}

TEST_CASE("a chain of 100000 nested awaits completes without overflowing the stack") {
    auto context = make_context();
    if (!context) {
        return;
    }
    // Without a guaranteed tail call each await and each return would nest a native frame:
    // 100,000 of them overflow an 8 MiB stack (transfer.hpp). A crash fails the test.
    constexpr int levels = 100'000;
    CHECK(context->block_on(depth(levels)) == levels);
    // Twice, so the trampoline's thread-local state is shown to be reset after a chain.
    CHECK(context->block_on(depth(levels)) == levels);
}

// A chain `levels` deep whose innermost task waits an hour on the ring, each frame holding
// a counted object.
task<int> parked_chain(ucoro::io_context& context, int levels, lifetime_counts& counts) {
    counted in_frame{counts};
    if (levels == 0) {
        (void)co_await ucoro::sleep_for(context, std::chrono::hours(1));
        co_return 0;
    }
    co_return 1 + co_await parked_chain(context, levels - 1, counts);
}

task<void> run_parked_chain(ucoro::io_context& context, int levels, lifetime_counts& counts) {
    (void)co_await parked_chain(context, levels, counts);
}

task<void> one_turn(ucoro::io_context& context) {
    co_await ucoro_test::next_turn{context};
}

TEST_CASE("destroying a context frees a 100000-deep suspended chain without deep recursion") {
    // Each frame owns the task it awaits, so freeing the top frame frees the one below from
    // inside its destructor: 100,000 nested destructors would overflow the stack. A crash
    // fails the test.
    constexpr int levels = 100'000;
    lifetime_counts counts;
    {
        auto context = make_context();
        if (!context) {
            return;
        }
        context->spawn(run_parked_chain(*context, levels, counts));
        context->block_on(one_turn(*context)); // the whole chain is built and parked
        REQUIRE(counts.constructed == levels + 1);
        REQUIRE(counts.destroyed == 0);
    } // ~io_context: cancel the sleep, then free the chain
    CHECK(counts.alive() == 0);
}

// One counted object as a parameter (lives as long as the frame) and one as a local
// (destroyed when the body ends, before final_suspend).
task<int> hold([[maybe_unused]] counted in_frame, lifetime_counts& locals, bool fail) {
    counted local{locals};
    if (fail) {
        throw test_error("hold failed");
    }
    co_return 7;
}

struct frame_report {
    bool threw = false;
    int value = 0;
    bool done = false;
    int params_alive_when_finished = -1;
    int locals_alive_when_finished = -1;
    int params_alive_after_reset = -1;
};

// Awaits hold() and looks at the counts while its finished frame is still owned by `t`,
// then again after `t` has released it.
task<void> await_and_inspect(lifetime_counts& params, lifetime_counts& locals, bool fail,
                             frame_report& report) {
    task<int> t = hold(counted{params}, locals, fail);
    try {
        // operator co_await borrows the handle: `t` keeps owning the frame afterwards.
        report.value = co_await std::move(t);
    } catch (const test_error&) {
        report.threw = true;
    }
    report.done = t.done();
    report.params_alive_when_finished = params.alive();
    report.locals_alive_when_finished = locals.alive();
    t = task<int>{}; // moving an empty task in frees the finished frame
    report.params_alive_after_reset = params.alive();
}

TEST_CASE("destroying a task that never started frees its frame") {
    lifetime_counts params;
    lifetime_counts locals;
    {
        task<int> t = hold(counted{params}, locals, false);
        // The argument's temporary is gone; its copy in the frame is alive.
        CHECK(params.alive() == 1);
        CHECK(locals.constructed == 0); // the body never started
    }
    CHECK(params.alive() == 0);
    CHECK(params.constructed >= 2);
    CHECK(locals.constructed == 0);
}

TEST_CASE("destroying a finished task frees its frame") {
    auto context = make_context();
    if (!context) {
        return;
    }
    lifetime_counts params;
    lifetime_counts locals;
    frame_report report;
    context->block_on(await_and_inspect(params, locals, false, report));
    CHECK_FALSE(report.threw);
    CHECK(report.value == 7);
    CHECK(report.done);
    CHECK(report.params_alive_when_finished == 1); // finished, but not yet destroyed
    CHECK(report.locals_alive_when_finished == 0);
    CHECK(report.params_alive_after_reset == 0);
    CHECK(params.alive() == 0);
    CHECK(locals.constructed == 1);
    CHECK(locals.alive() == 0);
}

TEST_CASE("a task that threw frees its frame when destroyed") {
    auto context = make_context();
    if (!context) {
        return;
    }
    lifetime_counts params;
    lifetime_counts locals;
    frame_report report;
    context->block_on(await_and_inspect(params, locals, true, report));
    CHECK(report.threw);
    CHECK(report.done);
    CHECK(report.params_alive_when_finished == 1);
    CHECK(report.locals_alive_when_finished == 0); // unwound when the exception left the body
    CHECK(report.params_alive_after_reset == 0);
    CHECK(params.alive() == 0);
    CHECK(locals.constructed == 1);
    CHECK(locals.alive() == 0);

    // The same through block_on, which owns the task and rethrows.
    CHECK_THROWS_AS(context->block_on(hold(counted{params}, locals, true)), test_error);
    CHECK(params.alive() == 0);
    CHECK(locals.alive() == 0);
}

TEST_CASE("a moved-from task owns no frame and the task moved into frees it exactly once") {
    lifetime_counts first;
    lifetime_counts second;
    lifetime_counts locals;
    {
        task<int> a = hold(counted{first}, locals, false);
        task<int> b = std::move(a);
        CHECK_FALSE(a.valid());
        CHECK_FALSE(a.done());
        CHECK(b.valid());
        CHECK(first.alive() == 1);

        a = task<int>{}; // resetting the moved-from task frees nothing
        CHECK(first.alive() == 1);

        // Move-assigning over a task that owns a frame frees the old frame.
        b = hold(counted{second}, locals, false);
        CHECK(first.alive() == 0);
        CHECK(second.alive() == 1);

        // Self-move-assignment must neither free nor lose the frame.
        task<int>& same = b;
        b = std::move(same);
        CHECK(b.valid());
        CHECK(second.alive() == 1);
    }
    CHECK(first.alive() == 0);
    CHECK(second.alive() == 0);
    CHECK(locals.constructed == 0);

    // A moved-to task still runs: moving transferred the coroutine, not a copy of it.
    auto context = make_context();
    if (!context) {
        return;
    }
    task<int> source = hold(counted{first}, locals, false);
    task<int> target = std::move(source);
    CHECK(context->block_on(std::move(target)) == 7);
    CHECK(first.alive() == 0);
    CHECK(locals.alive() == 0);
}

} // namespace
