// socket::close, listener::close and the socket destructor: the descriptor is closed exactly
// once, and nothing stays armed on it.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <system_error>
#include <utility>

#include "support/counting.hpp"
#include "support/loopback.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

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
