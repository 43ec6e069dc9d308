// socket::close, listener::close and the socket destructor: the descriptor is closed exactly
// once, and nothing stays armed on it.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <utility>

#include "support/counting.hpp"
#include "support/loopback.hpp"
#include "support/ring_support.hpp"
#include "support/stream_pair.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/poll.hpp"
#include "ucoro/task.hpp"
#include "ucoro/timeout.hpp"

using ucoro::io_context;
using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;

TEST_CASE("co_await close() closes the descriptor and the peer reads end of stream") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const int fd = pair.server.native_handle();
    REQUIRE_FALSE(ucoro_test::fd_is_closed(fd));

    const std::error_code close_error = context->block_on(
        [&]() -> task<std::error_code> { co_return co_await pair.server.close(); }());
    CHECK_FALSE(close_error);
    CHECK_FALSE(pair.server.is_open());
    CHECK(pair.server.native_handle() == -1);
    CHECK(ucoro_test::fd_is_closed(fd));

    const auto seen = context->block_on(ucoro_test::read_until_end(pair.client, 16, 16));
    CHECK_FALSE(seen.error);
    CHECK(seen.end_of_stream);
    CHECK(seen.bytes.empty());
}

TEST_CASE("closing a socket twice is harmless") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const int fd = pair.client.native_handle();

    context->block_on([&]() -> task<void> {
        const std::error_code first = co_await pair.client.close();
        CHECK_FALSE(first);
        const std::error_code second = co_await pair.client.close();
        CHECK_FALSE(second);
    }());
    CHECK(ucoro_test::fd_is_closed(fd));
    CHECK_FALSE(pair.client.is_open());
    // The second close completed without the ring: nothing was left in flight.
    CHECK(context->in_flight() == 0);
}

TEST_CASE("a closed socket never touches its old descriptor number again") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const int fd = pair.client.native_handle();

    const std::error_code close_error = context->block_on(
        [&]() -> task<std::error_code> { co_return co_await pair.client.close(); }());
    REQUIRE_FALSE(close_error);
    // The kernel hands out the lowest free number, so a new descriptor very likely reuses
    // the old one: a socket that closed it again (twice, or in its destructor) would close
    // this unrelated eventfd.
    ucoro_test::unique_fd unrelated(::eventfd(0, EFD_CLOEXEC));
    REQUIRE(unrelated.get() >= 0);
    if (unrelated.get() != fd) {
        WARN("SKIPPED: the new descriptor did not reuse number " << fd
                                                                 << ", so reuse cannot be tested");
        return;
    }
    context->block_on([&]() -> task<void> {
        const std::error_code again = co_await pair.client.close();
        CHECK_FALSE(again);
    }());
    { ucoro::net::socket gone = std::move(pair.client); } // and its destructor
    CHECK_FALSE(ucoro_test::fd_is_closed(unrelated.get()));
}

TEST_CASE("destroying an open socket closes its descriptor") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    int fd = -1;
    {
        ucoro::net::socket owner = std::move(pair.server);
        fd = owner.native_handle();
        CHECK_FALSE(pair.server.is_open()); // the moved-from socket gave it up
        REQUIRE_FALSE(ucoro_test::fd_is_closed(fd));
    }
    CHECK(ucoro_test::fd_is_closed(fd));

    // The peer sees an orderly end of stream, as with close().
    const auto seen = context->block_on(ucoro_test::read_until_end(pair.client, 16, 16));
    CHECK_FALSE(seen.error);
    CHECK(seen.end_of_stream);
}

TEST_CASE("move-assigning over an open socket closes the descriptor it held") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto first = context->block_on(ucoro_test::connect_pair(*context, server));
    auto second = context->block_on(ucoro_test::connect_pair(*context, server));
    const int overwritten = first.client.native_handle();
    const int kept = second.client.native_handle();

    first.client = std::move(second.client);
    CHECK(ucoro_test::fd_is_closed(overwritten));
    CHECK(first.client.native_handle() == kept);
    CHECK_FALSE(ucoro_test::fd_is_closed(kept));
    CHECK(first.client.peer_address() == server.local_address());
    CHECK_FALSE(second.client.is_open());
}

TEST_CASE("release() gives up the descriptor without closing it") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    int fd = -1;
    {
        ucoro::net::socket owner = std::move(pair.client);
        fd = owner.release();
        CHECK_FALSE(owner.is_open());
    }
    ucoro_test::unique_fd kept(fd); // now ours to close
    CHECK_FALSE(ucoro_test::fd_is_closed(fd));
}

TEST_CASE("a close that is never awaited still closes the descriptor") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const int fd = pair.client.native_handle();
    {
        // The socket hands its descriptor to the operation at once; before the fix an
        // operation dropped without co_await leaked it.
        [[maybe_unused]] auto forgotten = pair.client.close();
        CHECK_FALSE(pair.client.is_open());
    }
    CHECK(ucoro_test::fd_is_closed(fd));
    CHECK(context->in_flight() == 0);
}

namespace {

struct armed_recv {
    std::error_code error;
    std::size_t count = 0;
    bool resumed = false;
};

task<void> recv_forever(ucoro::net::socket& connection, armed_recv& out) {
    std::array<std::byte, 64> buffer{};
    auto [error, n] = co_await connection.recv(buffer);
    out.error = error;
    out.count = n;
    out.resumed = true;
}

task<void> poll_forever(io_context& context, int fd, armed_recv& out) {
    auto [error, events] = co_await ucoro::poll(context, fd, POLLIN);
    out.error = error;
    out.count = events;
    out.resumed = true;
}

task<void> recv_with_deadline(ucoro::net::socket& connection, armed_recv& out) {
    std::array<std::byte, 64> buffer{};
    auto [error, n] = co_await ucoro::with_timeout(connection.recv(buffer), std::chrono::hours(1));
    out.error = error;
    out.count = n;
    out.resumed = true;
}

task<void> stream_forever(ucoro::net::socket& connection, ucoro::buffer_ring& ring,
                          armed_recv& out) {
    auto stream = connection.recv_multishot(ring);
    auto [error, buffer] = co_await stream.next();
    out.error = error;
    out.count = buffer.size();
    out.resumed = true;
}

task<void> accept_forever(listener& server, armed_recv& out) {
    auto [error, connection] = co_await server.accept();
    out.error = error;
    out.resumed = true;
}

} // namespace

/// Closes through `close()` once `waiting`'s operation is in the kernel, then checks that
/// the close succeeded, the waiting operation was cancelled, and `fd` is gone.
template <typename Close>
void check_close_cancels(ucoro_test::test_context& context, const armed_recv& waiting, int fd,
                         Close close) {
    const std::error_code close_error = context.block_on([&]() -> task<std::error_code> {
        co_await ucoro_test::next_turn_of(context); // the waiting operation is armed now
        co_return co_await close();
    }());
    context.run(); // returns only once the waiting operation has completed
    CHECK_FALSE(close_error);
    CHECK(waiting.resumed);
    CHECK(waiting.error == std::errc::operation_canceled);
    CHECK(ucoro_test::fd_is_closed(fd));
    CHECK(context.in_flight() == 0);
}

TEST_CASE("co_await close() cancels a recv still armed on the socket") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    armed_recv waiting;
    context->spawn(recv_forever(pair.server, waiting)); // the client never sends
    check_close_cancels(*context, waiting, pair.server.native_handle(),
                        [&] { return pair.server.close(); });
}

TEST_CASE("co_await listener.close() cancels an accept still armed on it") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    armed_recv waiting;
    context->spawn(accept_forever(server, waiting)); // nobody connects
    check_close_cancels(*context, waiting, server.native_handle(), [&] { return server.close(); });
    CHECK(server.native_handle() == -1);
}

TEST_CASE("co_await close() cancels every operation armed on the socket, here a recv and a poll") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    armed_recv receiving;
    armed_recv polling;
    context->spawn(recv_forever(pair.server, receiving));
    context->spawn(poll_forever(*context, pair.server.native_handle(), polling));
    check_close_cancels(*context, receiving, pair.server.native_handle(),
                        [&] { return pair.server.close(); });
    CHECK(polling.resumed);
    CHECK(polling.error == std::errc::operation_canceled);
}

TEST_CASE("co_await close() cancels a recv awaited with a deadline: operation_canceled, not "
          "timed_out") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    armed_recv waiting;
    // The request in the ring is the deadline's stand-in, not the recv awaitable itself.
    context->spawn(recv_with_deadline(pair.server, waiting));
    check_close_cancels(*context, waiting, pair.server.native_handle(),
                        [&] { return pair.server.close(); });
}

TEST_CASE("co_await close() cancels a multishot receive stream armed on the socket") {
    auto context = ucoro_test::make_ring_context();
    if (!context || !ucoro_test::multishot_recv_or_skip(*context)) {
        return;
    }
    ucoro::buffer_ring ring(*context, {.count = 4, .buffer_size = 256});
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    armed_recv waiting;
    context->spawn(stream_forever(pair.server, ring, waiting)); // the client never sends
    check_close_cancels(*context, waiting, pair.server.native_handle(),
                        [&] { return pair.server.close(); });
}

TEST_CASE("closing one socket leaves what is armed on another socket armed") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto closing = context->block_on(ucoro_test::connect_pair(*context, server));
    auto staying = context->block_on(ucoro_test::connect_pair(*context, server));
    armed_recv cancelled;
    armed_recv kept;
    context->spawn(recv_forever(closing.server, cancelled));
    context->spawn(recv_forever(staying.server, kept));
    const std::error_code close_error = context->block_on([&]() -> task<std::error_code> {
        co_await ucoro_test::next_turn_of(*context); // both recvs are armed now
        co_return co_await closing.server.close();
    }());
    CHECK_FALSE(close_error);
    CHECK_FALSE(kept.resumed);

    // The other recv is still in the ring and gets the byte sent to it.
    const std::array<std::byte, 1> byte{std::byte{42}};
    context->block_on([&]() -> task<void> {
        auto [error, sent] = co_await staying.client.send_all(byte);
        CHECK_FALSE(error);
        CHECK(sent == 1);
    }());
    context->run(); // returns once both recvs have completed
    CHECK(cancelled.resumed);
    CHECK(cancelled.error == std::errc::operation_canceled);
    CHECK(kept.resumed);
    CHECK_FALSE(kept.error);
    CHECK(kept.count == 1);
}

TEST_CASE("a close with nothing armed on its socket submits the close alone, whatever is armed "
          "elsewhere") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto idle = context->block_on(ucoro_test::connect_pair(*context, server));
    auto busy = context->block_on(ucoro_test::connect_pair(*context, server));
    armed_recv elsewhere;
    context->spawn(recv_forever(busy.server, elsewhere));
    const std::uint64_t submitted = context->block_on([&]() -> task<std::uint64_t> {
        co_await ucoro_test::next_turn_of(*context); // the other recv is in the kernel now
        const std::uint64_t before = context->stats().submissions;
        const std::error_code error = co_await idle.server.close();
        CHECK_FALSE(error);
        co_return context->stats().submissions - before;
    }());
    // One SQE: the close. No cancel, by descriptor or otherwise, went into the ring.
    CHECK(submitted == 1);
    CHECK_FALSE(elsewhere.resumed);
    context->stop();
    context->run();
    CHECK(elsewhere.error == std::errc::operation_canceled);
}

TEST_CASE("a close with more operations armed on its descriptor than the SQ has entries "
          "cancels them all and closes") {
    ucoro::io_context_options options;
    options.sq_entries = 4; // 6 recvs + their close: more than one reservation can hold
    auto context = ucoro_test::make_context(options);
    if (!context) {
        return;
    }
    auto pair = ucoro_test::make_stream_pair(*context);
    std::array<armed_recv, 6> waiting{};
    for (auto& w : waiting) {
        context->spawn(recv_forever(pair.ours, w));
    }
    const int fd = pair.ours.native_handle();
    check_close_cancels(*context, waiting[0], fd, [&] { return pair.ours.close(); });
    for (const auto& w : waiting) {
        CHECK(w.resumed);
        CHECK(w.error == std::errc::operation_canceled);
    }
}
