// listener::accept over loopback: the peer address, waiting in the ring, close-on-exec,
// IPv6, the order of queued connections.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <array>
#include <cerrno>
#include <cstddef>
#include <memory>
#include <string>
#include <system_error>

#include "support/loopback.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

using ucoro::io_context;
using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;

TEST_CASE("accept returns a socket whose peer_address is the connector's local_address") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    REQUIRE(pair.client.is_open());
    REQUIRE(pair.server.is_open());

    const address client_local = pair.client.local_address();
    CHECK(client_local.port() != 0);
    CHECK(client_local.host() == "127.0.0.1");
    CHECK(pair.server.peer_address() == client_local);
    // And the other way round: each end names the other.
    CHECK(pair.client.peer_address() == server.local_address());
    CHECK(pair.server.local_address() == server.local_address());
    CHECK(pair.client.native_handle() != pair.server.native_handle());
}

TEST_CASE("an accept waiting in the ring completes when a connection arrives") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    // The acceptor is spawned first, so its accept is in the ring with the backlog empty;
    // the connector runs after it.
    bool accepted = false;
    bool connected = false;
    address accepted_peer;
    address connector_local;
    std::error_code accept_error;
    std::error_code connect_error;
    // Named lambdas: a coroutine lambda's captures live in the closure, which must outlive
    // run(), not just the spawn() expression.
    auto acceptor = [&]() -> task<void> {
        auto [error, sock] = co_await server.accept();
        accept_error = error;
        accepted = sock.is_open();
        accepted_peer = sock.peer_address();
    };
    bool accepted_before_connect = false;
    auto connector = [&]() -> task<void> {
        // Nothing has connected yet, so the acceptor cannot have finished: it is waiting.
        accepted_before_connect = accepted;
        auto [error, sock] = co_await ucoro::net::connect(*context, server.local_address());
        connect_error = error;
        connected = sock.is_open();
        connector_local = sock.local_address();
    };
    context->spawn(acceptor());
    context->spawn(connector());
    context->run();
    CHECK_FALSE(accept_error);
    CHECK_FALSE(connect_error);
    CHECK_FALSE(accepted_before_connect);
    CHECK(accepted);
    CHECK(connected);
    CHECK(accepted_peer == connector_local);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("accepted and connected sockets are close-on-exec") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    CHECK((::fcntl(pair.client.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(pair.server.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(server.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
}

TEST_CASE("an IPv6 loopback listener accepts a connection over ::1") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    std::unique_ptr<listener> server;
    try {
        server = std::make_unique<listener>(*context, address::ipv6_loopback(0));
    } catch (const std::system_error& e) {
        // No IPv6 in this network namespace (EAFNOSUPPORT) or no ::1 on lo (EADDRNOTAVAIL).
        WARN("SKIPPED: IPv6 loopback unavailable: " << e.what());
        return;
    }
    CHECK(server->local_address().family() == AF_INET6);
    CHECK(server->local_address().host() == "::1");
    CHECK(server->local_address().port() != 0);
    CHECK(server->local_address().to_string() ==
          "[::1]:" + std::to_string(server->local_address().port()));

    auto pair = context->block_on(ucoro_test::connect_pair(*context, *server));
    CHECK(pair.server.peer_address().family() == AF_INET6);
    CHECK(pair.server.peer_address() == pair.client.local_address());
    CHECK(pair.client.peer_address() == server->local_address());

    // A few bytes each way, so the connection is proven to carry data, not just exist.
    const auto ping = ucoro_test::to_bytes("ping over ::1");
    const auto received = context->block_on([&]() -> task<ucoro_test::read_result> {
        auto [error, n] = co_await pair.client.send_all(ping);
        REQUIRE_FALSE(error);
        REQUIRE(n == ping.size());
        co_return co_await ucoro_test::read_until_end(pair.server, 64, ping.size());
    }());
    CHECK_FALSE(received.error);
    UCORO_CHECK_SAME_BYTES(received.bytes, ping);
}

TEST_CASE("a listener accepts several queued connections in the order they arrived") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    constexpr std::size_t count = 8;
    const bool all_matched = context->block_on([&]() -> task<bool> {
        std::array<ucoro::net::socket, count> clients;
        for (auto& c : clients) {
            auto [error, sock] = co_await ucoro::net::connect(*context, server.local_address());
            REQUIRE_FALSE(error);
            c = std::move(sock);
        }
        bool matched = true;
        for (auto& c : clients) {
            auto [error, sock] = co_await server.accept();
            REQUIRE_FALSE(error);
            if (!(sock.peer_address() == c.local_address())) {
                matched = false;
            }
        }
        co_return matched;
    }());
    CHECK(all_matched);
}
