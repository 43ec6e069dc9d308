// The accept loop's pause in-process: at --max-connections it waits on
// server_controls::accept_wake or its safety-net sleep, and a connection that closes ends
// the pause at once (the loop's own wait sees the event; nobody cancels anything in the
// loop's frame). The next client is served well before the one-second safety net.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <system_error>

#include "echo_server.hpp"
#include "support/context.hpp"
#include "support/loopback.hpp"
#include "ucoro/async_event.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::task;
using ucoro::net::socket;

/// Sends one byte and reads its echo back; false if anything else happened.
task<bool> echo_once(socket& client, std::byte value) {
    const std::byte out[1] = {value};
    auto [send_error, sent] = co_await client.send_all(out);
    if (send_error || sent != 1) {
        co_return false;
    }
    std::byte in[1] = {};
    auto [recv_error, received] = co_await client.recv(in);
    co_return !recv_error && received == 1 && in[0] == value;
}

socket connected(ucoro::io_result<socket> result) {
    if (result.error) {
        throw std::system_error(result.error, "connect");
    }
    return std::move(result.value);
}

TEST_CASE("at the connection limit, a connection that closes wakes the paused accept loop at "
          "once",
          "[echo_server][controls]") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    ucoro::net::listener listener(*context, ucoro::net::address::ipv4_loopback(0));
    ucoro::apps::connection_deadlines deadlines(*context, 0ms, 0ms);
    ucoro::async_event accept_wake(*context);
    ucoro::apps::server_controls controls;
    controls.context = context.get();
    controls.deadlines = &deadlines;
    controls.max_connections = 1;
    controls.accept_wake = &accept_wake;
    ucoro::apps::echo_server_stats stats;
    context->spawn(ucoro::apps::accept_connections(*context, listener, /*quiet=*/true, stats,
                                                   nullptr, &controls));

    std::chrono::steady_clock::duration second_waited{};
    bool first_served = false;
    bool second_served = false;
    context->block_on([&]() -> task<void> {
        auto first = connected(co_await ucoro::net::connect(*context, listener.local_address()));
        first_served = co_await echo_once(first, std::byte{1});
        // At the limit now: the second waits in the backlog, its byte unanswered, while the
        // accept loop pauses (for up to a second).
        auto second = connected(co_await ucoro::net::connect(*context, listener.local_address()));
        const auto closed_at = std::chrono::steady_clock::now();
        (void)co_await first.close();
        second_served = co_await echo_once(second, std::byte{2});
        second_waited = std::chrono::steady_clock::now() - closed_at;
        context->stop();
    }());
    CHECK(first_served);
    CHECK(second_served);
    CHECK(stats.accepted == 2);
    INFO("the second client waited "
         << std::chrono::duration_cast<std::chrono::milliseconds>(second_waited).count()
         << " ms after the first closed");
    // The safety net is a second; the wake takes a few turns of the loop.
    CHECK(second_waited < 500ms);
    context->run(); // the stop completes: every task unwinds
    CHECK(controls.live == 0);
}

} // namespace
