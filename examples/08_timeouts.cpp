// 08_timeouts: a deadline on one operation, and the first of several to finish.
//
// Shows: with_timeout() putting a recv and an IORING_OP_LINK_TIMEOUT into the ring as one
// link, so the kernel itself cancels the recv when the deadline passes (timed_out), or
// cancels the timer when the bytes come first; when_any() racing a recv against a sleep,
// cancelling the loser and waiting until it has completed before it returns; when_all()
// running tasks side by side and returning every result.
// Tutorial: docs/tutorial/08_timeouts.md
// Needs: Linux >= 5.11.
// Try: build/debug/bin/08_timeouts
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <span>
#include <string_view>
#include <system_error>
#include <tuple>

namespace {

using namespace std::chrono_literals;

std::span<const std::byte> as_bytes(std::string_view text) {
    return std::as_bytes(std::span(text.data(), text.size()));
}

std::string_view as_text(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// ANCHOR: silent_peer
// The lesson's server would wait forever for a client that never speaks. One deadline on
// the recv is enough: the kernel cancels it when the timer fires.
ucoro::task<void> recv_from_a_silent_peer(ucoro::net::socket& connection) {
    std::array<std::byte, 1024> buffer;
    auto [error, n] = co_await ucoro::with_timeout(connection.recv(buffer), 200ms);
    if (error == std::errc::timed_out) {
        fmt::print("silent peer: the recv timed out ({})\n", error.message());
    } else {
        fmt::print("silent peer: unexpected: {} bytes, {}\n", n, error.message());
    }
}
// ANCHOR_END: silent_peer

// ANCHOR: prompt_peer
// A peer that answers in time: the bytes win, and the timer is the one cancelled.
ucoro::task<void> answer_soon(ucoro::io_context& context, ucoro::net::socket& client) {
    (void)co_await ucoro::sleep_for(context, 20ms);
    auto [error, sent] = co_await client.send_all(as_bytes("hello"));
    (void)sent;
    if (error) {
        fmt::print("prompt peer: send failed: {}\n", error.message());
    }
}

ucoro::task<void> recv_from_a_prompt_peer(ucoro::net::socket& connection) {
    std::array<std::byte, 1024> buffer;
    auto [error, n] = co_await ucoro::with_timeout(connection.recv(buffer), 5s);
    if (error) {
        fmt::print("prompt peer: unexpected: {}\n", error.message());
    } else {
        fmt::print("prompt peer: received \"{}\" before the deadline\n",
                   as_text(std::span(buffer).first(n)));
    }
}
// ANCHOR_END: prompt_peer

// ANCHOR: when_any
// Two ways to finish: the peer speaks, or we stop waiting. Whichever comes first wins; the
// other is cancelled and has completed (its CQE seen) before when_any returns.
ucoro::task<std::size_t> read_something(ucoro::net::socket& connection) {
    std::array<std::byte, 1024> buffer;
    auto [error, n] = co_await connection.recv(buffer);
    fmt::print("  the recv ended: {}\n", error ? error.message() : "bytes came");
    co_return n;
}

ucoro::task<void> give_up_after(ucoro::io_context& context, std::chrono::milliseconds delay) {
    const std::error_code error = co_await ucoro::sleep_for(context, delay);
    fmt::print("  the sleep ended: {}\n", error ? error.message() : "time is up");
}

ucoro::task<void> first_of_two(ucoro::io_context& context, ucoro::net::socket& connection) {
    auto [index, value] =
        co_await ucoro::when_any(read_something(connection), give_up_after(context, 100ms));
    (void)value;
    fmt::print("when_any returned: task {} won ({})\n", index,
               index == 0 ? "the recv" : "the sleep");
}
// ANCHOR_END: when_any

// ANCHOR: when_all
ucoro::task<int> slow_answer(ucoro::io_context& context, int answer,
                             std::chrono::milliseconds delay) {
    (void)co_await ucoro::sleep_for(context, delay);
    co_return answer;
}

ucoro::task<void> both_of_two(ucoro::io_context& context) {
    // The two sleeps are in the ring at the same time: together they take 150 ms, not 300.
    auto [a, b] =
        co_await ucoro::when_all(slow_answer(context, 6, 150ms), slow_answer(context, 7, 150ms));
    fmt::print("when_all returned {} and {}\n", a, b);
}
// ANCHOR_END: when_all

ucoro::task<ucoro::io_result<ucoro::net::socket>> connect_to(ucoro::io_context& context,
                                                             ucoro::net::address server) {
    co_return co_await ucoro::net::connect(context, server);
}

ucoro::task<ucoro::io_result<ucoro::net::socket>> accept_one(ucoro::net::listener& listener) {
    co_return co_await listener.accept();
}

} // namespace

// ANCHOR: main
int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        ucoro::io_context context;
        ucoro::net::listener listener(context, ucoro::net::address::ipv4_loopback(0));
        auto [connect_error, client] =
            context.block_on(connect_to(context, listener.local_address()));
        auto [accept_error, server_side] = context.block_on(accept_one(listener));
        if (connect_error || accept_error) {
            fmt::print(stderr, "could not set up the connection\n");
            return 1;
        }

        context.block_on(recv_from_a_silent_peer(server_side));

        context.spawn(answer_soon(context, client));
        context.block_on(recv_from_a_prompt_peer(server_side));

        context.block_on(first_of_two(context, server_side));
        context.block_on(both_of_two(context));
        fmt::print("{} operations in flight at the end\n", context.in_flight());
    } catch (const std::system_error& e) {
        fmt::print(stderr, "08_timeouts: {}\n", e.what());
        return 1;
    }
}
// ANCHOR_END: main
