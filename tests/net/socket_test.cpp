// net::socket itself: a default-constructed socket is safe to use, addresses, TCP_NODELAY.
#include <netinet/tcp.h>

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <span>
#include <system_error>

#include "support/loopback.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;

TEST_CASE("every operation on a default-constructed socket reports EBADF instead of crashing") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    context->block_on([]() -> task<void> {
        ucoro::net::socket empty; // what io_result<socket> holds on error: no context, no fd
        CHECK_FALSE(empty.is_open());
        std::array<std::byte, 8> buffer{};
        const auto [recv_error, received] = co_await empty.recv(buffer);
        CHECK(recv_error == std::errc::bad_file_descriptor);
        CHECK(received == 0);
        const auto [send_error, sent] = co_await empty.send(buffer);
        CHECK(send_error == std::errc::bad_file_descriptor);
        CHECK(sent == 0);
        const auto [all_error, all_sent] = co_await empty.send_all(buffer);
        CHECK(all_error == std::errc::bad_file_descriptor);
        CHECK(all_sent == 0);
        CHECK(co_await empty.shutdown() == std::errc::bad_file_descriptor);
        CHECK_FALSE(co_await empty.close()); // closing nothing succeeds, as for a closed socket
    }());
    CHECK(context->in_flight() == 0);
}

TEST_CASE("a socket knows its local and peer addresses") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    CHECK(pair.server.local_address() == server.local_address());
    CHECK(pair.client.peer_address() == server.local_address());
    CHECK(pair.server.peer_address() == pair.client.local_address());
}

TEST_CASE("set_no_delay turns TCP_NODELAY on and off") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    pair.client.set_no_delay();
    CHECK(ucoro_test::get_int_option(pair.client.native_handle(), IPPROTO_TCP, TCP_NODELAY) != 0);
    pair.client.set_no_delay(false);
    CHECK(ucoro_test::get_int_option(pair.client.native_handle(), IPPROTO_TCP, TCP_NODELAY) == 0);
}
