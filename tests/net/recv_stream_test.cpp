// recv_stream over loopback: byte-exact streams through tiny rings (ENOBUFS re-arms), many
// connections on one ring, end of stream, dropping a stream in flight, the ring's lifetime,
// and the single-shot fallback.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
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
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"

using ucoro::buffer_ring;
using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;

namespace {

/// What a stream delivered until end of stream (or an error, or `limit` bytes).
struct stream_result {
    std::vector<std::byte> bytes;
    std::error_code error;
    bool end_of_stream = false;
    std::size_t buffers = 0;
    std::size_t largest = 0;
};

/// Receives through `ring` until end of stream, giving each buffer back at once. Every
/// buffer holds at least one byte, so limit + 1 rounds bound the loop.
task<stream_result> receive_all(ucoro::net::socket& connection, buffer_ring& ring,
                                std::size_t limit) {
    stream_result result;
    auto stream = connection.recv_multishot(ring);
    while (result.buffers <= limit) {
        auto [error, buffer] = co_await stream.next();
        if (error) {
            result.error = error;
            break;
        }
        if (buffer.empty()) {
            result.end_of_stream = true;
            break;
        }
        ++result.buffers;
        result.largest = std::max(result.largest, buffer.size());
        result.bytes.insert(result.bytes.end(), buffer.bytes().begin(), buffer.bytes().end());
    }
    co_return result;
}

/// Sends all of `payload`, then closes, so that the receiver sees end of stream.
task<void> send_and_close(ucoro::net::socket& connection, std::span<const std::byte> payload,
                          std::error_code& error) {
    auto [send_error, sent] = co_await connection.send_all(payload);
    error = send_error;
    if (!send_error && sent != payload.size()) {
        error = std::make_error_code(std::errc::message_size);
    }
    if (const auto close_error = co_await connection.close(); !error) {
        error = close_error;
    }
}

// Coroutines take what they use as parameters (copied into their frame): a lambda's
// captures would live in a closure object that dies before the spawned coroutine runs.
task<void> receive_into(ucoro::net::socket& connection, buffer_ring& ring, std::size_t limit,
                        stream_result& result) {
    result = co_await receive_all(connection, ring, limit);
}

/// Receives one buffer and holds it while closing the socket with the stream still armed.
task<void> receive_one_then_close(ucoro::net::socket& connection, buffer_ring& ring,
                                  std::size_t& finished) {
    auto stream = connection.recv_multishot(ring);
    auto [error, held] = co_await stream.next();
    CHECK_FALSE(error);
    CHECK_FALSE(held.empty());
    const auto close_error = co_await connection.close();
    CHECK_FALSE(close_error);
    ++finished;
}

void stream_one_mebibyte(ucoro::io_context_options options, unsigned ring_count = 2) {
    auto context = ucoro_test::make_ring_context(options);
    if (!context) {
        return;
    }
    if (options.recv_bundle && !ucoro_test::recv_bundle_or_skip(*context)) {
        return;
    }
    buffer_ring ring(*context, {.count = ring_count, .buffer_size = 1024});
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto payload = ucoro_test::make_pattern(1024 * 1024);

    std::error_code send_error;
    stream_result received;
    context->spawn(send_and_close(pair.client, payload, send_error));
    context->spawn(receive_into(pair.server, ring, payload.size(), received));
    context->run();

    CHECK_FALSE(send_error);
    CHECK_FALSE(received.error);
    CHECK(received.end_of_stream);
    CHECK(received.largest <= ring.buffer_size());
    UCORO_CHECK_SAME_BYTES(received.bytes, payload);
    CHECK(ring.available() == ring.count());
    CHECK(context->in_flight() == 0);
    INFO("ENOBUFS re-arms: " << ring.enobufs_rearms());
    if (options.multishot_recv && !options.recv_bundle) {
        // A 1 MiB stream cannot fit in a few KiB of ring: it must have run empty and re-armed.
        // Not asserted for bundles: one bundled receive may take the whole ring, and when the
        // kernel does not retry at once the loop has refilled it before the next attempt
        // (seen on CI's kernel), so running empty is possible there but not certain.
        CHECK(ring.enobufs_rearms() > 0);
    }
    if (options.recv_bundle) {
        CHECK(ring.bundles() > 0); // completions with several buffers did come
    } else {
        CHECK(ring.bundles() == 0);
    }
}

} // namespace

TEST_CASE("recv_multishot refuses a buffer_ring of another io_context with invalid_argument") {
    auto ring_context = ucoro_test::make_ring_context();
    if (!ring_context) {
        return;
    }
    auto socket_context = ucoro_test::make_context();
    REQUIRE(socket_context);
    ucoro::buffer_ring ring(*ring_context,
                            ucoro::buffer_ring_options{.count = 4, .buffer_size = 64});
    auto pair = ucoro_test::make_stream_pair(*socket_context);
    try {
        auto stream = pair.ours.recv_multishot(ring);
        FAIL("recv_multishot accepted a ring of another context");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()) ==
              "socket::recv_multishot: the buffer_ring belongs to another io_context");
    }
    // Nothing was armed on either context, and the ring lent nothing out.
    CHECK(socket_context->in_flight() == 0);
    CHECK(ring_context->in_flight() == 0);
    CHECK(ring.available() == ring.count());
    // The same socket with a ring of its own context streams as usual.
    ucoro::buffer_ring own_ring(*socket_context,
                                ucoro::buffer_ring_options{.count = 4, .buffer_size = 64});
    ucoro_test::write_all(pair.peer.get(), ucoro_test::to_bytes("same context"));
    std::string got;
    socket_context->block_on([&]() -> task<void> {
        auto stream = pair.ours.recv_multishot(own_ring);
        auto [error, buffer] = co_await stream.next();
        REQUIRE_FALSE(error);
        got.assign(reinterpret_cast<const char*>(buffer.bytes().data()), buffer.bytes().size());
    }());
    CHECK(got == "same context");
}

TEST_CASE("recv_stream delivers 1 MiB byte for byte through a ring of 2 buffers, re-arming "
          "after ENOBUFS") {
    auto context = ucoro_test::make_ring_context();
    if (!context || !ucoro_test::multishot_recv_or_skip(*context)) {
        return;
    }
    context.reset();
    stream_one_mebibyte({});
}

TEST_CASE("recv_stream with multishot receive switched off delivers 1 MiB byte for byte") {
    ucoro::io_context_options options;
    options.multishot_recv = false;
    stream_one_mebibyte(options);
}

TEST_CASE("recv_stream with bundled receives delivers 1 MiB byte for byte, a buffer at a "
          "time") {
    ucoro::io_context_options options;
    options.recv_bundle = true;
    stream_one_mebibyte(options, 8);
}

void share_one_small_ring(ucoro::io_context_options options) {
    auto context = ucoro_test::make_ring_context(options);
    if (!context) {
        return;
    }
    if (options.recv_bundle && !ucoro_test::recv_bundle_or_skip(*context)) {
        return;
    }
    constexpr std::size_t connections = 32;
    constexpr std::size_t size = 64 * 1024 + 17;
    buffer_ring ring(*context, {.count = 4, .buffer_size = 512});
    listener server(*context, address::ipv4_loopback(0));

    std::vector<ucoro_test::connected_pair> pairs;
    std::vector<std::vector<std::byte>> payloads;
    for (std::size_t i = 0; i < connections; ++i) {
        pairs.push_back(context->block_on(ucoro_test::connect_pair(*context, server)));
        payloads.push_back(ucoro_test::make_pattern(size, static_cast<std::uint32_t>(i + 1)));
    }
    std::vector<std::error_code> send_errors(connections);
    std::vector<stream_result> received(connections);
    for (std::size_t i = 0; i < connections; ++i) {
        context->spawn(send_and_close(pairs[i].client, payloads[i], send_errors[i]));
        context->spawn(receive_into(pairs[i].server, ring, size, received[i]));
    }
    context->run();

    for (std::size_t i = 0; i < connections; ++i) {
        INFO("connection " << i);
        CHECK_FALSE(send_errors[i]);
        CHECK_FALSE(received[i].error);
        CHECK(received[i].end_of_stream);
        UCORO_CHECK_SAME_BYTES(received[i].bytes, payloads[i]);
    }
    // 32 streams on 4 buffers: some found the ring empty and waited for a buffer.
    CHECK(ring.enobufs_rearms() > 0);
    CHECK(ring.available() == ring.count());
}

TEST_CASE("many connections share one small ring with nothing lost or reordered") {
    share_one_small_ring({});
}

TEST_CASE("many connections share one small ring with bundled receives, nothing lost or "
          "reordered") {
    ucoro::io_context_options options;
    options.recv_bundle = true;
    share_one_small_ring(options);
}

TEST_CASE("a stream whose coroutine stops reading holds a bounded share of the ring") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    // 256 buffers of 64 bytes; the idle stream's peer sends 64 KiB, four times the ring.
    buffer_ring ring(*context, {.count = 256, .buffer_size = 64, .stream_queue_limit = 4});
    listener server(*context, address::ipv4_loopback(0));
    auto idle = context->block_on(ucoro_test::connect_pair(*context, server));
    auto busy = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto flood = ucoro_test::make_pattern(64 * 1024, 7);
    const auto payload = ucoro_test::make_pattern(64 * 1024, 8);

    // The idle side takes one buffer, then never asks again while the flood arrives.
    auto idle_stream = idle.server.recv_multishot(ring);
    std::error_code flood_error;
    auto first = context->block_on([&]() -> task<buffer_ring::buffer> {
        auto [send_error, sent] = co_await idle.client.send_all(flood);
        flood_error = send_error;
        auto [error, buffer] = co_await idle_stream.next();
        REQUIRE_FALSE(error);
        co_return std::move(buffer);
    }());
    REQUIRE_FALSE(flood_error);

    // Another connection still gets through the same ring, byte for byte.
    std::error_code send_error;
    stream_result received;
    context->spawn(send_and_close(busy.client, payload, send_error));
    context->spawn(receive_into(busy.server, ring, payload.size(), received));
    context->run();
    CHECK_FALSE(send_error);
    CHECK(received.end_of_stream);
    UCORO_CHECK_SAME_BYTES(received.bytes, payload);

    // The idle stream holds its limit plus what the kernel delivered before the cancel
    // landed (on 6.18, two multishot bursts of 32: 66 in all), not the whole ring. Without
    // the limit it would take every buffer and the other connection would wait forever.
    const unsigned held = ring.count() - ring.available();
    INFO("buffers held by the idle stream: " << held);
    CHECK(held >= 1);
    CHECK(held < ring.count() / 2);

    // What it holds is still the flood's beginning, in order.
    std::vector<std::byte> idle_bytes(first.bytes().begin(), first.bytes().end());
    first.reset();
    context->block_on([&]() -> task<void> {
        while (idle_bytes.size() < 4 * ring.buffer_size()) {
            auto [error, buffer] = co_await idle_stream.next();
            REQUIRE_FALSE(error);
            REQUIRE_FALSE(buffer.empty());
            idle_bytes.insert(idle_bytes.end(), buffer.bytes().begin(), buffer.bytes().end());
        }
    }());
    UCORO_CHECK_SAME_BYTES(idle_bytes, std::span(flood).first(idle_bytes.size()));
}

TEST_CASE("end of stream is an empty buffer without an error, and stays so") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 4, .buffer_size = 64});
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto message = ucoro_test::to_bytes("last words");

    context->block_on([&]() -> task<void> {
        std::error_code send_error;
        co_await send_and_close(pair.client, message, send_error);
        REQUIRE_FALSE(send_error);

        auto stream = pair.server.recv_multishot(ring);
        auto [error, buffer] = co_await stream.next();
        REQUIRE_FALSE(error);
        UCORO_CHECK_SAME_BYTES(buffer.bytes(), message);
        buffer.reset();
        for (int i = 0; i < 3; ++i) {
            auto [end_error, end] = co_await stream.next();
            CHECK_FALSE(end_error);
            CHECK(end.empty());
        }
    }());
    CHECK(ring.available() == ring.count());
}

void drop_stream_in_flight(ucoro::io_context_options options) {
    auto context = ucoro_test::make_ring_context(options);
    if (!context) {
        return;
    }
    if (options.recv_bundle && !ucoro_test::recv_bundle_or_skip(*context)) {
        return;
    }
    buffer_ring ring(*context, {.count = 8, .buffer_size = 256});
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto payload = ucoro_test::make_pattern(64 * 1024);

    std::error_code send_error;
    bool dropped = false;
    auto receiver = [&]() -> task<void> {
        auto stream = std::make_unique<ucoro::net::recv_stream>(pair.server.recv_multishot(ring));
        auto [error, first] = co_await stream->next();
        REQUIRE_FALSE(error);
        REQUIRE_FALSE(first.empty());
        UCORO_CHECK_SAME_BYTES(first.bytes(), std::span(payload).first(first.size()));
        // Armed, with more data on the way: the context takes over the request, cancels it and
        // gives back what arrives meanwhile. The buffer we hold stays valid.
        stream.reset();
        CHECK(context->in_flight() > 0);
        dropped = true;
        UCORO_CHECK_SAME_BYTES(first.bytes(), std::span(payload).first(first.size()));
    };
    context->spawn(send_and_close(pair.client, payload, send_error));
    context->spawn(receiver());
    context->run(); // ends only once the orphaned request's final CQE was seen

    CHECK(dropped);
    CHECK(context->in_flight() == 0);
    CHECK(ring.available() == ring.count());
}

TEST_CASE("a stream dropped with its request in flight gives back every buffer that still "
          "arrives") {
    drop_stream_in_flight({});
}

TEST_CASE("a stream with bundled receives dropped in flight gives back every buffer of every "
          "bundle") {
    ucoro::io_context_options options;
    options.recv_bundle = true;
    drop_stream_in_flight(options);
}

TEST_CASE("every buffer is back in the ring once all connections have closed") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    constexpr std::size_t connections = 16;
    buffer_ring ring(*context, {.count = 16, .buffer_size = 128});
    listener server(*context, address::ipv4_loopback(0));
    std::vector<ucoro_test::connected_pair> pairs;
    for (std::size_t i = 0; i < connections; ++i) {
        pairs.push_back(context->block_on(ucoro_test::connect_pair(*context, server)));
    }
    const auto payload = ucoro_test::make_pattern(8 * 1024);
    std::vector<std::error_code> send_errors(connections);
    std::vector<stream_result> received(connections);
    std::size_t closed_early = 0;
    for (std::size_t i = 0; i < connections; ++i) {
        context->spawn(send_and_close(pairs[i].client, payload, send_errors[i]));
        // Half read to the end; half stop early, each holding a buffer, and close their
        // socket while the stream is still armed.
        if (i % 2 == 0) {
            context->spawn(receive_into(pairs[i].server, ring, payload.size(), received[i]));
        } else {
            context->spawn(receive_one_then_close(pairs[i].server, ring, closed_early));
        }
    }
    context->run();

    for (std::size_t i = 0; i < connections; i += 2) {
        INFO("connection " << i);
        CHECK(received[i].end_of_stream);
        UCORO_CHECK_SAME_BYTES(received[i].bytes, payload);
    }
    CHECK(closed_early == connections / 2);
    CHECK(context->in_flight() == 0);
    CHECK(ring.available() == ring.count());
}

TEST_CASE("a stream keeps its ring's memory alive when the buffer_ring is destroyed first") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    auto ring = std::make_unique<buffer_ring>(
        *context, ucoro::buffer_ring_options{.count = 4, .buffer_size = 64});
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto payload = ucoro_test::make_pattern(200);

    context->block_on([&]() -> task<void> {
        auto stream = pair.server.recv_multishot(*ring);
        auto [send_error, sent] = co_await pair.client.send_all(payload);
        REQUIRE_FALSE(send_error);
        REQUIRE(sent == payload.size());
        auto [error, first] = co_await stream.next();
        REQUIRE_FALSE(error);
        ring.reset(); // the handle goes; the stream and `first` still use the memory

        std::vector<std::byte> received(first.bytes().begin(), first.bytes().end());
        first.reset();
        while (received.size() < payload.size()) {
            auto [next_error, buffer] = co_await stream.next();
            // With 4 buffers of 64 bytes for 200 bytes, the ring may run empty once: the
            // stream then ends with operation_canceled, since nobody will refill it.
            if (next_error) {
                CHECK(next_error == std::errc::operation_canceled);
                break;
            }
            REQUIRE_FALSE(buffer.empty());
            received.insert(received.end(), buffer.bytes().begin(), buffer.bytes().end());
        }
        UCORO_CHECK_SAME_BYTES(received, std::span(payload).first(received.size()));
    }());
    // The dropped stream's request is cancelled; its final CQE frees it, and with it the
    // ring's memory and registration.
    context->run();
    CHECK(context->in_flight() == 0);
}

TEST_CASE("try_next takes the buffers already waiting, in order, without suspending") {
    auto context = ucoro_test::make_ring_context();
    if (!context || !ucoro_test::multishot_recv_or_skip(*context)) {
        return;
    }
    // 200 bytes into 16-byte buffers: 13 buffers and the end of stream, all delivered in
    // one burst because the bytes are in the socket before the request is armed.
    buffer_ring ring(*context, {.count = 32, .buffer_size = 16, .stream_queue_limit = 32});
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto payload = ucoro_test::make_pattern(200, 4242);

    std::vector<std::byte> received;
    std::size_t taken_without_waiting = 0;
    bool end_of_stream = false;
    context->block_on([&]() -> task<void> {
        std::error_code send_error;
        co_await send_and_close(pair.client, payload, send_error);
        REQUIRE_FALSE(send_error);

        auto stream = pair.server.recv_multishot(ring);
        CHECK(stream.ready() == 0);
        CHECK_FALSE(stream.try_next().has_value()); // nothing yet, and nothing armed
        for (std::size_t round = 0; round <= payload.size() && !end_of_stream; ++round) {
            auto [error, buffer] = co_await stream.next();
            REQUIRE_FALSE(error);
            if (buffer.empty()) {
                end_of_stream = true;
                break;
            }
            received.insert(received.end(), buffer.bytes().begin(), buffer.bytes().end());
            buffer.reset();
            // One turn of the loop (not a wait for data: it is all there), so that the
            // rest of the burst, dispatched after the completion that resumed us, queues.
            (void)co_await ucoro::sleep_for(*context, std::chrono::milliseconds(1));
            const std::size_t ready = stream.ready();
            std::size_t popped = 0;
            while (auto waiting = stream.try_next()) {
                ++popped;
                REQUIRE_FALSE(waiting->error);
                if (waiting->value.empty()) {
                    end_of_stream = true;
                    break;
                }
                ++taken_without_waiting;
                received.insert(received.end(), waiting->value.bytes().begin(),
                                waiting->value.bytes().end());
            }
            if (!end_of_stream) {
                CHECK(popped == ready);
            }
        }
    }());
    CHECK(end_of_stream);
    UCORO_CHECK_SAME_BYTES(received, payload);
    CHECK(taken_without_waiting > 0);
    CHECK(ring.available() == ring.count());
}
