// when_any: the first task to finish wins; the losers, however deep in their await chains,
// see operation_canceled, unwind, and have finished (their operations out of the ring) before
// when_any returns; the winner's exception reaches the awaiter.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <variant>

#include "support/counting.hpp"
#include "support/ring_support.hpp"
#include "support/stream_pair.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/timeout.hpp"
#include "ucoro/when_all.hpp"
#include "ucoro/when_any.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro::when_any;
using ucoro_test::make_context;
using ucoro_test::make_stream_pair;
using ucoro_test::next_turn;

/// How a loser ended.
struct loser {
    std::error_code error;
    int finished = 0;
};

task<int> value_next_turn(io_context& context, int value) {
    co_await next_turn{context};
    co_return value;
}

task<int> value_at_once(int value) {
    co_return value;
}

/// A recv on a peer that never speaks (with an hour's timeout, if `timed`): only a cancel
/// ends it.
task<int> silent_recv(ucoro::net::socket& sock, loser& outcome, bool timed = false) {
    std::array<std::byte, 256> buffer{}; // in this frame: the kernel writes here while armed
    auto [error, n] =
        timed ? co_await ucoro::with_timeout(sock.recv(buffer), 1h) : co_await sock.recv(buffer);
    outcome.error = error;
    ++outcome.finished;
    co_return static_cast<int>(n);
}

task<int> long_sleep(io_context& context, loser& outcome) {
    outcome.error = co_await ucoro::sleep_for(context, 1h);
    ++outcome.finished;
    co_return -1;
}

/// A loser must have unwound once, through operation_canceled, and left nothing in the ring.
void check_cancelled(const loser& outcome, const io_context& context) {
    CHECK(outcome.finished == 1);
    CHECK(outcome.error == std::errc::operation_canceled);
    CHECK(context.in_flight() == 0);
}

/// After when_any returned, the cancelled recv must be out of the ring: bytes the peer sends
/// now all reach a fresh recv (a recv still armed would take them).
task<std::size_t> fresh_recv_gets(ucoro::net::socket& sock, int peer, std::size_t size) {
    std::vector<std::byte> sent(size, std::byte{0x5a});
    ucoro_test::write_all(peer, sent);
    std::vector<std::byte> buffer(size * 2);
    auto [error, n] = co_await sock.recv(buffer);
    REQUIRE_FALSE(error);
    co_return n;
}

/// Each test's context and a peer that says nothing unless the test writes to it.
struct silent_peer {
    std::unique_ptr<ucoro_test::test_context> context = make_context();
    std::optional<ucoro_test::stream_pair> pair;

    silent_peer() {
        if (context) {
            pair.emplace(make_stream_pair(*context));
        }
    }
};

TEST_CASE_METHOD(silent_peer,
                 "when_any returns the first to finish; the losers are cancelled and done first") {
    if (!context) {
        return;
    }
    loser recv_loser;
    loser sleep_loser;
    auto result = context->block_on(when_any(silent_recv(pair->ours, recv_loser),
                                             value_next_turn(*context, 7),
                                             long_sleep(*context, sleep_loser)));
    CHECK(result.index == 1);
    CHECK(std::get<1>(result.value) == 7);
    check_cancelled(recv_loser, *context);
    check_cancelled(sleep_loser, *context);
    CHECK(context->block_on(fresh_recv_gets(pair->ours, pair->peer.get(), 100)) == 100);
}

/// Ten tasks deep, each holding a counted local, the last in a recv.
task<int> deep_recv(ucoro::net::socket& sock, loser& outcome, int depth,
                    ucoro_test::lifetime_counts& counts, int& unwound) {
    ucoro_test::counted local(counts);
    int result = depth == 0 ? co_await silent_recv(sock, outcome)
                            : co_await deep_recv(sock, outcome, depth - 1, counts, unwound);
    ++unwound; // reached only by normal unwinding, not by destroying the frame
    co_return result;
}

TEST_CASE_METHOD(silent_peer,
                 "a loser ten awaits deep in a recv is cancelled and unwinds normally") {
    if (!context) {
        return;
    }
    loser outcome;
    ucoro_test::lifetime_counts counts;
    int unwound = 0;
    auto result = context->block_on(
        when_any(deep_recv(pair->ours, outcome, 9, counts, unwound), value_next_turn(*context, 3)));
    CHECK(result.index == 1);
    check_cancelled(outcome, *context);
    CHECK(unwound == 10);
    CHECK(counts.constructed == 10);
    CHECK(counts.alive() == 0);
}

task<int> throw_next_turn(io_context& context) {
    co_await next_turn{context};
    throw std::runtime_error("winner failed");
}

task<void> expect_winner_exception(io_context& context, ucoro::net::socket& sock, loser& outcome,
                                   std::string& caught) {
    try {
        (void)co_await when_any(throw_next_turn(context), silent_recv(sock, outcome));
    } catch (const std::runtime_error& e) {
        caught = e.what();
    }
}

TEST_CASE_METHOD(silent_peer,
                 "the winner's exception reaches the awaiter, after the losers are done") {
    if (!context) {
        return;
    }
    loser outcome;
    std::string caught;
    context->block_on(expect_winner_exception(*context, pair->ours, outcome, caught));
    CHECK(caught == "winner failed");
    check_cancelled(outcome, *context);
}

TEST_CASE_METHOD(silent_peer, "a winner that never suspends cancels the losers as they start") {
    if (!context) {
        return;
    }
    loser outcome;
    auto result = context->block_on(when_any(value_at_once(5), silent_recv(pair->ours, outcome)));
    CHECK(result.index == 0);
    CHECK(std::get<0>(result.value) == 5);
    check_cancelled(outcome, *context);
}

TEST_CASE_METHOD(silent_peer, "a loser in a timed recv reports operation_canceled, not timed_out") {
    if (!context) {
        return;
    }
    loser outcome;
    auto result = context->block_on(
        when_any(silent_recv(pair->ours, outcome, /*timed=*/true), value_next_turn(*context, 1)));
    CHECK(result.index == 1);
    check_cancelled(outcome, *context);
}

TEST_CASE_METHOD(silent_peer, "cancelling a when_all reaches every one of its children") {
    if (!context) {
        return;
    }
    loser recv_loser;
    loser sleep_loser;
    auto result = context->block_on(when_any(
        ucoro::when_all(silent_recv(pair->ours, recv_loser), long_sleep(*context, sleep_loser)),
        value_next_turn(*context, 9)));
    CHECK(result.index == 1);
    CHECK(std::get<1>(result.value) == 9);
    check_cancelled(recv_loser, *context);
    check_cancelled(sleep_loser, *context);
}

/// Waits in a recv_stream on a silent peer: only a cancel ends it.
task<int> silent_stream(ucoro::net::socket& sock, ucoro::buffer_ring& ring, loser& outcome) {
    auto stream = sock.recv_multishot(ring);
    auto [error, buffer] = co_await stream.next();
    outcome.error = error;
    ++outcome.finished;
    co_return static_cast<int>(buffer.size());
}

TEST_CASE("a loser waiting in recv_stream::next() is cancelled and when_any returns") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    ucoro::buffer_ring ring(*context, {});
    auto pair = make_stream_pair(*context);
    loser outcome;
    auto result = context->block_on(
        when_any(silent_stream(pair.ours, ring, outcome), value_next_turn(*context, 4)));
    CHECK(result.index == 1);
    CHECK(outcome.finished == 1);
    CHECK(outcome.error == std::errc::operation_canceled);
    // The cancel of a wait is partial: the loser's stream, dropped as the loser unwound,
    // is what ended the request, and the context finishes it on its own.
    context->run();
    CHECK(context->in_flight() == 0);
    CHECK(ring.available() == ring.count());
}

} // namespace
