// The multishot state machine (detail/multishot.hpp): its transition table, and each
// transition reached through a receive stream, as a program would reach it. The ring's
// fairness rule (buffer_ring.hpp) is checked here at its smallest: a share of 2, a ring of 2.
#include <catch2/catch.hpp>

#include <cstddef>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "support/counting.hpp"
#include "support/loopback.hpp"
#include "support/ring_support.hpp"
#include "support/stream_pair.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/detail/multishot.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

namespace {

using ucoro::buffer_ring;
using ucoro::io_context;
using ucoro::task;
using ucoro::detail::multishot_state;
using ucoro_test::make_stream_pair;
using ucoro_test::next_turn;

constexpr multishot_state all_states[] = {
    multishot_state::idle, multishot_state::armed,    multishot_state::pausing,
    multishot_state::held, multishot_state::orphaned, multishot_state::lingering,
};

TEST_CASE("the multishot transition table allows exactly the transitions its comment lists") {
    using s = multishot_state;
    // The table in detail/multishot.hpp, written out again: a change to one must be a
    // change to the other.
    const std::set<std::pair<s, s>> listed = {
        {s::idle, s::armed},     {s::idle, s::held},          {s::held, s::idle},
        {s::armed, s::pausing},  {s::armed, s::idle},         {s::pausing, s::idle},
        {s::armed, s::orphaned}, {s::pausing, s::orphaned},   {s::idle, s::lingering},
        {s::held, s::lingering}, {s::orphaned, s::lingering},
    };
    for (const auto from : all_states) {
        for (const auto to : all_states) {
            INFO(ucoro::detail::to_string(from) << " -> " << ucoro::detail::to_string(to));
            CHECK(ucoro::detail::multishot_transition_allowed(from, to) ==
                  (listed.count({from, to}) == 1));
        }
    }
}

struct taken {
    std::error_code error;
    buffer_ring::buffer buffer;
};

task<taken> take(ucoro::net::recv_stream& stream) {
    auto [error, buffer] = co_await stream.next();
    co_return taken{error, std::move(buffer)};
}

std::string text_of(const buffer_ring::buffer& buffer) {
    return {reinterpret_cast<const char*>(buffer.bytes().data()), buffer.size()};
}

/// Runs the loop until `done()` or a bounded number of turns.
template <typename Done>
void turn_until(io_context& context, Done done) {
    context.block_on([](io_context& c, Done d) -> task<void> {
        for (int i = 0; i < 1000 && !d(); ++i) {
            co_await next_turn{c};
        }
    }(context, std::move(done)));
}

TEST_CASE("a receive stream goes idle -> armed -> idle, and held <-> idle at its share") {
    ucoro::io_context_options options;
    options.recv_limit = GENERATE(true, false); // the kernel's byte limit, or the cancel
    CAPTURE(options.recv_limit);
    auto context = ucoro_test::make_ring_context(options);
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 8, .buffer_size = 4, .stream_queue_limit = 2});
    auto pair = make_stream_pair(*context);
    auto stream = pair.ours.recv_multishot(ring);
    CHECK(stream.state() == multishot_state::idle); // nothing submitted before next()

    // idle -> armed: the first next() submits; a buffer's worth arrives; still armed.
    ucoro_test::write_all(pair.peer.get(), ucoro_test::to_bytes("abcd"));
    auto first = context->block_on(take(stream));
    CHECK(text_of(first.buffer) == "abcd");
    CHECK(stream.state() == multishot_state::armed);

    // At its share (2: the buffer we hold and one more), the stream stops receiving and
    // waits for its own buffers: held. With the byte limit the kernel ends the request
    // exactly there; without it the stream cancels it (armed -> pausing -> idle -> held),
    // and what the kernel took before the cancel landed is counted as held too.
    ucoro_test::write_all(pair.peer.get(), ucoro_test::to_bytes("efghijklmnopqrst"));
    turn_until(*context, [&] { return stream.state() == multishot_state::held; });
    CHECK(stream.state() == multishot_state::held);
    if (options.recv_limit) {
        CHECK(stream.ready() == 1);
        CHECK(ring.available() == ring.count() - 2); // the share, nothing beyond it
    } else {
        CHECK(ring.share_pauses() >= 1);
        CHECK(ring.available() == ring.count() - 1 - stream.ready()); // all of it counted
    }

    // held -> idle: a buffer comes back (after the cancel's overshoot, only once the stream
    // is back under its share); the next next() arms again, not the give-back itself.
    first.buffer.reset();
    if (options.recv_limit) {
        CHECK(stream.state() == multishot_state::idle);
    }
    std::string received;
    while (received.size() < 16) {
        auto next = context->block_on(take(stream));
        REQUIRE_FALSE(next.error);
        received += text_of(next.buffer);
    }
    CHECK(received == "efghijklmnopqrst"); // byte for byte, in order, across the pauses

    // armed -> idle: end of stream ends the request.
    pair.peer.reset();
    auto end = context->block_on(take(stream));
    CHECK_FALSE(end.error);
    CHECK(end.buffer.empty());
    CHECK(stream.state() == multishot_state::idle);
    CHECK(context->in_flight() == 0);
    CHECK(ring.available() == ring.count());
}

TEST_CASE("a stream dropped while armed is orphaned, then freed by its final completion") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 8, .buffer_size = 64});
    auto pair = make_stream_pair(*context);
    {
        auto stream = pair.ours.recv_multishot(ring);
        ucoro_test::write_all(pair.peer.get(), ucoro_test::to_bytes("x"));
        auto got = context->block_on(take(stream));
        CHECK(stream.state() == multishot_state::armed);
    } // armed -> orphaned: the context cancels it
    CHECK(context->in_flight() == 1);
    context->run(); // orphaned -> freed (ASan would report a leak or a use after free)
    CHECK(context->in_flight() == 0);
    CHECK(ring.available() == ring.count());
}

TEST_CASE("a stream dropped with a buffer still lent out lingers until the buffer is back") {
    const bool armed_when_dropped = GENERATE(true, false);
    CAPTURE(armed_when_dropped);
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 8, .buffer_size = 64});
    auto pair = make_stream_pair(*context);
    buffer_ring::buffer kept;
    {
        auto stream = pair.ours.recv_multishot(ring);
        ucoro_test::write_all(pair.peer.get(), ucoro_test::to_bytes("kept"));
        kept = context->block_on(take(stream)).buffer;
        if (!armed_when_dropped) {
            pair.peer.reset(); // end of stream: the request ends, the stream is idle
            auto end = context->block_on(take(stream));
            CHECK(end.buffer.empty());
            CHECK(stream.state() == multishot_state::idle);
        }
    } // idle -> lingering, or armed -> orphaned -> (final CQE) -> lingering
    context->run();
    CHECK(context->in_flight() == 0);
    // The buffer is still the stream's loan, its bytes intact, its memory alive.
    CHECK(text_of(kept) == "kept");
    CHECK(ring.available() == ring.count() - 1);
    kept.reset(); // lingering -> freed
    CHECK(ring.available() == ring.count());
}

TEST_CASE("a stream that holds nothing receives into a buffer of its own when others hold the "
          "whole ring") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 2, .buffer_size = 16, .stream_queue_limit = 2});
    auto greedy = make_stream_pair(*context);
    auto fair = make_stream_pair(*context);
    auto greedy_stream = greedy.ours.recv_multishot(ring);
    auto fair_stream = fair.ours.recv_multishot(ring);

    // The greedy stream's coroutine takes two buffers and keeps them: the ring is empty.
    ucoro_test::write_all(greedy.peer.get(), std::vector<std::byte>(16, std::byte{'g'}));
    auto g1 = context->block_on(take(greedy_stream));
    ucoro_test::write_all(greedy.peer.get(), std::vector<std::byte>(16, std::byte{'g'}));
    auto g2 = context->block_on(take(greedy_stream));
    REQUIRE(g1.buffer.size() + g2.buffer.size() == 32);
    CHECK(ring.available() == 0);

    // The other stream holds nothing: it is not made to wait for the greedy one.
    const auto pattern = ucoro_test::make_pattern(40);
    ucoro_test::write_all(fair.peer.get(), pattern);
    std::vector<std::byte> received;
    while (received.size() < pattern.size()) {
        auto next = context->block_on(take(fair_stream));
        REQUIRE_FALSE(next.error);
        received.insert(received.end(), next.buffer.bytes().begin(), next.buffer.bytes().end());
    }
    UCORO_CHECK_SAME_BYTES(received, pattern);
    CHECK(ring.private_receives() >= 3); // 40 bytes, 16 at a time, none from the ring
    CHECK(ring.available() == 0);

    // A stream that holds buffers and finds the ring empty does not wait for the others
    // either: within its share it receives into buffers of its own as well. The greedy one
    // gives one back, the other takes that buffer and keeps it: the ring is empty again,
    // and the greedy stream (holding one of its share of 2) gets more.
    g2.buffer.reset();
    ucoro_test::write_all(fair.peer.get(), ucoro_test::to_bytes("f"));
    auto kept = context->block_on(take(fair_stream));
    CHECK(text_of(kept.buffer) == "f");
    CHECK(ring.available() == 0);
    const auto before = ring.private_receives();
    ucoro_test::write_all(greedy.peer.get(), ucoro_test::to_bytes("more"));
    auto more = context->block_on(take(greedy_stream));
    CHECK(text_of(more.buffer) == "more");
    CHECK(ring.private_receives() == before + 1);
}

TEST_CASE("a coroutine that holds its whole share and waits for more is told at once, not "
          "left waiting") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    // A parser that keeps every buffer of a message until it has all of it: 192 bytes, in
    // buffers of 64, with a share of 2. Waiting for the third buffer could never end (the
    // share is in the coroutine's own hands), so the wait ends with no_buffer_space.
    buffer_ring ring(*context, {.count = 8, .buffer_size = 64, .stream_queue_limit = 2});
    auto pair = make_stream_pair(*context);
    auto stream = pair.ours.recv_multishot(ring);
    ucoro_test::write_all(pair.peer.get(), std::vector<std::byte>(192, std::byte{'x'}));
    std::vector<buffer_ring::buffer> message;
    std::size_t bytes = 0;
    std::error_code error;
    while (bytes < 192 && !error) {
        auto next = context->block_on(take(stream));
        error = next.error;
        bytes += next.buffer.size();
        if (!next.buffer.empty()) {
            message.push_back(std::move(next.buffer));
        }
    }
    CHECK(error == std::errc::no_buffer_space);
    CHECK(bytes == 128);
    CHECK(stream.state() == multishot_state::held);
    // Giving buffers back (or copying them out) lets the stream go on: the rest arrives.
    message.clear();
    auto rest = context->block_on(take(stream));
    CHECK_FALSE(rest.error);
    CHECK(rest.buffer.size() == 64);
}

} // namespace
