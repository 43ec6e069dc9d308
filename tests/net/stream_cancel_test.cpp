// Cancelling a wait on a multishot stream is partial: the waiter sees operation_canceled, the
// kernel request stays armed, and whatever it delivers stays queued for the next next(). The
// races of when_any, two waiters, and a moved-from stream.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "support/counting.hpp"
#include "support/loopback.hpp"
#include "support/ring_support.hpp"
#include "support/stream_pair.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/accept_stream.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"
#include "ucoro/when_any.hpp"

namespace {

using ucoro::io_context;
using ucoro::task;
using ucoro::when_any;
using ucoro::detail::multishot_state;
using ucoro_test::make_stream_pair;
using ucoro_test::next_turn;

struct wait_outcome {
    std::error_code error;
    std::string bytes;
    bool resumed = false;
};

task<int> wait_in_stream(ucoro::net::recv_stream& stream, wait_outcome& out) {
    auto [error, buffer] = co_await stream.next();
    out.resumed = true;
    out.error = error;
    out.bytes.assign(reinterpret_cast<const char*>(buffer.bytes().data()), buffer.size());
    co_return 0;
}

task<int> recv_one(ucoro::net::socket& sock) {
    std::array<std::byte, 16> buffer{};
    auto [error, n] = co_await sock.recv(buffer);
    co_return error ? -1 : static_cast<int>(n);
}

// Both peers write before the loop next enters the kernel, the winner's first: its CQE and
// the loser's data CQE are reaped in one batch, the winner's dispatched first. Before the
// cancel was partial, the loser was resumed with the data after when_any had decided, and
// when_any threw it away; then the request's own -ECANCELED waited in the queue for the
// next next() though nobody had cancelled anything any more.
task<void> write_both(io_context& context, int winner_peer, int loser_peer) {
    co_await next_turn{context};
    co_await next_turn{context}; // both waits are in the kernel
    ucoro_test::write_all(winner_peer, ucoro_test::to_bytes("W"));
    ucoro_test::write_all(loser_peer, ucoro_test::to_bytes("hello"));
}

TEST_CASE("a when_any loser in recv_stream::next() loses no byte when the winner completes in "
          "the same batch") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    ucoro::buffer_ring ring(*context, {.count = 8, .buffer_size = 64});
    auto loser_pair = make_stream_pair(*context);
    auto winner_pair = make_stream_pair(*context);
    auto stream = loser_pair.ours.recv_multishot(ring);
    wait_outcome loser;
    context->spawn(write_both(*context, winner_pair.peer.get(), loser_pair.peer.get()));
    auto result =
        context->block_on(when_any(recv_one(winner_pair.ours), wait_in_stream(stream, loser)));
    REQUIRE(result.index == 0);
    CHECK(std::get<0>(result.value) == 1);
    REQUIRE(loser.resumed);
    CHECK(loser.error == std::errc::operation_canceled);
    CHECK(loser.bytes.empty());
    // The request is still armed and the bytes wait in the stream, in order, byte for byte.
    CHECK(stream.state() == multishot_state::armed);
    wait_outcome next;
    context->block_on(wait_in_stream(stream, next));
    CHECK_FALSE(next.error);
    CHECK(next.bytes == "hello");
    // No -ECANCELED left behind: the next wait gets the next bytes, or end of stream.
    ucoro_test::write_all(loser_pair.peer.get(), ucoro_test::to_bytes("again"));
    wait_outcome after;
    context->block_on(wait_in_stream(stream, after));
    CHECK_FALSE(after.error);
    CHECK(after.bytes == "again");
    loser_pair.peer.reset();
    wait_outcome end;
    context->block_on(wait_in_stream(stream, end));
    CHECK_FALSE(end.error);
    CHECK(end.bytes.empty());
    CHECK(context->in_flight() == 0);
}

TEST_CASE("a cancelled wait on a recv_stream leaves the request armed and the next next() gets "
          "what arrived meanwhile") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    ucoro::buffer_ring ring(*context, {.count = 8, .buffer_size = 64});
    auto pair = make_stream_pair(*context);
    auto stream = pair.ours.recv_multishot(ring);
    wait_outcome first;
    auto handle = context->spawn([](ucoro::net::recv_stream& s, wait_outcome& out) -> task<void> {
        co_await wait_in_stream(s, out);
    }(stream, first));
    context->block_on([](io_context& c, ucoro::task_handle& h) -> task<void> {
        co_await next_turn{c};
        co_await next_turn{c};
        h.cancel();
        co_await h.join(); // the waiter resumes on the next turn, with operation_canceled
    }(*context, handle));
    CHECK(first.resumed);
    CHECK(first.error == std::errc::operation_canceled);
    CHECK(stream.state() == multishot_state::armed);
    ucoro_test::write_all(pair.peer.get(), ucoro_test::to_bytes("later"));
    wait_outcome second;
    context->block_on(wait_in_stream(stream, second));
    CHECK_FALSE(second.error);
    CHECK(second.bytes == "later");
}

task<void> write_loser_then_winner(io_context& context, int winner_peer, int loser_peer,
                                   std::vector<std::byte> loser_bytes) {
    co_await next_turn{context};
    co_await next_turn{context};
    ucoro_test::write_all(loser_peer, loser_bytes);
    ucoro_test::write_all(winner_peer, ucoro_test::to_bytes("W"));
}

TEST_CASE("with bundled receives, a when_any loser's bundle stays queued whichever completes "
          "first") {
    ucoro::io_context_options options;
    options.recv_bundle = true;
    auto context = ucoro_test::make_ring_context(options);
    if (!context || !ucoro_test::recv_bundle_or_skip(*context)) {
        return;
    }
    ucoro::buffer_ring ring(*context, {.count = 8, .buffer_size = 64});
    auto loser_pair = make_stream_pair(*context);
    auto winner_pair = make_stream_pair(*context);
    auto stream = loser_pair.ours.recv_multishot(ring);
    const auto sent = ucoro_test::make_pattern(256); // one bundle of 4 buffers
    wait_outcome loser;
    context->spawn(
        write_loser_then_winner(*context, winner_pair.peer.get(), loser_pair.peer.get(), sent));
    auto result =
        context->block_on(when_any(recv_one(winner_pair.ours), wait_in_stream(stream, loser)));
    // Whoever won, every byte is either the winner's value (the loser won) or still queued.
    std::string got = result.index == 1 ? loser.bytes : std::string();
    while (auto next = stream.try_next()) {
        REQUIRE_FALSE(next->error);
        got.append(reinterpret_cast<const char*>(next->value.bytes().data()), next->value.size());
    }
    CHECK(got == std::string(reinterpret_cast<const char*>(sent.data()), sent.size()));
    if (result.index == 0) {
        CHECK(loser.error == std::errc::operation_canceled);
    }
}

task<void> connect_and_write(io_context& context, ucoro::net::address to, int winner_peer,
                             ucoro_test::unique_fd& client) {
    co_await next_turn{context};
    co_await next_turn{context}; // the accept and the winner's recv are in the kernel
    ucoro_test::write_all(winner_peer, ucoro_test::to_bytes("W"));
    client = ucoro_test::unique_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(::connect(client.get(), to.data(), to.size()) == 0); // completes in the backlog
}

struct accept_outcome {
    std::error_code error;
    bool resumed = false;
    bool got_socket = false;
};

task<int> wait_for_connection(ucoro::net::accept_stream& connections, accept_outcome& out) {
    auto [error, connection] = co_await connections.next();
    out.resumed = true;
    out.error = error;
    out.got_socket = connection.is_open();
    co_return 0;
}

TEST_CASE("a when_any loser in accept_stream::next() leaves the connection queued, not closed") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    ucoro::net::listener server(*context, ucoro::net::address::ipv4_loopback(0));
    auto connections = server.accept_multishot();
    auto winner_pair = make_stream_pair(*context);
    ucoro_test::unique_fd client;
    accept_outcome loser;
    context->spawn(
        connect_and_write(*context, server.local_address(), winner_pair.peer.get(), client));
    auto result = context->block_on(
        when_any(recv_one(winner_pair.ours), wait_for_connection(connections, loser)));
    REQUIRE(result.index == 0);
    REQUIRE(loser.resumed);
    CHECK(loser.error == std::errc::operation_canceled);
    CHECK_FALSE(loser.got_socket);
    // The connection is handed out by the next next(), alive: it echoes a byte to the client.
    auto accepted = context->block_on([](ucoro::net::accept_stream& c) -> task<ucoro::net::socket> {
        auto [error, connection] = co_await c.next();
        REQUIRE_FALSE(error);
        co_return std::move(connection);
    }(connections));
    REQUIRE(accepted.is_open());
    ucoro_test::write_all(client.get(), ucoro_test::to_bytes("x"));
    char byte = 0;
    REQUIRE(::recv(accepted.native_handle(), &byte, 1, 0) == 1);
    CHECK(byte == 'x');
}

TEST_CASE("two coroutines waiting in next() on one stream is a checked error") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    ucoro::buffer_ring ring(*context, {.count = 8, .buffer_size = 64});
    auto pair = make_stream_pair(*context);
    auto stream = pair.ours.recv_multishot(ring);
    wait_outcome first;
    context->spawn([](ucoro::net::recv_stream& s, wait_outcome& out) -> task<void> {
        co_await wait_in_stream(s, out);
    }(stream, first));
    bool threw = false;
    context->block_on([](io_context& c, ucoro::net::recv_stream& s, bool& caught) -> task<void> {
        co_await next_turn{c}; // the first waits now
        try {
            wait_outcome second;
            co_await wait_in_stream(s, second);
        } catch (const std::logic_error&) {
            caught = true;
        }
    }(*context, stream, threw));
    CHECK(threw);
    // The first waiter was not displaced: it gets the bytes.
    ucoro_test::write_all(pair.peer.get(), ucoro_test::to_bytes("first"));
    context->block_on([](io_context& c, const wait_outcome& out) -> task<void> {
        for (int i = 0; i < 1000 && !out.resumed; ++i) { // the request stays armed: no run()
            co_await next_turn{c};
        }
    }(*context, first));
    CHECK(first.resumed);
    CHECK_FALSE(first.error);
    CHECK(first.bytes == "first");
}

TEST_CASE("a moved-from stream is safe to call and to destroy") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    ucoro::buffer_ring ring(*context, {.count = 8, .buffer_size = 64});
    auto pair = make_stream_pair(*context);
    auto stream = pair.ours.recv_multishot(ring);
    auto moved = std::move(stream);
    CHECK(stream.ready() == 0);                 // NOLINT(bugprone-use-after-move): on purpose
    CHECK_FALSE(stream.try_next().has_value()); // NOLINT(bugprone-use-after-move)
    wait_outcome out;
    context->block_on(wait_in_stream(stream, out)); // NOLINT(bugprone-use-after-move)
    CHECK(out.error == std::errc::bad_file_descriptor);
    ucoro::net::listener server(*context, ucoro::net::address::ipv4_loopback(0));
    auto connections = server.accept_multishot();
    auto moved_connections = std::move(connections);
    accept_outcome accepted;
    context->block_on(wait_for_connection(connections, accepted)); // NOLINT
    CHECK(accepted.error == std::errc::bad_file_descriptor);
    ucoro_test::write_all(pair.peer.get(), ucoro_test::to_bytes("moved"));
    wait_outcome moved_out;
    context->block_on(wait_in_stream(moved, moved_out));
    CHECK(moved_out.bytes == "moved");
}

} // namespace
