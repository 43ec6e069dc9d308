// socket::shutdown: half-closing a connection and still receiving on it.
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <span>
#include <system_error>
#include <vector>

#include "echo_server.hpp"
#include "support/loopback.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/shutdown.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

using ucoro::io_context;
using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;
using ucoro::net::shutdown_how;

namespace {

// Accepts one connection and serves it with the echo server's own connection handler.
task<void> serve_one_echo(listener& server, ucoro::apps::echo_server_stats& stats,
                          std::error_code& accept_error) {
    auto [error, connection] = co_await server.accept();
    accept_error = error;
    if (!error) {
        co_await ucoro::apps::echo_connection(std::move(connection), /*quiet=*/true, stats);
    }
}

} // namespace

TEST_CASE("after shutdown(send) the client still reads the whole echo until end of stream") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    ucoro::apps::echo_server_stats stats;
    std::error_code accept_error;
    // Small enough to sit in the socket buffers while the client is not reading yet, so
    // the client can send everything, shut down, and only then read.
    const auto payload = ucoro_test::make_pattern(8 * 1024 + 3);

    std::error_code shutdown_error = std::make_error_code(std::errc::io_error);
    ucoro_test::read_result echoed;
    auto client = [&]() -> task<void> {
        auto [connect_error, sock] = co_await ucoro::net::connect(*context, server.local_address());
        REQUIRE_FALSE(connect_error);
        auto [send_error, sent] = co_await sock.send_all(payload);
        REQUIRE_FALSE(send_error);
        REQUIRE(sent == payload.size());
        shutdown_error = co_await sock.shutdown();
        // Everything read from here on arrives after our side was shut down.
        echoed = co_await ucoro_test::read_until_end(sock, 1024, payload.size() + 1);
    };
    context->spawn(serve_one_echo(server, stats, accept_error));
    context->spawn(client());
    context->run();

    CHECK_FALSE(accept_error);
    CHECK_FALSE(shutdown_error);
    CHECK_FALSE(echoed.error);
    CHECK(echoed.end_of_stream); // the server closed because it read our end of stream
    UCORO_CHECK_SAME_BYTES(echoed.bytes, payload);
    CHECK(stats.closed == 1);
}

TEST_CASE("half-close with a 1 MiB echo: the writer shuts down while a reader drains") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    ucoro::apps::echo_server_stats stats;
    std::error_code accept_error;
    // Larger than any socket buffer: the echo only completes if the client reads while it
    // writes, on the same socket, from two coroutines.
    const auto payload = ucoro_test::make_pattern(1024 * 1024, 4242);

    auto pair_client = context->block_on([&]() -> task<ucoro::net::socket> {
        auto [connect_error, sock] = co_await ucoro::net::connect(*context, server.local_address());
        REQUIRE_FALSE(connect_error);
        co_return std::move(sock);
    }());

    std::error_code send_error = std::make_error_code(std::errc::io_error);
    std::size_t sent = 0;
    std::error_code shutdown_error = std::make_error_code(std::errc::io_error);
    ucoro_test::read_result echoed;
    auto writer = [&]() -> task<void> {
        auto [error, n] = co_await pair_client.send_all(payload);
        send_error = error;
        sent = n;
        // Shut down whatever happened, so the echo ends and the reader stops either way.
        shutdown_error = co_await pair_client.shutdown(shutdown_how::send);
    };
    auto reader = [&]() -> task<void> {
        echoed = co_await ucoro_test::read_until_end(pair_client, 4096, payload.size() + 1);
    };
    context->spawn(serve_one_echo(server, stats, accept_error));
    context->spawn(writer());
    context->spawn(reader());
    context->run();

    CHECK_FALSE(accept_error);
    CHECK_FALSE(send_error);
    CHECK(sent == payload.size());
    CHECK_FALSE(shutdown_error);
    CHECK_FALSE(echoed.error);
    CHECK(echoed.end_of_stream);
    UCORO_CHECK_SAME_BYTES(echoed.bytes, payload);
    CHECK(stats.closed == 1);
}

TEST_CASE("after shutdown(send) the peer reads end of stream and can still send back") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto request = ucoro_test::to_bytes("request, then FIN");
    const auto reply = ucoro_test::to_bytes("reply after the FIN");

    context->block_on([&]() -> task<void> {
        auto [send_error, sent] = co_await pair.client.send_all(request);
        REQUIRE_FALSE(send_error);
        REQUIRE(sent == request.size());
        const std::error_code shutdown_error = co_await pair.client.shutdown();
        REQUIRE_FALSE(shutdown_error);
        CHECK(pair.client.is_open()); // half-closed, not closed

        auto got = co_await ucoro_test::read_until_end(pair.server, 64, 1024);
        CHECK_FALSE(got.error);
        CHECK(got.end_of_stream);
        UCORO_CHECK_SAME_BYTES(got.bytes, request);

        // The other direction is untouched.
        auto [reply_error, reply_sent] = co_await pair.server.send_all(reply);
        REQUIRE_FALSE(reply_error);
        REQUIRE(reply_sent == reply.size());
        const std::error_code close_error = co_await pair.server.close();
        REQUIRE_FALSE(close_error);
        auto back = co_await ucoro_test::read_until_end(pair.client, 64, 1024);
        CHECK_FALSE(back.error);
        CHECK(back.end_of_stream);
        UCORO_CHECK_SAME_BYTES(back.bytes, reply);
    }());
}

TEST_CASE("send after shutdown(send) fails with EPIPE instead of raising SIGPIPE") {
    ucoro_test::restore_default_sigpipe(); // so a SIGPIPE would end the program
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto bytes = ucoro_test::to_bytes("too late");

    context->block_on([&]() -> task<void> {
        const std::error_code shutdown_error = co_await pair.client.shutdown();
        REQUIRE_FALSE(shutdown_error);
        auto [send_error, sent] = co_await pair.client.send(bytes);
        CHECK(send_error == std::errc::broken_pipe);
        CHECK(sent == 0);
        auto [all_error, all_sent] = co_await pair.client.send_all(bytes);
        CHECK(all_error == std::errc::broken_pipe);
        CHECK(all_sent == 0);
    }());
}

TEST_CASE("shutdown on a socket that was closed reports EBADF") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));

    context->block_on([&]() -> task<void> {
        const std::error_code close_error = co_await pair.client.close();
        REQUIRE_FALSE(close_error);
        const std::error_code shutdown_error = co_await pair.client.shutdown();
        CHECK(shutdown_error == std::errc::bad_file_descriptor);
    }());
}
