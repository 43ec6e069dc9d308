// No heap allocation per message on the fast path: a ring-based echo over loopback, with
// the global operator new replaced in this test program only, to count every allocation.
#include <sys/uio.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <span>
#include <system_error>

#include "echo_server.hpp"
#include "support/counting_new.hpp"
#include "support/loopback.hpp"
#include "support/ring_support.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

namespace {

int* volatile g_escape = nullptr;

} // namespace

namespace {

constexpr std::size_t max_message_size = 16 * 1024;

/// The server's side: every buffer received is sent back before it goes back to the ring.
/// Batched, as the echo server's fast path: the buffers already waiting in the stream go
/// with the first in one gather send; `gathers` counts the sends that took more than one.
ucoro::task<void> echo(ucoro::net::socket& connection, ucoro::buffer_ring& ring, bool batched,
                       std::size_t& gathers) {
    constexpr std::size_t max_batch = 16;
    std::array<ucoro::buffer_ring::buffer, max_batch> held;
    std::array<iovec, max_batch> pieces;
    auto stream = connection.recv_multishot(ring);
    while (true) {
        auto [error, buffer] = co_await stream.next();
        if (error || buffer.empty()) {
            break;
        }
        std::size_t count = 0;
        held[count++] = std::move(buffer);
        bool ended = false;
        while (batched && count < max_batch) {
            auto waiting = stream.try_next();
            if (!waiting) {
                break;
            }
            if (waiting->error || waiting->value.empty()) {
                ended = true;
                break;
            }
            held[count++] = std::move(waiting->value);
        }
        std::error_code send_error;
        if (count == 1) {
            auto [e, sent] = co_await connection.send_all(held[0].bytes());
            send_error = e;
        } else {
            ++gathers;
            for (std::size_t i = 0; i < count; ++i) {
                pieces[i] = {held[i].bytes().data(), held[i].size()};
            }
            auto [e, sent] = co_await connection.send_all_gather(std::span(pieces).first(count));
            send_error = e;
        }
        for (std::size_t i = 0; i < count; ++i) {
            held[i].reset();
        }
        if (send_error || ended) {
            break;
        }
    }
}

struct client_result {
    std::size_t allocations = 0;
    std::size_t mismatches = 0;
    std::error_code error;
};

/// Sends `rounds` messages one at a time and reads each echo back; counts allocations over
/// the last `counted` rounds only, once every buffer and queue has reached its size.
ucoro::task<void> ping(ucoro::net::socket& connection, std::size_t message_size, std::size_t rounds,
                       std::size_t counted, client_result& result) {
    std::array<std::byte, max_message_size> message_storage{};
    std::array<std::byte, max_message_size> reply_storage{};
    const auto message = std::span(message_storage).first(message_size);
    const auto reply = std::span(reply_storage).first(message_size);
    for (std::size_t round = 0; round < rounds && !result.error; ++round) {
        g_counting = round >= rounds - counted;
        for (std::size_t i = 0; i < message_size; ++i) {
            message[i] = static_cast<std::byte>(round * 31 + i);
        }
        auto [send_error, sent] = co_await connection.send_all(message);
        if (send_error) {
            result.error = send_error;
            break;
        }
        std::size_t received = 0;
        while (received < message_size) {
            auto [error, n] = co_await connection.recv(reply.subspan(received));
            if (error || n == 0) {
                result.error = error ? error : std::make_error_code(std::errc::connection_reset);
                break;
            }
            received += n;
        }
        if (!std::equal(message.begin(), message.end(), reply.begin())) {
            ++result.mismatches;
        }
    }
    g_counting = false;
    result.allocations = g_allocations;
    (void)co_await connection.close();
}

} // namespace

TEST_CASE("a ring-based echo allocates nothing per message in steady state") {
    auto context = ucoro_test::make_ring_context();
    if (!context || !ucoro_test::multishot_recv_or_skip(*context)) {
        return;
    }
    ucoro::buffer_ring ring(*context, {.count = 64, .buffer_size = 4096});
    ucoro::net::listener server(*context, ucoro::net::address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));

    // The replacement is the one in use: a counted allocation shows up.
    g_allocations = 0;
    g_counting = true;
    g_escape = new int(1); // through a volatile, so the compiler cannot elide the pair
    delete g_escape;
    g_counting = false;
    REQUIRE(g_allocations == 1);

    constexpr std::size_t warm_up = 1000;
    constexpr std::size_t counted = 10000;
    client_result result;
    g_allocations = 0;
    std::size_t gathers = 0;
    context->spawn(echo(pair.server, ring, /*batched=*/false, gathers));
    context->spawn(ping(pair.client, 64, warm_up + counted, counted, result));
    context->run();

    CHECK_FALSE(result.error);
    CHECK(result.mismatches == 0);
    CHECK(result.allocations == 0);
    CHECK(ring.available() == ring.count());
}

TEST_CASE("a batched ring-based echo (gather sends) allocates nothing per message") {
    auto context = ucoro_test::make_ring_context();
    if (!context || !ucoro_test::multishot_recv_or_skip(*context)) {
        return;
    }
    // 16 KiB messages into 4 KiB buffers: each message arrives as several buffers, and
    // those that wait while an echo is in flight go back in one gather send.
    ucoro::buffer_ring ring(*context, {.count = 64, .buffer_size = 4096});
    ucoro::net::listener server(*context, ucoro::net::address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));

    // As the echo server does: an echo sent in two parts must not wait for the peer's
    // delayed ACK (Nagle), which would cost 40 ms a message.
    pair.server.set_no_delay();

    constexpr std::size_t warm_up = 1000;
    constexpr std::size_t counted = 10000;
    client_result result;
    g_allocations = 0;
    std::size_t gathers = 0;
    context->spawn(echo(pair.server, ring, /*batched=*/true, gathers));
    context->spawn(ping(pair.client, max_message_size, warm_up + counted, counted, result));
    context->run();

    CHECK_FALSE(result.error);
    CHECK(result.mismatches == 0);
    CHECK(result.allocations == 0);
    INFO(gathers << " gather sends over " << warm_up + counted << " messages");
    CHECK(gathers > 0); // the batched path was really taken
    CHECK(ring.available() == ring.count());
}

TEST_CASE("the echo server's fast path, with its pooled gather sends, allocates nothing per "
          "message") {
    auto context = ucoro_test::make_ring_context();
    if (!context || !ucoro_test::multishot_recv_or_skip(*context)) {
        return;
    }
    // The server's own connection coroutine: 16 KiB messages into 4 KiB buffers, so that
    // batches borrow a slot from its pool (allocated once, during the warm-up).
    ucoro::buffer_ring ring(*context, {.count = 64, .buffer_size = 4096});
    ucoro::net::listener server(*context, ucoro::net::address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    pair.server.set_no_delay(); // as the server's accept loop does

    constexpr std::size_t warm_up = 1000;
    constexpr std::size_t counted = 10000;
    client_result result;
    g_allocations = 0;
    ucoro::apps::echo_server_stats stats;
    context->spawn(
        ucoro::apps::echo_connection(std::move(pair.server), /*quiet=*/true, stats, &ring));
    context->spawn(ping(pair.client, max_message_size, warm_up + counted, counted, result));
    context->run();

    CHECK_FALSE(result.error);
    CHECK(result.mismatches == 0);
    CHECK(result.allocations == 0);
    CHECK(stats.closed == 1);
    CHECK(ring.available() == ring.count());
}
