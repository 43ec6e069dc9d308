// buffer_ring: registration, group ids, bad sizes, the switch that turns it off, and
// buffers going back to the ring when their handles go.
#include <catch2/catch.hpp>

#include <cerrno>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "support/loopback.hpp"
#include "support/ring_support.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

using ucoro::buffer_ring;
using ucoro::buffer_ring_options;
using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;

TEST_CASE("a new buffer_ring has every buffer in the ring and a group id of its own") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    buffer_ring defaults(*context);
    CHECK(defaults.count() == 1024);
    CHECK(defaults.buffer_size() == 4096);
    CHECK(defaults.stream_queue_limit() == 16);
    CHECK(defaults.available() == defaults.count());
    CHECK(defaults.enobufs_rearms() == 0);

    buffer_ring small(*context, {.count = 2, .buffer_size = 100});
    CHECK(small.count() == 2);
    CHECK(small.buffer_size() == 100);
    CHECK(small.group() != defaults.group());

    // A group id freed by a destroyed ring can be taken again, and is not any live ring's.
    const auto freed = [&] {
        buffer_ring temporary(*context, {.count = 4, .buffer_size = 64});
        CHECK(temporary.group() != defaults.group());
        CHECK(temporary.group() != small.group());
        return temporary.group();
    }();
    buffer_ring again(*context, {.count = 4, .buffer_size = 64});
    CHECK(again.group() == freed);
}

TEST_CASE("buffer_ring rejects a count that is not a power of two up to 32768, empty buffers "
          "or a stream queue limit of 0") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    for (unsigned count : {0u, 3u, 1000u, 65536u}) {
        INFO("count " << count);
        CHECK_THROWS_AS(buffer_ring(*context, {.count = count, .buffer_size = 64}),
                        std::invalid_argument);
    }
    CHECK_THROWS_AS(buffer_ring(*context, {.count = 8, .buffer_size = 0}), std::invalid_argument);
    CHECK_THROWS_AS(buffer_ring(*context, {.count = 8, .buffer_size = 64, .stream_queue_limit = 0}),
                    std::invalid_argument);
    // The limits themselves are accepted.
    CHECK_NOTHROW(buffer_ring(*context, {.count = 1, .buffer_size = 1}));
    CHECK_NOTHROW(buffer_ring(*context, {.count = 32768, .buffer_size = 16}));
}

TEST_CASE("with buffer rings switched off, buffer_ring says unsupported and throws naming why") {
    ucoro::io_context_options options;
    options.buffer_rings = false;
    auto context = ucoro_test::make_context(options);
    if (!context) {
        return;
    }
    CHECK_FALSE(buffer_ring::is_supported(*context));
    CHECK_FALSE(context->features().multishot_recv);
    try {
        buffer_ring ring(*context);
        FAIL("buffer_ring was created without kernel support");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::function_not_supported);
        CHECK_THAT(e.what(), Catch::Contains("Linux 5.19"));
    }
}

TEST_CASE(
    "a received buffer goes back to the ring when its handle is reset, moved over or destroyed") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 4, .buffer_size = 8});
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto message = ucoro_test::to_bytes("0123456789abcdefghijklmnopqrstuv"); // 4 x 8 bytes

    context->block_on([&]() -> task<void> {
        auto [send_error, sent] = co_await pair.client.send_all(message);
        REQUIRE_FALSE(send_error);
        REQUIRE(sent == message.size());

        auto stream = pair.server.recv_multishot(ring);
        std::vector<std::byte> received;
        buffer_ring::buffer kept;
        while (received.size() < message.size()) {
            auto [error, buffer] = co_await stream.next();
            REQUIRE_FALSE(error);
            REQUIRE_FALSE(buffer.empty());
            CHECK(buffer.size() <= ring.buffer_size());
            received.insert(received.end(), buffer.bytes().begin(), buffer.bytes().end());
            if (received.size() == ring.buffer_size()) {
                kept = std::move(buffer); // the first one outlives its loop iteration
                CHECK(buffer.empty());
            }
        }
        UCORO_CHECK_SAME_BYTES(received, message);
        // Every buffer but the kept one is back in the ring (the others were destroyed).
        CHECK(ring.available() == ring.count() - 1);
        CHECK(kept.size() == ring.buffer_size());

        buffer_ring::buffer other;
        other = std::move(kept);
        CHECK(ring.available() == ring.count() - 1);
        other.reset();
        CHECK(other.empty());
        CHECK(ring.available() == ring.count());
        other.reset(); // a second reset gives nothing back twice
        CHECK(ring.available() == ring.count());
    }());
}
