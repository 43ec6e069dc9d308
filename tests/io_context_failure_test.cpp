// io_context when things go wrong: a cancel that cannot be queued, a loop that throws
// under block_on, a completion the kernel drops, exceptions in detached tasks, a stop that
// arrives during block_on. The failures are injected through detail/fault_injection.hpp.
#include <catch2/catch.hpp>

#include <liburing.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "support/context.hpp"
#include "support/counting.hpp"
#include "support/stderr_capture.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro_test::make_context;

/// Fails the next `failures` io_uring_enter calls with `error`, then lets them through.
class failing_enter final : public ucoro::detail::fault_injector {
public:
    failing_enter(int error, int failures) : m_error(error), m_failures(failures) {}
    int before_enter() noexcept override {
        if (m_failures > 0) {
            --m_failures;
            return -m_error;
        }
        return 0;
    }

private:
    int m_error;
    int m_failures;
};

/// Drops the CQE of one operation, the way a kernel out of memory for its overflow list
/// would.
class dropping_completion final : public ucoro::detail::fault_injector {
public:
    explicit dropping_completion(const void* victim) : m_victim(victim) {}
    verdict on_completion(std::uint64_t user_data, int&, std::uint32_t&) noexcept override {
        if (user_data == reinterpret_cast<std::uintptr_t>(m_victim)) {
            ++dropped;
            return verdict::drop;
        }
        return verdict::deliver;
    }
    int dropped = 0;

private:
    const void* m_victim;
};

struct sleep_record {
    ucoro::sleep_operation* op = nullptr;
    std::error_code error;
    int resumed = 0;
};

task<void> sleep_and_record(io_context& context, std::chrono::nanoseconds duration,
                            sleep_record& record) {
    auto op = ucoro::sleep_for(context, duration);
    record.op = &op;
    record.error = co_await op;
    record.op = nullptr;
    ++record.resumed;
}

struct cancel_scene {
    sleep_record target;
    std::vector<sleep_record> fillers;
    bool cancel_threw = false;
};

task<void> cancel_into_a_full_queue(io_context& context, cancel_scene& scene,
                                    ucoro::detail::fault_injector& faults) {
    // Runs after the filler sleeps in the same turn: their SQEs fill the 4-entry SQ, so the
    // cancel must flush it, and that io_uring_enter is made to fail.
    ucoro::detail::set_fault_injector(context, &faults);
    try {
        scene.target.op->cancel();
    } catch (const std::system_error&) {
        scene.cancel_threw = true;
    }
    ucoro::detail::set_fault_injector(context, nullptr);
    context.stop(); // must still cancel the target: no cancel for it was ever queued
    co_return;
}

} // namespace

TEST_CASE("a cancel whose SQE could not be queued does not hide the operation from stop()") {
    auto context = make_context(ucoro::io_context_options{4, 64});
    if (!context) {
        return;
    }
    cancel_scene scene;
    scene.fillers.resize(4);
    // The target goes into the kernel in the first turn; the rest happens in the second.
    context->spawn(sleep_and_record(*context, 10s, scene.target));
    context->block_on(
        [](io_context& c) -> task<void> { co_await ucoro_test::next_turn_of(c); }(*context));
    REQUIRE(scene.target.op != nullptr);
    failing_enter faults(ENOMEM, 1);
    for (auto& filler : scene.fillers) {
        context->spawn(sleep_and_record(*context, 10s, filler));
    }
    context->spawn(cancel_into_a_full_queue(*context, scene, faults));
    const auto started = std::chrono::steady_clock::now();
    context->run();

    CHECK(scene.cancel_threw);
    // Before the fix the target's flag said "cancel requested" although no cancel SQE
    // existed, so stop() skipped it and it slept its full 10 s.
    CHECK(scene.target.resumed == 1);
    CHECK(scene.target.error == std::errc::operation_canceled);
    CHECK(std::chrono::steady_clock::now() - started < 5s);
    CHECK(context->in_flight() == 0);
}

namespace {

task<int> sleep_then_answer(io_context& context, int& finished) {
    (void)co_await ucoro::sleep_for(context, 1ms);
    ++finished;
    co_return 42;
}

} // namespace

task<int> answer_once_other_finished(io_context& context, const int& finished) {
    while (finished == 0) {
        co_await ucoro_test::next_turn{context};
    }
    co_return 7;
}

TEST_CASE("block_on that throws leaves its task safe to finish in a later block_on") {
    auto context = make_context();
    if (!context) {
        return;
    }
    int finished = 0;
    failing_enter faults(ENOMEM, 1);
    ucoro::detail::set_fault_injector(*context, &faults);
    // The first io_uring_enter fails: block_on throws while its task is suspended on the
    // sleep, whose SQE is still in the ring.
    CHECK_THROWS_AS(context->block_on(sleep_then_answer(*context, finished)), std::system_error);
    ucoro::detail::set_fault_injector(*context, nullptr);
    CHECK(finished == 0);
    // The first task finishes during this second block_on. Before the fix it stored its 42
    // and its "done" into the first block_on's stack frame, long gone, where this block_on
    // now keeps its own state: this block_on returned 42 before its task had finished.
    const int second = context->block_on(answer_once_other_finished(*context, finished));
    CHECK(finished == 1);
    CHECK(second == 7);
    context->run();
    CHECK(context->in_flight() == 0);
}

TEST_CASE("a completion the kernel drops fails the context loudly instead of hanging") {
    ucoro_test::stderr_capture capture;
    std::string captured;
    {
        auto context = make_context();
        if (!context) {
            return;
        }
        sleep_record lost;
        sleep_record other;
        context->spawn(sleep_and_record(*context, 1ms, lost));
        context->spawn(sleep_and_record(*context, 1ms, other));
        context->block_on(
            [](io_context& c) -> task<void> { co_await ucoro_test::next_turn_of(c); }(*context));
        REQUIRE(lost.op != nullptr);
        dropping_completion faults(lost.op);
        ucoro::detail::set_fault_injector(*context, &faults);

        bool threw = false;
        try {
            context->run(); // before the fix: waits forever for the lost CQE
        } catch (const std::system_error& e) {
            threw = true;
            CHECK(e.code() == std::errc::state_not_recoverable);
            CHECK(std::string(e.what()).find("dropped 1 completion") != std::string::npos);
        }
        CHECK(threw);
        CHECK(faults.dropped == 1);
        CHECK(context->stats().completions_lost == 1);
        CHECK(lost.resumed == 0);
        // A failed context stays failed.
        CHECK_THROWS_AS(context->run(), std::system_error);
        ucoro::detail::set_fault_injector(*context, nullptr);
        // ~io_context settles with the kernel synchronously and frees the frames: the
        // sanitizer run checks nothing leaks.
    }
    captured = capture.finish();
    INFO("stderr: " << captured);
    CHECK(captured.find("dropped 1 completion") != std::string::npos);
}

namespace {

struct failing_task_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

task<void> fail_after_sleep(io_context& context) {
    (void)co_await ucoro::sleep_for(context, 1ms);
    throw failing_task_error("accept loop died");
}

} // namespace

TEST_CASE("the unhandled-exception handler sees every escaped exception and may stop") {
    auto context = make_context();
    if (!context) {
        return;
    }
    std::vector<std::string> seen;
    context->set_unhandled_exception_handler([&](std::exception_ptr error) {
        try {
            std::rethrow_exception(error);
        } catch (const failing_task_error& e) {
            seen.emplace_back(e.what());
        }
        context->stop();
    });
    sleep_record survivor;
    context->spawn(sleep_and_record(*context, 1h, survivor));
    context->spawn(fail_after_sleep(*context));
    context->run(); // the handler's stop() ends the hour-long sleep

    REQUIRE(seen.size() == 1);
    CHECK(seen[0] == "accept loop died");
    CHECK(context->stats().unhandled_exceptions == 1);
    CHECK(survivor.resumed == 1);
    CHECK(survivor.error == std::errc::operation_canceled);
}

TEST_CASE("a handler that throws is reported and the loop goes on") {
    auto context = make_context();
    if (!context) {
        return;
    }
    context->set_unhandled_exception_handler(
        [](std::exception_ptr) { throw std::runtime_error("handler failed"); });
    sleep_record other;
    ucoro_test::stderr_capture capture;
    context->spawn(fail_after_sleep(*context));
    context->spawn(sleep_and_record(*context, 2ms, other));
    context->run();
    const std::string captured = capture.finish();
    CHECK(captured.find("unhandled-exception handler itself threw") != std::string::npos);
    CHECK(other.resumed == 1);
    CHECK_FALSE(other.error);
    CHECK(context->stats().unhandled_exceptions == 1);
}

TEST_CASE("stop() requested during block_on stays pending until a run() completes it") {
    auto context = make_context();
    if (!context) {
        return;
    }
    sleep_record long_sleep;
    context->spawn(sleep_and_record(*context, 10s, long_sleep));
    const int answer = context->block_on([](io_context& c) -> task<int> {
        c.stop();
        co_return 7; // finishes in the same turn: block_on returns before the stop is done
    }(*context));
    CHECK(answer == 7);
    // Before the fix the request was dropped here and the sleep ran its full 10 s below.
    CHECK(context->stop_requested());
    const auto started = std::chrono::steady_clock::now();
    context->run();
    CHECK(std::chrono::steady_clock::now() - started < 5s);
    CHECK(long_sleep.resumed == 1);
    CHECK(long_sleep.error == std::errc::operation_canceled);
    CHECK_FALSE(context->stop_requested());
}
