// sleep_for: waits at least its duration, handles zero, negative and multi-second values,
// and reports operation_canceled when the context stops first. sleep_until: wakes no earlier
// than its deadline on io_context's monotonic clock; a deadline in the past is at once.
#include <catch2/catch.hpp>

#include <chrono>
#include <system_error>
#include <vector>

#include "support/counting.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro_test::make_context;
using ucoro_test::next_turn;

using steady = std::chrono::steady_clock;

struct timed_sleep {
    std::chrono::nanoseconds requested{};
    std::error_code error;
    std::chrono::nanoseconds elapsed{-1};
    int resumed = 0;
};

task<void> sleep_and_measure(io_context& context, timed_sleep& sleep) {
    const auto start = steady::now();
    sleep.error = co_await ucoro::sleep_for(context, sleep.requested);
    sleep.elapsed = steady::now() - start;
    ++sleep.resumed;
}

TEST_CASE("sleep_for(d) succeeds no earlier than d after it started") {
    auto context = make_context();
    if (!context) {
        return;
    }
    // Only a lower bound: a loaded machine may wake us late, never early. 1,050 ms also
    // checks the split into tv_sec and tv_nsec (a wrong split is EINVAL or a wrong length).
    const std::chrono::nanoseconds duration =
        GENERATE(as<std::chrono::nanoseconds>{}, 1ms, 30ms, 1050ms);
    timed_sleep sleep;
    sleep.requested = duration;
    context->block_on(sleep_and_measure(*context, sleep));
    INFO("requested " << duration.count() << " ns, slept " << sleep.elapsed.count() << " ns");
    CHECK(sleep.resumed == 1);
    CHECK_FALSE(sleep.error);
    CHECK(sleep.elapsed >= duration);
}

TEST_CASE("concurrent sleeps each last at least their own duration") {
    auto context = make_context();
    if (!context) {
        return;
    }
    std::vector<timed_sleep> sleeps(3);
    sleeps[0].requested = 40ms;
    sleeps[1].requested = 5ms;
    sleeps[2].requested = 20ms;
    for (auto& sleep : sleeps) {
        context->spawn(sleep_and_measure(*context, sleep));
    }
    context->run();
    for (const auto& sleep : sleeps) {
        INFO("requested " << sleep.requested.count() << " ns, slept " << sleep.elapsed.count()
                          << " ns");
        CHECK(sleep.resumed == 1);
        CHECK_FALSE(sleep.error);
        CHECK(sleep.elapsed >= sleep.requested);
    }
}

TEST_CASE("sleep_for(0) and a negative duration complete successfully") {
    auto context = make_context();
    if (!context) {
        return;
    }
    const std::chrono::nanoseconds duration = GENERATE(as<std::chrono::nanoseconds>{}, 0ns, -5ms);
    timed_sleep sleep;
    sleep.requested = duration;
    context->block_on(sleep_and_measure(*context, sleep));
    CHECK(sleep.resumed == 1);
    CHECK_FALSE(sleep.error); // a negative duration is clamped to zero, not EINVAL
    CHECK(context->in_flight() == 0);
}

task<void> stop_next_turn(io_context& context) {
    co_await next_turn{context}; // the sleep is in the kernel by now
    context.stop();
}

TEST_CASE("a sleep cancelled by stop() reports operation_canceled") {
    auto context = make_context();
    if (!context) {
        return;
    }
    timed_sleep sleep;
    sleep.requested = 1h;
    context->spawn(sleep_and_measure(*context, sleep));
    context->spawn(stop_next_turn(*context));
    context->run(); // returns only because the hour-long sleep was cancelled
    CHECK(sleep.resumed == 1);
    CHECK(sleep.error == std::errc::operation_canceled);
    CHECK(sleep.elapsed < 1h);
    CHECK(context->in_flight() == 0);
}

task<void> sleep_until_and_measure(io_context& context, io_context::clock::time_point deadline,
                                   std::error_code& error, io_context::clock::time_point& woke) {
    error = co_await ucoro::sleep_until(context, deadline);
    woke = context.now();
}

TEST_CASE("sleep_until(t) succeeds no earlier than t on the context's clock") {
    auto context = make_context();
    if (!context) {
        return;
    }
    const std::chrono::nanoseconds ahead =
        GENERATE(as<std::chrono::nanoseconds>{}, 1ms, 30ms, 1050ms);
    const auto start = context->now();
    // The context's clock is the kernel's CLOCK_MONOTONIC, steady_clock's.
    CHECK(start <= steady::now());
    const auto deadline = start + ahead;
    std::error_code error;
    io_context::clock::time_point woke{};
    context->block_on(sleep_until_and_measure(*context, deadline, error, woke));
    INFO("deadline " << ahead.count() << " ns ahead, woke " << (woke - start).count()
                     << " ns after");
    CHECK_FALSE(error);
    CHECK(woke >= deadline);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("sleep_until a deadline in the past completes at once, successfully") {
    auto context = make_context();
    if (!context) {
        return;
    }
    const auto deadline = GENERATE(as<io_context::clock::time_point>{},
                                   io_context::clock::time_point{}, steady::now() - 1h);
    std::error_code error;
    io_context::clock::time_point woke{};
    // An hour-long wait here would run into ctest's limit: "at once" is what passing shows.
    context->block_on(sleep_until_and_measure(*context, deadline, error, woke));
    CHECK_FALSE(error);
    CHECK(woke >= deadline);
}

} // namespace
