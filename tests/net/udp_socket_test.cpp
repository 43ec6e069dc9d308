// udp_socket: send_to and receive_from over loopback, byte for byte, with the sender's
// address; truncation and empty datagrams; cancellation by with_timeout and when_any.
#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "support/loopback.hpp"
#include "ucoro/net/udp_socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/timeout.hpp"
#include "ucoro/when_any.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro::net::address;
using ucoro::net::datagram_info;
using ucoro::net::udp_socket;

/// Sends `bytes` from `from` to `to`, receives it there into a buffer of `capacity` bytes.
struct exchange_result {
    std::error_code send_error;
    std::size_t sent = 0;
    std::error_code receive_error;
    datagram_info info;
    std::vector<std::byte> received;
};

task<exchange_result> exchange(udp_socket& from, udp_socket& to, std::vector<std::byte> bytes,
                               std::size_t capacity) {
    exchange_result r;
    auto [send_error, sent] = co_await from.send_to(bytes, to.local_address());
    r.send_error = send_error;
    r.sent = sent;
    std::vector<std::byte> buffer(capacity);
    auto [receive_error, info] = co_await to.receive_from(buffer);
    r.receive_error = receive_error;
    r.info = info;
    buffer.resize(info.size);
    r.received = std::move(buffer);
    co_return r;
}

void check_both_ways(io_context& context, udp_socket& a, udp_socket& b) {
    const auto ping = ucoro_test::make_pattern(1200, 1);
    const auto pong = ucoro_test::make_pattern(777, 2);
    auto there = context.block_on(exchange(a, b, ping, 2048));
    CHECK_FALSE(there.send_error);
    CHECK(there.sent == ping.size());
    CHECK_FALSE(there.receive_error);
    CHECK(there.info.full_size == ping.size());
    CHECK(there.info.sender == a.local_address());
    UCORO_CHECK_SAME_BYTES(there.received, ping);

    auto back = context.block_on(exchange(b, a, pong, 2048));
    CHECK_FALSE(back.send_error);
    CHECK(back.sent == pong.size());
    CHECK_FALSE(back.receive_error);
    CHECK(back.info.sender == b.local_address());
    UCORO_CHECK_SAME_BYTES(back.received, pong);
}

} // namespace

TEST_CASE("udp_socket binds to port 0 and reads back the port the kernel chose") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    udp_socket sock(*context, address::ipv4_loopback(0));
    CHECK(sock.is_open());
    CHECK(sock.local_address().family() == AF_INET);
    CHECK(sock.local_address().host() == "127.0.0.1");
    CHECK(sock.local_address().port() != 0);
    CHECK(ucoro_test::get_int_option(sock.native_handle(), SOL_SOCKET, SO_TYPE) == SOCK_DGRAM);
}

TEST_CASE("udp_socket: a port already bound is a system_error naming bind and the address") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    udp_socket first(*context, address::ipv4_loopback(0));
    try {
        udp_socket second(*context, first.local_address());
        FAIL("the second bind succeeded");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::address_in_use);
        CHECK(std::string(e.what()).find("bind " + first.local_address().to_string()) !=
              std::string::npos);
    }
}

TEST_CASE("udp_socket: datagrams both ways over 127.0.0.1, byte for byte, sender named") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    udp_socket a(*context, address::ipv4_loopback(0));
    udp_socket b(*context, address::ipv4_loopback(0));
    check_both_ways(*context, a, b);
}

TEST_CASE("udp_socket: datagrams both ways over ::1, byte for byte, sender named") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    std::unique_ptr<udp_socket> a;
    std::unique_ptr<udp_socket> b;
    try {
        a = std::make_unique<udp_socket>(*context, address::ipv6_loopback(0));
        b = std::make_unique<udp_socket>(*context, address::ipv6_loopback(0));
    } catch (const std::system_error& e) {
        // No IPv6 in this network namespace (EAFNOSUPPORT) or no ::1 on lo (EADDRNOTAVAIL).
        WARN("SKIPPED: IPv6 loopback unavailable: " << e.what());
        return;
    }
    CHECK(a->local_address().family() == AF_INET6);
    CHECK(a->local_address().host() == "::1");
    check_both_ways(*context, *a, *b);
}

TEST_CASE("udp_socket: a datagram longer than the buffer is reported as message_size") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    udp_socket a(*context, address::ipv4_loopback(0));
    udp_socket b(*context, address::ipv4_loopback(0));
    const auto bytes = ucoro_test::make_pattern(100, 3);
    auto r = context->block_on(exchange(a, b, bytes, 10));
    CHECK_FALSE(r.send_error);
    CHECK(r.receive_error == std::errc::message_size);
    CHECK(r.info.size == 10);
    CHECK(r.info.full_size == 100);
    CHECK(r.info.sender == a.local_address());
    UCORO_CHECK_SAME_BYTES(r.received, std::span(bytes).first(10));

    // The rest of that datagram is gone, not read as the next one.
    const auto next = ucoro_test::make_pattern(5, 4);
    auto after = context->block_on(exchange(a, b, next, 64));
    CHECK_FALSE(after.receive_error);
    UCORO_CHECK_SAME_BYTES(after.received, next);
}

TEST_CASE("udp_socket: an empty datagram is sent and received as one, with its sender") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    udp_socket a(*context, address::ipv4_loopback(0));
    udp_socket b(*context, address::ipv4_loopback(0));
    auto r = context->block_on(exchange(a, b, {}, 64));
    CHECK_FALSE(r.send_error);
    CHECK(r.sent == 0);
    CHECK_FALSE(r.receive_error);
    CHECK(r.info.size == 0);
    CHECK(r.info.full_size == 0);
    CHECK(r.info.sender == a.local_address());
}

TEST_CASE("udp_socket: with_timeout ends a receive_from that gets nothing") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    udp_socket sock(*context, address::ipv4_loopback(0));
    auto error = context->block_on([](udp_socket& s) -> task<std::error_code> {
        std::vector<std::byte> buffer(64);
        auto [e, info] = co_await ucoro::with_timeout(s.receive_from(buffer), 20ms);
        co_return e;
    }(sock));
    CHECK(error == std::errc::timed_out);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("udp_socket: a receive_from that loses a when_any is cancelled, the next one works") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    udp_socket a(*context, address::ipv4_loopback(0));
    udp_socket b(*context, address::ipv4_loopback(0));
    std::error_code loser;
    auto winner = context->block_on(
        [](io_context& ctx, udp_socket& s, std::error_code& out) -> task<std::size_t> {
            auto receive = [](udp_socket& sock, std::error_code& e) -> task<int> {
                std::vector<std::byte> buffer(64);
                auto [error, info] = co_await sock.receive_from(buffer);
                e = error;
                co_return 1;
            };
            auto timer = [](io_context& c) -> task<int> {
                (void)co_await ucoro::sleep_for(c, 1ms);
                co_return 2;
            };
            auto result = co_await ucoro::when_any(receive(s, out), timer(ctx));
            co_return result.index;
        }(*context, b, loser));
    CHECK(winner == 1);
    CHECK(loser == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
    const auto bytes = ucoro_test::to_bytes("after the cancel");
    auto r = context->block_on(exchange(a, b, bytes, 64));
    CHECK_FALSE(r.receive_error);
    UCORO_CHECK_SAME_BYTES(r.received, bytes);
}

TEST_CASE("udp_socket: a default-constructed socket reports bad_file_descriptor") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    udp_socket none;
    CHECK_FALSE(none.is_open());
    auto [send_error, receive_error] =
        context->block_on([](udp_socket& s) -> task<std::pair<std::error_code, std::error_code>> {
            std::vector<std::byte> buffer(8);
            auto [se, sent] = co_await s.send_to(buffer, address::ipv4_loopback(9));
            auto [re, info] = co_await s.receive_from(buffer);
            co_return std::pair{se, re};
        }(none));
    CHECK(send_error == std::errc::bad_file_descriptor);
    CHECK(receive_error == std::errc::bad_file_descriptor);
}
