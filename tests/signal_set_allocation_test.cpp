// signal_set::wait allocates nothing: it is an awaiter in the waiting coroutine's frame (a
// poll of the signalfd, then a read), not a task with a frame of its own. The global
// operator new is replaced in this test program only, to count every allocation over a
// thousand waits that each go through the ring.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>

#include "support/context.hpp"
#include "support/counting_new.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/signal_set.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"

namespace {

using ucoro::io_context;
using ucoro::task;

struct exchange {
    std::size_t rounds;
    std::size_t counted_from; // earlier rounds warm up whatever the loop keeps
    std::size_t received = 0;
    std::size_t failures = 0;
    std::size_t allocations = 0;
};

// Waits for each signal before it is raised: every wait finds nothing to read at once and
// polls the signalfd through the ring.
task<void> waiter(ucoro::signal_set& signals, exchange& x) {
    for (std::size_t i = 0; i < x.rounds; ++i) {
        if (i == x.counted_from) {
            g_allocations = 0;
            g_counting = true;
        }
        const auto [error, signal_number] = co_await signals.wait();
        if (error || signal_number != SIGUSR1) {
            ++x.failures;
            break;
        }
        ++x.received;
    }
    g_counting = false;
    x.allocations = g_allocations;
}

// Raises the next signal once the waiter has taken the previous one (and, being resumed
// first, is already waiting again). Bounded: a waiter that stops taking signals ends it.
task<void> raiser(io_context& context, exchange& x) {
    for (std::size_t i = 0; i < x.rounds; ++i) {
        for (int turn = 0; turn < 1000 && x.received < i; ++turn) {
            (void)co_await ucoro::sleep_for(context, std::chrono::nanoseconds(0));
        }
        if (x.received < i || x.failures != 0) {
            break;
        }
        (void)::kill(::getpid(), SIGUSR1);
        (void)co_await ucoro::sleep_for(context, std::chrono::nanoseconds(0));
    }
}

TEST_CASE("signal_set::wait allocates nothing per wait") {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN; // a signal left pending by a failure is dropped, not fatal
    sigemptyset(&ignore.sa_mask);
    struct sigaction previous {};
    REQUIRE(::sigaction(SIGUSR1, &ignore, &previous) == 0);
    {
        auto context = ucoro_test::make_context();
        if (!context) {
            ::sigaction(SIGUSR1, &previous, nullptr);
            return;
        }
        ucoro::signal_set signals(*context, {SIGUSR1});
        exchange x{1'000, 100};
        context->spawn(waiter(signals, x));
        context->spawn(raiser(*context, x));
        context->run();
        CHECK(x.failures == 0);
        CHECK(x.received == x.rounds);
        INFO(x.allocations << " allocations in " << x.rounds - x.counted_from << " waits");
        CHECK(x.allocations == 0);
    }
    ::sigaction(SIGUSR1, &previous, nullptr);
}

} // namespace
