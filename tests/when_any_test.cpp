// when_any: the first task to finish wins; the losers, however deep in their await chains,
// see operation_canceled, unwind, and have finished (their operations out of the ring) before
// when_any returns; the winner's exception reaches the awaiter.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <variant>

#include "support/counting.hpp"
#include "support/stream_pair.hpp"
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

/// A recv on a peer that never speaks: only a cancel ends it.
task<int> silent_recv(ucoro::net::socket& sock, loser& outcome) {
    std::array<std::byte, 256> buffer{}; // in this frame: the kernel writes here while armed
    auto [error, n] = co_await sock.recv(buffer);
    outcome.error = error;
    ++outcome.finished;
    co_return static_cast<int>(n);
}

task<void> long_sleep(io_context& context, loser& outcome) {
    outcome.error = co_await ucoro::sleep_for(context, 1h);
    ++outcome.finished;
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

TEST_CASE("when_any returns the first to finish; the losers are cancelled and done first") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    loser recv_loser;
    loser sleep_loser;
    auto result =
        context->block_on(when_any(silent_recv(pair.ours, recv_loser), value_next_turn(*context, 7),
                                   [](io_context& c, loser& l) -> task<int> {
                                       co_await long_sleep(c, l);
                                       co_return -1;
                                   }(*context, sleep_loser)));
    CHECK(result.index == 1);
    CHECK(std::get<1>(result.value) == 7);
    CHECK(recv_loser.finished == 1);
    CHECK(recv_loser.error == std::errc::operation_canceled);
    CHECK(sleep_loser.finished == 1);
    CHECK(sleep_loser.error == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
    CHECK(context->block_on(fresh_recv_gets(pair.ours, pair.peer.get(), 100)) == 100);
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

TEST_CASE("a loser ten awaits deep in a recv is cancelled and unwinds normally") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    loser outcome;
    ucoro_test::lifetime_counts counts;
    int unwound = 0;
    auto result = context->block_on(
        when_any(deep_recv(pair.ours, outcome, 9, counts, unwound), value_next_turn(*context, 3)));
    CHECK(result.index == 1);
    CHECK(outcome.error == std::errc::operation_canceled);
    CHECK(unwound == 10);
    CHECK(counts.constructed == 10);
    CHECK(counts.alive() == 0);
    CHECK(context->in_flight() == 0);
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

TEST_CASE("the winner's exception reaches the awaiter, after the losers are done") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    loser outcome;
    std::string caught;
    context->block_on(expect_winner_exception(*context, pair.ours, outcome, caught));
    CHECK(caught == "winner failed");
    CHECK(outcome.finished == 1);
    CHECK(outcome.error == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("a winner that never suspends cancels the losers as they start") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    loser outcome;
    auto result = context->block_on(when_any(value_at_once(5), silent_recv(pair.ours, outcome)));
    CHECK(result.index == 0);
    CHECK(std::get<0>(result.value) == 5);
    CHECK(outcome.finished == 1);
    CHECK(outcome.error == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}

task<int> timed_silent_recv(ucoro::net::socket& sock, loser& outcome) {
    std::array<std::byte, 16> buffer{};
    auto [error, n] = co_await ucoro::with_timeout(sock.recv(buffer), 1h);
    outcome.error = error;
    ++outcome.finished;
    co_return static_cast<int>(n);
}

TEST_CASE("a loser in a timed recv reports operation_canceled, not timed_out") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    loser outcome;
    auto result = context->block_on(
        when_any(timed_silent_recv(pair.ours, outcome), value_next_turn(*context, 1)));
    CHECK(result.index == 1);
    CHECK(outcome.finished == 1);
    CHECK(outcome.error == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("cancelling a when_all reaches every one of its children") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    loser recv_loser;
    loser sleep_loser;
    auto result =
        context->block_on(when_any(ucoro::when_all(silent_recv(pair.ours, recv_loser),
                                                   [](io_context& c, loser& l) -> task<void> {
                                                       co_await long_sleep(c, l);
                                                   }(*context, sleep_loser)),
                                   value_next_turn(*context, 9)));
    CHECK(result.index == 1);
    CHECK(std::get<1>(result.value) == 9);
    CHECK(recv_loser.error == std::errc::operation_canceled);
    CHECK(sleep_loser.error == std::errc::operation_canceled);
    CHECK(recv_loser.finished + sleep_loser.finished == 2);
    CHECK(context->in_flight() == 0);
}

} // namespace
