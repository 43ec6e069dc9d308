// io_context_options::batch_wait: a sleeping loop wakes once for a batch of completions that
// arrive within the window, still wakes when fewer arrive or a timer fires, and is off
// unless asked for.
#include <catch2/catch.hpp>

#include <liburing.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support/context.hpp"
#include "support/stream_pair.hpp"
#include "ucoro/detail/ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/timeout.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro_test::make_context;

task<void> sleep_then_note(io_context& context, std::chrono::milliseconds duration,
                           std::vector<std::error_code>& results) {
    results.push_back(co_await ucoro::sleep_for(context, duration));
}

task<void> receive_one(ucoro::net::socket& socket, std::string& received) {
    std::array<std::byte, 8> buffer{};
    auto [error, count] = co_await socket.recv(buffer);
    REQUIRE_FALSE(error);
    received.assign(reinterpret_cast<const char*>(buffer.data()), count);
}

ucoro::io_context_options batching(std::chrono::microseconds window, unsigned events) {
    ucoro::io_context_options options;
    options.batch_wait = window;
    options.batch_wait_events = events;
    return options;
}

// Receives on `count` socket pairs while another thread writes one letter to each peer,
// `gap` apart (pacing a producer, not waiting for an event). Returns the letters in pair
// order; the context's stats tell how often the loop woke.
std::string receive_trickle(ucoro_test::test_context& context, int count,
                            std::chrono::milliseconds gap = 1ms) {
    std::vector<ucoro_test::stream_pair> pairs;
    pairs.reserve(static_cast<std::size_t>(count)); // the tasks hold references into it
    std::vector<std::string> received(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        pairs.push_back(ucoro_test::make_stream_pair(context));
        context.spawn(receive_one(pairs.back().ours, received[static_cast<std::size_t>(i)]));
    }
    std::thread writer([&pairs, gap] {
        char letter = 'a';
        for (auto& pair : pairs) {
            std::this_thread::sleep_for(gap);
            (void)::write(pair.peer.get(), &letter, 1);
            ++letter;
        }
    });
    context.run();
    writer.join();
    std::string letters;
    for (const auto& one : received) {
        letters += one;
    }
    return letters;
}

TEST_CASE("batch_wait: detail::submit_and_wait_batch names its implementation, submits and "
          "returns with fewer completions than the batch") {
    auto context = make_context(batching(1ms, 2));
    if (!context) {
        return;
    }
    const std::string implementation = ucoro::detail::batch_wait_implementation();
    // Which of the two this build uses (liburing >= 2.8 or the hand-written flush for 2.3),
    // in the test's output whatever the outcome.
    WARN("batch wait implementation: " << implementation);
    CHECK((implementation == "io_uring_submit_and_wait_min_timeout (liburing >= 2.8)" ||
           implementation == "hand-written SQ flush and io_uring_enter2 (liburing < 2.8)"));
    if (!context->features().batch_wait) {
        WARN("SKIPPED: this kernel lacks IORING_FEAT_MIN_TIMEOUT (Linux 6.12)");
        return;
    }
    // One NOP, prepared outside any operation (user_data 42) and reaped here, so that the
    // context never sees it: the call must submit it and come back with one completion
    // although the batch asks for two (the 1 ms window ends the wait).
    io_uring& ring = ucoro::detail::native_ring(*context);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    REQUIRE(sqe != nullptr);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, 42);
    const int submitted =
        ucoro::detail::submit_and_wait_batch(ring, 2, 1000, context->features().registered_ring_fd);
    CHECK((submitted == 1 || submitted == -ETIME));
    io_uring_cqe* cqe = nullptr;
    REQUIRE(io_uring_peek_cqe(&ring, &cqe) == 0);
    CHECK(io_uring_cqe_get_data64(cqe) == 42);
    CHECK(cqe->res == 0);
    io_uring_cqe_seen(&ring, cqe);
    CHECK(io_uring_cq_ready(&ring) == 0);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("batch_wait: four receives that complete a millisecond apart wake the loop once") {
    auto context = make_context(batching(2s, 4));
    if (!context) {
        return;
    }
    if (!context->features().batch_wait) {
        WARN("SKIPPED: this kernel lacks IORING_FEAT_MIN_TIMEOUT (Linux 6.12)");
        return;
    }
    CHECK(receive_trickle(*context, 4) == "abcd");
    // One io_uring_enter submitted the four receives and slept until all four were done.
    // Waking at the first completion, as without batch_wait, takes about one enter each.
    CHECK(context->stats().submit_calls == 1);
    CHECK(context->stats().completions == 4);
}

TEST_CASE("batch_wait: fewer completions than a batch still wake the loop once the window "
          "has passed") {
    auto context = make_context(batching(20ms, 16));
    if (!context) {
        return;
    }
    if (!context->features().batch_wait) {
        WARN("SKIPPED: this kernel lacks IORING_FEAT_MIN_TIMEOUT (Linux 6.12)");
        return;
    }
    // 2 of a batch of 16: run() returns (after the 20 ms window) instead of sleeping on.
    CHECK(receive_trickle(*context, 2) == "ab");
}

TEST_CASE("batch_wait: a timer that fires ends the wait at once, batch or not") {
    // The kernel wakes a waiter for every IORING_OP_TIMEOUT completion, so sleeps and
    // with_timeout are never held back by a batch window.
    auto context = make_context(batching(2s, 16));
    if (!context) {
        return;
    }
    std::vector<std::error_code> results;
    context->spawn(sleep_then_note(*context, 1ms, results));
    const auto start = std::chrono::steady_clock::now();
    context->run();
    CHECK(results == std::vector<std::error_code>(1));
    CHECK(std::chrono::steady_clock::now() - start < 1s); // not the 2 s window
}

TEST_CASE("batch_wait is off by default, and a batch below 2 wakes at the first completion") {
    auto plain = make_context();
    if (!plain) {
        return;
    }
    CHECK_FALSE(plain->features().batch_wait);
    // 20 ms apart, so that even a loop thread descheduled for a while sees them separately.
    CHECK(receive_trickle(*plain, 4, 20ms) == "abcd");
    CHECK(plain->stats().submit_calls >= 2); // each receive woke the loop, or most did

    auto single = make_context(batching(2s, 1));
    REQUIRE(single);
    const auto start = std::chrono::steady_clock::now();
    CHECK(receive_trickle(*single, 4, 20ms) == "abcd");
    CHECK(single->stats().submit_calls >= 2);
    CHECK(std::chrono::steady_clock::now() - start < 1s); // never the 2 s window
}

TEST_CASE("batch_wait: set_batch_wait_events changes the batch while the loop runs") {
    auto context = make_context(batching(2s, 16));
    if (!context) {
        return;
    }
    if (!context->features().batch_wait) {
        WARN("SKIPPED: this kernel lacks IORING_FEAT_MIN_TIMEOUT (Linux 6.12)");
        return;
    }
    context->set_batch_wait_events(4); // as a server with four live connections does
    const auto start = std::chrono::steady_clock::now();
    CHECK(receive_trickle(*context, 4) == "abcd");
    CHECK(context->stats().submit_calls == 1);            // one batch of four
    CHECK(std::chrono::steady_clock::now() - start < 1s); // filled, not the 2 s window
}

TEST_CASE("batch_wait: a with_timeout's linked timeout waits for the window, as documented") {
    // Unlike IORING_OP_TIMEOUT, an expired IORING_OP_LINK_TIMEOUT does not wake a waiter by
    // itself (io_context_options::batch_wait says so): the recv it cancels completes into
    // a batch that cannot fill, so the loop sleeps until the window ends.
    auto context = make_context(batching(300ms, 16));
    if (!context) {
        return;
    }
    if (!context->features().batch_wait) {
        WARN("SKIPPED: this kernel lacks IORING_FEAT_MIN_TIMEOUT (Linux 6.12)");
        return;
    }
    auto pair = ucoro_test::make_stream_pair(*context);
    std::error_code error;
    context->spawn([](ucoro::net::socket& socket, std::error_code& out) -> task<void> {
        std::array<std::byte, 8> buffer{};
        auto [e, n] = co_await ucoro::with_timeout(socket.recv(buffer), 1ms);
        out = e;
    }(pair.ours, error));
    const auto start = std::chrono::steady_clock::now();
    context->run();
    CHECK(error == std::errc::timed_out);
    CHECK(std::chrono::steady_clock::now() - start >= 250ms);
}

} // namespace
