// datagram_stream: multishot recvmsg into a buffer ring. Many datagrams from several
// senders byte for byte with their senders, truncation and empty datagrams, the share of
// the ring and a buffer of its own when the ring is empty, and the stream's end on a
// cancel, on the socket's close and on being dropped.
//
// No co_await inside a Catch assertion: Catch2 v2's macros repeat their argument (in
// __builtin_constant_p and the do-while condition), and g++ 12 ran such a co_await three
// times (each send_to went out thrice).
#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "support/loopback.hpp"
#include "support/ring_support.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/net/datagram_stream.hpp"
#include "ucoro/net/udp_socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/when_all.hpp"
#include "ucoro/when_any.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::buffer_ring;
using ucoro::buffer_ring_options;
using ucoro::io_context;
using ucoro::task;
using ucoro::net::address;
using ucoro::net::datagram_stream;
using ucoro::net::udp_socket;

std::unique_ptr<ucoro_test::test_context> make_stream_context() {
    auto context = ucoro_test::make_ring_context();
    if (context && !ucoro_test::multishot_recv_or_skip(*context)) {
        context.reset();
    }
    return context;
}

std::vector<std::byte> copy(const ucoro::net::datagram& d) {
    const auto bytes = d.payload.bytes();
    return {bytes.begin(), bytes.end()};
}

/// The datagram sender `s` sends as its `i`th: sizes vary, contents never repeat.
std::vector<std::byte> datagram_of(std::size_t s, std::size_t i) {
    return ucoro_test::make_pattern(1 + (s * 131 + i * 37) % 900,
                                    static_cast<std::uint32_t>(s * 1000 + i + 1));
}

} // namespace

TEST_CASE("receive_from_multishot refuses a buffer_ring of another io_context with "
          "invalid_argument") {
    auto ring_context = ucoro_test::make_ring_context();
    if (!ring_context) {
        return;
    }
    auto socket_context = ucoro_test::make_context();
    REQUIRE(socket_context);
    buffer_ring ring(*ring_context, buffer_ring_options{.count = 4, .buffer_size = 2048});
    udp_socket receiver(*socket_context, address::ipv4_loopback(0));
    try {
        auto stream = receiver.receive_from_multishot(ring);
        FAIL("receive_from_multishot accepted a ring of another context");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()) == "udp_socket::receive_from_multishot: the buffer_ring "
                                       "belongs to another io_context");
    }
    CHECK(socket_context->in_flight() == 0);
    CHECK(ring.available() == ring.count());
}

TEST_CASE("datagram_stream: many datagrams from several senders, byte for byte, in order") {
    auto context = make_stream_context();
    if (!context) {
        return;
    }
    // A small ring with a small share, so the stream pauses at its share and re-arms.
    buffer_ring ring(*context, {.count = 16, .buffer_size = 1024, .stream_queue_limit = 4});
    udp_socket receiver(*context, address::ipv4_loopback(0));
    constexpr std::size_t senders = 3;
    constexpr std::size_t per_sender = 40;
    std::vector<std::unique_ptr<udp_socket>> from;
    for (std::size_t s = 0; s < senders; ++s) {
        from.push_back(std::make_unique<udp_socket>(*context, address::ipv4_loopback(0)));
    }
    std::map<std::uint16_t, std::vector<std::vector<std::byte>>> received; // by sender port
    auto stream = receiver.receive_from_multishot(ring);

    auto receive =
        [](datagram_stream& st, std::size_t count,
           std::map<std::uint16_t, std::vector<std::vector<std::byte>>>& out) -> task<void> {
        for (std::size_t n = 0; n < count; ++n) {
            auto [error, d] = co_await st.next();
            REQUIRE_FALSE(error);
            REQUIRE(d.sender.family() == AF_INET);
            out[d.sender.port()].push_back(copy(d));
        }
    };
    // Each sender waits a turn of the loop now and then, so the receiver keeps up: UDP may
    // drop what overflows the socket's receive buffer, and this test is about the stream.
    auto send = [](io_context& ctx, udp_socket& sock, std::size_t s, address to) -> task<void> {
        for (std::size_t i = 0; i < per_sender; ++i) {
            const auto bytes = datagram_of(s, i);
            auto [error, sent] = co_await sock.send_to(bytes, to);
            REQUIRE_FALSE(error);
            REQUIRE(sent == bytes.size());
            if (i % 4 == 3) {
                (void)co_await ucoro::sleep_for(ctx, 1ms);
            }
        }
    };
    context->block_on(ucoro::when_all(receive(stream, senders * per_sender, received),
                                      send(*context, *from[0], 0, receiver.local_address()),
                                      send(*context, *from[1], 1, receiver.local_address()),
                                      send(*context, *from[2], 2, receiver.local_address())));

    REQUIRE(received.size() == senders);
    for (std::size_t s = 0; s < senders; ++s) {
        INFO("sender " << s);
        const auto& got = received[from[s]->local_address().port()];
        REQUIRE(got.size() == per_sender);
        for (std::size_t i = 0; i < per_sender; ++i) {
            INFO("datagram " << i);
            const auto expected = datagram_of(s, i);
            UCORO_CHECK_SAME_BYTES(got[i], expected);
        }
    }
    CHECK(ring.available() == ring.count());
}

TEST_CASE("datagram_stream: the sender's address over ::1") {
    auto context = make_stream_context();
    if (!context) {
        return;
    }
    std::unique_ptr<udp_socket> a;
    std::unique_ptr<udp_socket> b;
    try {
        a = std::make_unique<udp_socket>(*context, address::ipv6_loopback(0));
        b = std::make_unique<udp_socket>(*context, address::ipv6_loopback(0));
    } catch (const std::system_error& e) {
        WARN("SKIPPED: IPv6 loopback unavailable: " << e.what());
        return;
    }
    buffer_ring ring(*context, {.count = 8, .buffer_size = 2048});
    auto stream = b->receive_from_multishot(ring);
    const auto bytes = ucoro_test::make_pattern(2048 - datagram_stream::overhead, 7);
    auto [error, sender, got] = context->block_on(
        [](udp_socket& from, udp_socket& to, datagram_stream& st, const std::vector<std::byte>& out)
            -> task<std::tuple<std::error_code, address, std::vector<std::byte>>> {
            auto [send_error, sent] = co_await from.send_to(out, to.local_address());
            REQUIRE_FALSE(send_error);
            auto [e, d] = co_await st.next();
            co_return std::tuple{e, d.sender, copy(d)};
        }(*a, *b, stream, bytes));
    CHECK_FALSE(error);
    CHECK(sender == a->local_address());
    CHECK(sender.family() == AF_INET6);
    UCORO_CHECK_SAME_BYTES(got, bytes); // exactly a buffer's room: not truncated
}

TEST_CASE("datagram_stream: a truncated datagram is message_size, an empty one is a datagram") {
    auto context = make_stream_context();
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 8, .buffer_size = 128});
    udp_socket a(*context, address::ipv4_loopback(0));
    udp_socket b(*context, address::ipv4_loopback(0));
    auto stream = b.receive_from_multishot(ring);
    const std::size_t room = 128 - datagram_stream::overhead;
    const auto big = ucoro_test::make_pattern(room + 50, 8);
    const auto after = ucoro_test::to_bytes("after");
    context->block_on([](udp_socket& from, udp_socket& to, datagram_stream& st,
                         const std::vector<std::byte>& long_one, const std::vector<std::byte>& last,
                         std::size_t fits) -> task<void> {
        {
            auto [send_error, sent_size] = co_await from.send_to(long_one, to.local_address());
            REQUIRE_FALSE(send_error);
        }
        {
            auto [send_error, sent_size] = co_await from.send_to({}, to.local_address());
            REQUIRE_FALSE(send_error);
        }
        {
            auto [send_error, sent_size] = co_await from.send_to(last, to.local_address());
            REQUIRE_FALSE(send_error);
        }

        auto [cut_error, cut] = co_await st.next();
        CHECK(cut_error == std::errc::message_size);
        CHECK(cut.full_size == long_one.size());
        CHECK(cut.sender == from.local_address());
        UCORO_CHECK_SAME_BYTES(cut.payload.bytes(), std::span(long_one).first(fits));

        auto [empty_error, empty] = co_await st.next();
        CHECK_FALSE(empty_error);
        CHECK(empty.payload.empty());
        CHECK(empty.full_size == 0);
        CHECK(empty.sender == from.local_address());

        auto [next_error, next] = co_await st.next();
        CHECK_FALSE(next_error);
        UCORO_CHECK_SAME_BYTES(next.payload.bytes(), last);
    }(a, b, stream, big, after, room));
}

TEST_CASE("datagram_stream: when the ring is empty, another stream receives into its own buffer") {
    auto context = make_stream_context();
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 2, .buffer_size = 256, .stream_queue_limit = 2});
    udp_socket sender(*context, address::ipv4_loopback(0));
    udp_socket hog(*context, address::ipv4_loopback(0));
    udp_socket other(*context, address::ipv4_loopback(0));
    auto hog_stream = hog.receive_from_multishot(ring);
    auto other_stream = other.receive_from_multishot(ring);
    const auto first = ucoro_test::to_bytes("first");
    const auto second = ucoro_test::to_bytes("second");
    const auto third = ucoro_test::to_bytes("to the other stream");
    context->block_on([](udp_socket& from, udp_socket& greedy, udp_socket& fair,
                         datagram_stream& hs, datagram_stream& os, buffer_ring& r,
                         const std::vector<std::byte>& one, const std::vector<std::byte>& two,
                         const std::vector<std::byte>& three) -> task<void> {
        // The greedy one takes both ring buffers and keeps them.
        {
            auto [send_error, sent_size] = co_await from.send_to(one, greedy.local_address());
            REQUIRE_FALSE(send_error);
        }
        {
            auto [send_error, sent_size] = co_await from.send_to(two, greedy.local_address());
            REQUIRE_FALSE(send_error);
        }
        auto [e1, d1] = co_await hs.next();
        auto [e2, d2] = co_await hs.next();
        REQUIRE_FALSE(e1);
        REQUIRE_FALSE(e2);
        UCORO_CHECK_SAME_BYTES(d1.payload.bytes(), one);
        UCORO_CHECK_SAME_BYTES(d2.payload.bytes(), two);
        CHECK(r.available() == 0);

        // At its whole share, the greedy one waiting for more is told at once.
        auto [e3, d3] = co_await hs.next();
        CHECK(e3 == std::errc::no_buffer_space);

        // The second stream is not left waiting for it.
        {
            auto [send_error, sent_size] = co_await from.send_to(three, fair.local_address());
            REQUIRE_FALSE(send_error);
        }
        auto [e4, d4] = co_await os.next();
        REQUIRE_FALSE(e4);
        CHECK(d4.sender == from.local_address());
        UCORO_CHECK_SAME_BYTES(d4.payload.bytes(), three);
        CHECK(r.private_receives() == 1);
    }(sender, hog, other, hog_stream, other_stream, ring, first, second, third));
    CHECK(ring.available() == ring.count());
}

TEST_CASE("datagram_stream: a cancelled wait keeps the request, and closing the socket ends it") {
    auto context = make_stream_context();
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 8, .buffer_size = 256});
    udp_socket a(*context, address::ipv4_loopback(0));
    udp_socket b(*context, address::ipv4_loopback(0));
    auto stream = b.receive_from_multishot(ring);
    const auto bytes = ucoro_test::to_bytes("after the cancel");
    context->block_on([](io_context& ctx, udp_socket& from, udp_socket& to, datagram_stream& st,
                         const std::vector<std::byte>& sent) -> task<void> {
        std::error_code loser;
        auto wait = [](datagram_stream& s, std::error_code& out) -> task<int> {
            auto [error, d] = co_await s.next();
            out = error;
            co_return 1;
        };
        auto timer = [](io_context& c) -> task<int> {
            (void)co_await ucoro::sleep_for(c, 1ms);
            co_return 2;
        };
        auto result = co_await ucoro::when_any(wait(st, loser), timer(ctx));
        CHECK(result.index == 1);
        CHECK(loser == std::errc::operation_canceled);
        CHECK(st.state() == ucoro::detail::multishot_state::armed); // partial: still receiving

        {
            auto [send_error, sent_size] = co_await from.send_to(sent, to.local_address());
            REQUIRE_FALSE(send_error);
        }
        auto [error, d] = co_await st.next();
        REQUIRE_FALSE(error);
        UCORO_CHECK_SAME_BYTES(d.payload.bytes(), sent);

        // A close while the coroutine waits ends the wait, and every later one at once.
        std::error_code closed;
        auto close_soon = [](io_context& c, udp_socket& s) -> task<void> {
            (void)co_await ucoro::sleep_for(c, 1ms);
            const std::error_code close_error = co_await s.close();
            CHECK_FALSE(close_error);
        };
        co_await ucoro::when_all(wait(st, closed), close_soon(ctx, to));
        CHECK(closed == std::errc::operation_canceled);
        auto [again, nothing] = co_await st.next();
        CHECK(again == std::errc::operation_canceled);
    }(*context, a, b, stream, bytes));
    CHECK(context->in_flight() == 0);
    CHECK(ring.available() == ring.count());
}

TEST_CASE("datagram_stream: dropped while armed, with datagrams queued, every buffer comes back") {
    auto context = make_stream_context();
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 8, .buffer_size = 256});
    udp_socket a(*context, address::ipv4_loopback(0));
    udp_socket b(*context, address::ipv4_loopback(0));
    {
        auto stream = b.receive_from_multishot(ring);
        context->block_on([](udp_socket& from, udp_socket& to, datagram_stream& st) -> task<void> {
            const auto bytes = ucoro_test::to_bytes("queued, never read");
            for (int i = 0; i < 3; ++i) {
                {
                    auto [send_error, sent_size] = co_await from.send_to(bytes, to.local_address());
                    REQUIRE_FALSE(send_error);
                }
            }
            auto [error, d] = co_await st.next(); // one taken and given back, the rest queued
            REQUIRE_FALSE(error);
        }(a, b, stream));
        CHECK(stream.state() == ucoro::detail::multishot_state::armed);
    }
    context->block_on([](io_context& ctx) -> task<void> {
        (void)co_await ucoro::sleep_for(ctx, 1ms); // the dropped request's final CQE
    }(*context));
    CHECK(context->in_flight() == 0);
    CHECK(ring.available() == ring.count());
}

TEST_CASE("datagram_stream: without multishot receive next() is operation_not_supported") {
    ucoro::io_context_options options;
    options.multishot_recv = false;
    auto context = ucoro_test::make_ring_context(options);
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 2, .buffer_size = 256});
    udp_socket b(*context, address::ipv4_loopback(0));
    auto stream = b.receive_from_multishot(ring);
    auto error = context->block_on([](datagram_stream& st) -> task<std::error_code> {
        auto [e, d] = co_await st.next();
        co_return e;
    }(stream));
    CHECK(error == std::errc::operation_not_supported);
}

TEST_CASE("datagram_stream: ring buffers with no room past the header are refused") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    buffer_ring ring(*context, {.count = 2, .buffer_size = datagram_stream::overhead});
    udp_socket b(*context, address::ipv4_loopback(0));
    CHECK_THROWS_AS(b.receive_from_multishot(ring), std::invalid_argument);
}
