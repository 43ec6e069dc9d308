// async_event allocates nothing per wait: the waiter's node is the awaiter, in the waiting
// coroutine's frame. The global operator new is replaced in this test program only, to
// count every allocation while two coroutines hand a turn back and forth through two
// events ten thousand times.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <system_error>

#include "support/context.hpp"
#include "support/counting_new.hpp"
#include "ucoro/async_event.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/task.hpp"

namespace {

using ucoro::async_event;
using ucoro::task;

struct exchange {
    async_event ping;
    async_event pong;
    std::size_t rounds;
    std::size_t counted_from; // rounds before this one warm up the ready queue
    std::size_t allocations = 0;
    std::size_t failures = 0;
};

task<void> pinger(exchange& x) {
    for (std::size_t i = 0; i < x.rounds; ++i) {
        if (i == x.counted_from) {
            g_allocations = 0;
            g_counting = true;
        }
        x.ping.set();
        if (const auto error = co_await x.pong.wait(); error) {
            ++x.failures;
        }
        x.pong.reset();
    }
    g_counting = false;
    x.allocations = g_allocations;
}

task<void> ponger(exchange& x) {
    for (std::size_t i = 0; i < x.rounds; ++i) {
        if (const auto error = co_await x.ping.wait(); error) {
            ++x.failures;
        }
        x.ping.reset();
        x.pong.set();
    }
}

TEST_CASE("async_event: waiting and setting allocate nothing per wait") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    exchange x{async_event(*context), async_event(*context), 10'000, 1'000};
    context->spawn(ponger(x));
    context->spawn(pinger(x));
    context->run();
    CHECK(x.failures == 0);
    INFO(x.allocations << " allocations in " << x.rounds - x.counted_from << " rounds");
    // What remains is io_context::post's queue, a std::deque that takes a new block every
    // few dozen pushes as it cycles; a wait that allocated would show one or more per round.
    CHECK(x.allocations < (x.rounds - x.counted_from) / 16);
}

} // namespace
