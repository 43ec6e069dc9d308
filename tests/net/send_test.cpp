// socket::send and socket::send_all over loopback: short sends, every byte delivered to a
// slow reader, and a peer that resets the connection mid-send.
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
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

// Small enough that a few MiB can never fit in the two socket buffers together (the kernel
// doubles the value and applies its own minimum, still a few KiB).
constexpr int small_buffer = 4096;
constexpr std::size_t large_size = 4 * 1024 * 1024;

// A connection whose receiving end has a small SO_RCVBUF (set before the handshake) and
// whose sending end has a small SO_SNDBUF: a large send cannot go in one piece.
struct throttled_connection {
    ucoro::net::socket receiver;
    ucoro::net::socket sender;
};

throttled_connection make_throttled_connection(io_context& context, listener& server) {
    throttled_connection c;
    c.receiver =
        ucoro_test::connect_with_receive_buffer(context, server.local_address(), small_buffer);
    auto accepted = context.block_on([&]() -> task<ucoro::io_result<ucoro::net::socket>> {
        co_return co_await server.accept();
    }());
    if (accepted.error) {
        throw std::system_error(accepted.error, "accept");
    }
    c.sender = std::move(accepted.value);
    ucoro_test::set_int_option(c.sender.native_handle(), SOL_SOCKET, SO_SNDBUF, small_buffer);
    return c;
}

bool is_pipe_or_reset(const std::error_code& error) {
    return error == std::errc::broken_pipe || error == std::errc::connection_reset;
}

} // namespace

TEST_CASE("send reports a short send when the socket buffers are full") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto link = make_throttled_connection(*context, server);
    const auto payload = ucoro_test::make_pattern(large_size);

    auto [send_error, sent] = context->block_on([&]() -> task<ucoro::io_result<std::size_t>> {
        co_return co_await link.sender.send(payload);
    }());
    INFO("one send of " << payload.size() << " bytes took " << sent);
    REQUIRE_FALSE(send_error);
    CHECK(sent > 0);
    CHECK(sent < payload.size());

    // Exactly the first `sent` bytes went, and nothing after them: close the sender and
    // read to end of stream.
    const auto received = context->block_on([&]() -> task<ucoro_test::read_result> {
        const std::error_code close_error = co_await link.sender.close();
        REQUIRE_FALSE(close_error);
        co_return co_await ucoro_test::read_until_end(link.receiver, 512, payload.size());
    }());
    CHECK_FALSE(received.error);
    CHECK(received.end_of_stream);
    UCORO_CHECK_SAME_BYTES(received.bytes, std::span(payload).first(sent));
}

namespace {

// send_all of 4 MiB to a peer that reads 512 bytes at a time, with MSG_WAITALL (the kernel
// retries short sends itself) or without (send_all resubmits them): every byte arrives once,
// in order, either way. Returns how many send requests it took, nothing if skipped.
std::optional<std::uint64_t> send_all_to_slow_reader(bool waitall) {
    ucoro::io_context_options options;
    options.send_waitall = waitall;
    auto context = ucoro_test::make_context(options);
    if (!context) {
        return std::nullopt;
    }
    if (waitall && !context->features().send_waitall) {
        WARN("SKIPPED: this kernel does not retry short io_uring sends on MSG_WAITALL (5.19)");
        return std::nullopt;
    }
    REQUIRE(context->features().send_waitall == waitall);
    listener server(*context, address::ipv4_loopback(0));
    auto link = make_throttled_connection(*context, server);
    const auto payload = ucoro_test::make_pattern(large_size, 12345);

    std::error_code send_error = std::make_error_code(std::errc::io_error);
    std::size_t sent = 0;
    std::error_code close_error;
    ucoro_test::read_result received;
    auto writer = [&]() -> task<void> {
        auto [error, n] = co_await link.sender.send_all(payload);
        send_error = error;
        sent = n;
        close_error = co_await link.sender.close(); // the reader stops at end of stream
    };
    auto reader = [&]() -> task<void> {
        // The limit is one more than the payload, so a duplicated byte would show.
        received = co_await ucoro_test::read_until_end(link.receiver, 512, payload.size() + 1);
    };
    const std::uint64_t completions_before = context->stats().completions;
    context->spawn(writer());
    context->spawn(reader());
    context->run();

    CHECK_FALSE(send_error);
    CHECK(sent == payload.size());
    CHECK_FALSE(close_error);
    CHECK_FALSE(received.error);
    CHECK(received.end_of_stream);
    UCORO_CHECK_SAME_BYTES(received.bytes, payload);
    CHECK(received.recv_calls >= payload.size() / 512);

    // Every CQE was a recv, the close's (nothing is armed on the descriptor by then, so
    // close.cpp queues no cancel), or one piece of send_all.
    const std::uint64_t completions = context->stats().completions - completions_before;
    const std::uint64_t send_pieces = completions - received.recv_calls - 1;
    INFO("send_all took " << send_pieces << " sends");
    return send_pieces;
}

} // namespace

TEST_CASE("send_all without MSG_WAITALL resubmits short sends until a slow reader has every "
          "byte") {
    // More than one piece: send_all really did resubmit after short sends.
    const auto pieces = send_all_to_slow_reader(false);
    if (pieces) {
        CHECK(*pieces > 1);
    }
}

TEST_CASE("send_all with MSG_WAITALL delivers every byte to a slow reader in one request") {
    // One piece: the kernel retried the short sends itself and posted one completion.
    const auto pieces = send_all_to_slow_reader(true);
    if (pieces) {
        CHECK(*pieces == 1);
    }
}

TEST_CASE("sending zero bytes completes with 0 and sends nothing") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto marker = ucoro_test::to_bytes("!");

    const auto received = context->block_on([&]() -> task<ucoro_test::read_result> {
        auto [send_error, sent] = co_await pair.client.send(std::span<const std::byte>());
        CHECK_FALSE(send_error);
        CHECK(sent == 0);
        auto [all_error, all_sent] = co_await pair.client.send_all(std::span<const std::byte>());
        CHECK_FALSE(all_error);
        CHECK(all_sent == 0);
        auto [marker_error, marker_sent] = co_await pair.client.send_all(marker);
        REQUIRE_FALSE(marker_error);
        REQUIRE(marker_sent == marker.size());
        const std::error_code close_error = co_await pair.client.close();
        REQUIRE_FALSE(close_error);
        co_return co_await ucoro_test::read_until_end(pair.server, 64, 1024);
    }());
    CHECK(received.end_of_stream);
    UCORO_CHECK_SAME_BYTES(received.bytes, marker);
}

TEST_CASE("send_all to a peer that resets returns EPIPE or ECONNRESET and raises no SIGPIPE") {
    ucoro_test::restore_default_sigpipe();
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto link = make_throttled_connection(*context, server);
    const auto payload = ucoro_test::make_pattern(large_size, 777);

    std::error_code send_all_error;
    std::size_t sent = payload.size();
    std::error_code recv_error;
    std::size_t received_after_reset = 1;
    std::error_code send_error;
    bool peer_saw_data = false;
    std::error_code reset_close_error;

    auto writer = [&]() -> task<void> {
        auto [error, n] = co_await link.sender.send_all(payload);
        send_all_error = error;
        sent = n;
        std::array<std::byte, 64> buffer{};
        auto [r_error, r_n] = co_await link.sender.recv(buffer);
        recv_error = r_error;
        received_after_reset = r_n;
        // Once more on the dead connection: without MSG_NOSIGNAL this is where a process
        // with the default disposition would die.
        auto [s_error, s_n] = co_await link.sender.send(std::span(payload).first(100));
        send_error = s_error;
        (void)s_n;
    };
    auto resetter = [&]() -> task<void> {
        // The first byte arriving proves send_all is under way; the buffers are far too
        // small for the rest, so it is still waiting in the ring when the RST comes.
        std::array<std::byte, 1> first{};
        auto [error, n] = co_await link.receiver.recv(first);
        peer_saw_data = !error && n == 1;
        const linger abort_on_close{1, 0};
        ::setsockopt(link.receiver.native_handle(), SOL_SOCKET, SO_LINGER, &abort_on_close,
                     sizeof(abort_on_close));
        reset_close_error = co_await link.receiver.close();
    };
    context->spawn(writer());
    context->spawn(resetter());
    context->run();

    CHECK(peer_saw_data);
    CHECK_FALSE(reset_close_error);
    INFO("send_all: " << send_all_error.message() << " after " << sent
                      << " bytes; recv: " << recv_error.message() << ", " << received_after_reset
                      << " bytes; send: " << send_error.message());
    CHECK(is_pipe_or_reset(send_all_error));
    CHECK(sent > 0);
    CHECK(sent < payload.size());
    CHECK(
        (recv_error == std::errc::connection_reset || (!recv_error && received_after_reset == 0)));
    CHECK(is_pipe_or_reset(send_error));
}
