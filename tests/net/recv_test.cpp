// socket::recv over loopback: data, end of stream, an empty buffer, errors.
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <span>
#include <system_error>
#include <vector>

#include "support/loopback.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

using ucoro::io_context;
using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;

namespace {

// Blocks (outside the loop) until at least one byte is queued on `fd`, without taking it:
// a wait on the event itself instead of a sleep.
void wait_until_readable(int fd) {
    std::byte probe{};
    const ssize_t n = ::recv(fd, &probe, 1, MSG_PEEK);
    REQUIRE(n == 1);
}

} // namespace

TEST_CASE("recv returns exactly the bytes the peer sent") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto payload = ucoro_test::make_pattern(256 * 1024 + 7);

    // Writer and reader run at once, so neither depends on the socket buffers holding
    // the whole payload. An odd chunk size makes recv boundaries fall mid-segment.
    std::error_code send_error;
    std::size_t sent = 0;
    ucoro_test::read_result received;
    auto writer = [&]() -> task<void> {
        auto [error, n] = co_await pair.client.send_all(payload);
        send_error = error;
        sent = n;
    };
    auto reader = [&]() -> task<void> {
        received = co_await ucoro_test::read_until_end(pair.server, 1000, payload.size());
    };
    context->spawn(writer());
    context->spawn(reader());
    context->run();

    CHECK_FALSE(send_error);
    CHECK(sent == payload.size());
    CHECK_FALSE(received.error);
    CHECK_FALSE(received.end_of_stream);
    UCORO_CHECK_SAME_BYTES(received.bytes, payload);
}

TEST_CASE("recv takes at most the buffer's size and leaves the rest queued") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto message = ucoro_test::to_bytes("0123456789");

    context->block_on([&]() -> task<void> {
        auto [send_error, sent] = co_await pair.client.send_all(message);
        REQUIRE_FALSE(send_error);
        REQUIRE(sent == message.size());
        wait_until_readable(pair.server.native_handle());
        // One send of 10 bytes on loopback is one segment: once any of it is readable, all
        // of it is.
        std::array<std::byte, 4> small{};
        auto [first_error, first] = co_await pair.server.recv(small);
        CHECK_FALSE(first_error);
        REQUIRE(first == 4);
        UCORO_CHECK_SAME_BYTES(small, std::span(message).first(4));

        std::array<std::byte, 16> rest{};
        auto [second_error, second] = co_await pair.server.recv(rest);
        CHECK_FALSE(second_error);
        REQUIRE(second == 6);
        UCORO_CHECK_SAME_BYTES(std::span(rest).first(6), std::span(message).subspan(4));
    }());
}

TEST_CASE("recv returns 0 without an error at end of stream after the peer closes") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto message = ucoro_test::to_bytes("last words");

    context->block_on([&]() -> task<void> {
        auto [send_error, sent] = co_await pair.client.send_all(message);
        REQUIRE_FALSE(send_error);
        REQUIRE(sent == message.size());
        const std::error_code close_error = co_await pair.client.close();
        REQUIRE_FALSE(close_error);

        // The data sent before the close comes first, then end of stream.
        auto received = co_await ucoro_test::read_until_end(pair.server, 64, 1024);
        CHECK_FALSE(received.error);
        CHECK(received.end_of_stream);
        UCORO_CHECK_SAME_BYTES(received.bytes, message);

        // End of stream is not consumed by reading it: every later recv says 0 again.
        std::array<std::byte, 8> buffer{};
        for (int i = 0; i < 3; ++i) {
            auto [error, n] = co_await pair.server.recv(buffer);
            CHECK_FALSE(error);
            CHECK(n == 0);
        }
    }());
}

TEST_CASE("a recv waiting for data completes with 0 when the peer closes") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));

    bool reader_done = false;
    bool reader_done_before_close = false;
    std::error_code recv_error = std::make_error_code(std::errc::io_error);
    std::size_t received = 1;
    std::error_code close_error;
    auto reader = [&]() -> task<void> {
        std::array<std::byte, 64> buffer{};
        auto [error, n] = co_await pair.server.recv(buffer);
        recv_error = error;
        received = n;
        reader_done = true;
    };
    auto closer = [&]() -> task<void> {
        // The reader was spawned first, so its recv is already in the ring, with nothing
        // to read: only the close below can complete it.
        reader_done_before_close = reader_done;
        close_error = co_await pair.client.close();
    };
    context->spawn(reader());
    context->spawn(closer());
    context->run();

    CHECK_FALSE(reader_done_before_close);
    CHECK(reader_done);
    CHECK_FALSE(close_error);
    CHECK_FALSE(recv_error);
    CHECK(received == 0);
}

TEST_CASE("recv into an empty buffer is rejected without a system call and consumes nothing") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto message = ucoro_test::to_bytes("abc");

    context->block_on([&]() -> task<void> {
        auto [send_error, sent] = co_await pair.client.send_all(message);
        REQUIRE_FALSE(send_error);
        REQUIRE(sent == message.size());
        // Data is queued, so the empty recv has something it could (but must not) take.
        wait_until_readable(pair.server.native_handle());

        // 0 would read as end of stream, so an empty buffer is an error, decided before
        // anything reaches the ring.
        const auto calls_before = context->stats().submit_calls;
        const auto in_flight_before = context->in_flight();
        auto [empty_error, empty_count] = co_await pair.server.recv(std::span<std::byte>());
        CHECK(empty_error == std::errc::invalid_argument);
        CHECK(empty_count == 0);
        CHECK(context->stats().submit_calls == calls_before);
        CHECK(context->in_flight() == in_flight_before);

        std::array<std::byte, 16> buffer{};
        auto [error, n] = co_await pair.server.recv(buffer);
        CHECK_FALSE(error);
        REQUIRE(n == message.size());
        UCORO_CHECK_SAME_BYTES(std::span(buffer).first(n), message);
    }());
}

TEST_CASE("recv reports ECONNRESET after the peer resets the connection") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));

    // SO_LINGER {on, 0 s}: close() aborts the connection with RST instead of a FIN.
    const linger abort_on_close{1, 0};
    REQUIRE(::setsockopt(pair.client.native_handle(), SOL_SOCKET, SO_LINGER, &abort_on_close,
                         sizeof(abort_on_close)) == 0);

    std::error_code recv_error;
    std::size_t received = 1;
    auto reader = [&]() -> task<void> {
        std::array<std::byte, 64> buffer{};
        auto [error, n] = co_await pair.server.recv(buffer);
        recv_error = error;
        received = n;
    };
    auto resetter = [&]() -> task<void> { (void)co_await pair.client.close(); };
    context->spawn(reader());
    context->spawn(resetter());
    context->run();

    INFO("recv error: " << recv_error.message());
    CHECK(recv_error == std::errc::connection_reset);
    CHECK(received == 0);
}

TEST_CASE("recv on a socket that was closed reports EBADF instead of reading another fd") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));

    context->block_on([&]() -> task<void> {
        const std::error_code close_error = co_await pair.server.close();
        REQUIRE_FALSE(close_error);
        std::array<std::byte, 8> buffer{};
        auto [error, n] = co_await pair.server.recv(buffer);
        CHECK(error == std::errc::bad_file_descriptor);
        CHECK(n == 0);
    }());
}
