// signal_set: signals arrive as values of wait(), whether raised before or while waiting,
// and the thread's signal mask is restored when the set is destroyed.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <system_error>

#include "support/counting.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/io_result.hpp"
#include "ucoro/signal_set.hpp"
#include "ucoro/task.hpp"
#include "ucoro/timeout.hpp"
#include "ucoro/when_any.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::io_result;
using ucoro::task;
using ucoro_test::make_context;
using ucoro_test::next_turn;

/// Sets SIGUSR1 and SIGUSR2 to be ignored for as long as it lives. A blocked signal is
/// still queued when ignored (so the signalfd sees it), but if a failing test leaves one
/// pending, unblocking it discards it instead of killing the whole test program.
class ignore_user_signals {
public:
    ignore_user_signals() {
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        sigemptyset(&ignore.sa_mask);
        REQUIRE(::sigaction(SIGUSR1, &ignore, &m_previous_usr1) == 0);
        REQUIRE(::sigaction(SIGUSR2, &ignore, &m_previous_usr2) == 0);
    }
    ignore_user_signals(const ignore_user_signals&) = delete;
    ignore_user_signals& operator=(const ignore_user_signals&) = delete;
    ~ignore_user_signals() {
        ::sigaction(SIGUSR1, &m_previous_usr1, nullptr);
        ::sigaction(SIGUSR2, &m_previous_usr2, nullptr);
    }

private:
    struct sigaction m_previous_usr1 {};
    struct sigaction m_previous_usr2 {};
};

bool is_blocked(int signal_number) {
    sigset_t current;
    sigemptyset(&current);
    REQUIRE(::pthread_sigmask(SIG_BLOCK, nullptr, &current) == 0);
    return sigismember(&current, signal_number) == 1;
}

task<io_result<int>> wait_in_task(ucoro::signal_set& signals) {
    co_return co_await signals.wait();
}

task<io_result<int>> raise_then_wait(ucoro::signal_set& signals, int signal_number) {
    REQUIRE(::kill(::getpid(), signal_number) == 0);
    co_return co_await signals.wait();
}

TEST_CASE("signal_set::wait returns a signal raised from inside a coroutine") {
    ignore_user_signals guard;
    auto context = make_context();
    if (!context) {
        return;
    }
    ucoro::signal_set signals(*context, {SIGUSR1});
    const auto [error, signal_number] = context->block_on(raise_then_wait(signals, SIGUSR1));
    CHECK_FALSE(error);
    CHECK(signal_number == SIGUSR1);
}

TEST_CASE("signal_set::wait returns a signal raised before waiting began") {
    ignore_user_signals guard;
    auto context = make_context();
    if (!context) {
        return;
    }
    ucoro::signal_set signals(*context, {SIGUSR1});
    // Blocked by the set, so it stays pending until wait() reads it.
    REQUIRE(::kill(::getpid(), SIGUSR1) == 0);
    const auto [error, signal_number] = context->block_on(wait_in_task(signals));
    CHECK_FALSE(error);
    CHECK(signal_number == SIGUSR1);
}

struct wait_record {
    bool finished = false;
    bool finished_before_raise = false;
    io_result<int> result{};
};

task<void> wait_for_signal(ucoro::signal_set& signals, wait_record& record) {
    record.result = co_await signals.wait();
    record.finished = true;
}

task<void> raise_later(io_context& context, int signal_number, wait_record& record) {
    // By the next turn the waiter has found nothing to read and is polling in the ring.
    co_await next_turn{context};
    record.finished_before_raise = record.finished;
    REQUIRE(::kill(::getpid(), signal_number) == 0);
}

TEST_CASE("signal_set::wait suspends until one of its signals arrives and names it") {
    ignore_user_signals guard;
    auto context = make_context();
    if (!context) {
        return;
    }
    ucoro::signal_set signals(*context, {SIGUSR1, SIGUSR2});
    wait_record record;
    context->spawn(wait_for_signal(signals, record));
    context->spawn(raise_later(*context, SIGUSR2, record));
    context->run();
    CHECK_FALSE(record.finished_before_raise);
    CHECK(record.finished);
    CHECK_FALSE(record.result.error);
    CHECK(record.result.value == SIGUSR2);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("signal_set::wait under with_timeout ends with timed_out and leaves a later signal "
          "for the next wait") {
    ignore_user_signals guard;
    auto context = make_context();
    if (!context) {
        return;
    }
    ucoro::signal_set signals(*context, {SIGUSR1});
    io_result<int> timed{};
    io_result<int> later{};
    context->block_on([&]() -> task<void> {
        timed = co_await ucoro::with_timeout(signals.wait(), 20ms);
        REQUIRE(::kill(::getpid(), SIGUSR1) == 0);
        later = co_await ucoro::with_timeout(signals.wait(), 10s);
    }());
    CHECK(timed.error == std::errc::timed_out);
    CHECK_FALSE(later.error);
    CHECK(later.value == SIGUSR1);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("signal_set::wait as when_any's loser is cancelled and the loop empties") {
    ignore_user_signals guard;
    auto context = make_context();
    if (!context) {
        return;
    }
    ucoro::signal_set signals(*context, {SIGUSR1});
    io_result<int> lost{{}, -1};
    auto loser = [&]() -> task<void> { lost = co_await signals.wait(); };
    auto winner = [&]() -> task<void> { co_await next_turn{*context}; };
    const auto outcome = context->block_on(ucoro::when_any(loser(), winner()));
    CHECK(outcome.index == 1);
    CHECK(lost.error == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("destroying a signal_set restores the signal mask it replaced") {
    ignore_user_signals guard;
    auto context = make_context();
    if (!context) {
        return;
    }
    // SIGUSR2 is blocked beforehand and must stay blocked; SIGUSR1 must be unblocked again.
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigset_t original;
    REQUIRE(::pthread_sigmask(SIG_BLOCK, &usr2, &original) == 0);
    REQUIRE_FALSE(is_blocked(SIGUSR1));
    {
        ucoro::signal_set signals(*context, {SIGUSR1});
        CHECK(is_blocked(SIGUSR1));
        CHECK(is_blocked(SIGUSR2));
    }
    CHECK_FALSE(is_blocked(SIGUSR1));
    CHECK(is_blocked(SIGUSR2));
    REQUIRE(::pthread_sigmask(SIG_SETMASK, &original, nullptr) == 0);
}

} // namespace

TEST_CASE("destroying a signal_set consumes a signal still pending instead of dying of it") {
    // The default action on purpose: if the pending SIGUSR2 were unblocked by the mask
    // restore, it would terminate this test program, and ctest would report the failure.
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    struct sigaction previous {};
    REQUIRE(::sigaction(SIGUSR2, &default_action, &previous) == 0);
    REQUIRE_FALSE(is_blocked(SIGUSR2));
    {
        auto context = make_context();
        if (!context) {
            ::sigaction(SIGUSR2, &previous, nullptr);
            return;
        }
        ucoro::signal_set signals(*context, {SIGUSR2});
        // Like a second Ctrl+C arriving after the server decided to stop.
        REQUIRE(::kill(::getpid(), SIGUSR2) == 0);
    }
    CHECK_FALSE(is_blocked(SIGUSR2));
    ::sigaction(SIGUSR2, &previous, nullptr);
}
