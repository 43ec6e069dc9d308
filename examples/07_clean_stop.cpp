// 07_clean_stop: Ctrl+C as an event of the loop, and a clean stop with work in flight.
//
// Shows: signal_set turning SIGINT and SIGTERM into something a coroutine awaits (a
// signalfd polled through the ring), so the handler is ordinary code that may call
// anything; io_context::stop() cancelling every operation still in the kernel (an accept
// with nobody connecting, a recv on a connection where nobody speaks, a one-hour sleep);
// each coroutine seeing operation_canceled and leaving through its ordinary error path,
// closing its socket on the way; run() returning once the ring is empty.
// Tutorial: docs/tutorial/07_ctrl_c.md
// Needs: Linux >= 5.11.
// Try: build/debug/bin/07_clean_stop   then press Ctrl+C (or: kill -INT <the pid it prints>)
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <system_error>

namespace {

using namespace std::chrono_literals;

// ANCHOR: watch_signals
// The lesson's `except KeyboardInterrupt:`, as a coroutine that waits for the signal.
ucoro::task<void> watch_signals(ucoro::io_context& context, ucoro::signal_set& signals) {
    auto [error, signal_number] = co_await signals.wait();
    if (!error) {
        fmt::print("caught {}, stopping with {} operations in flight\n",
                   signal_number == SIGINT ? "SIGINT" : "SIGTERM", context.in_flight());
    }
    context.stop(); // cancels everything in flight; the coroutines unwind by themselves
}
// ANCHOR_END: watch_signals

// ANCHOR: waiters
ucoro::task<void> wait_for_a_client(ucoro::net::listener& listener) {
    auto [error, connection] = co_await listener.accept(); // nobody will connect
    fmt::print("accept ended: {}\n", error ? error.message() : "a client came");
}

ucoro::task<void> wait_for_bytes(ucoro::net::socket connection) {
    std::array<std::byte, 1024> buffer;
    auto [error, n] = co_await connection.recv(buffer); // the peer never speaks
    fmt::print("recv ended: {}\n", error ? error.message() : "bytes came");
    auto close_error = co_await connection.close(); // the ordinary way out, even now
    fmt::print("socket closed: {}\n", close_error ? close_error.message() : "ok");
}

ucoro::task<void> nap(ucoro::io_context& context) {
    const std::error_code error = co_await ucoro::sleep_for(context, 1h);
    fmt::print("sleep ended: {}\n", error ? error.message() : "an hour went by");
}
// ANCHOR_END: waiters

// Runs after the others have queued their requests, in the same turn of the loop.
ucoro::task<void> announce(ucoro::io_context& context) {
    fmt::print("{} operations waiting; press Ctrl+C (or kill -INT {})\n", context.in_flight(),
               ::getpid());
    co_return;
}

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
        // First, before any thread exists: the signals are blocked and read from a signalfd.
        ucoro::signal_set signals(context, {SIGINT, SIGTERM});

        // A connection where neither side will speak, and a listener nobody else knows.
        ucoro::net::listener listener(context, ucoro::net::address::ipv4_loopback(0));
        auto [connect_error, client] =
            context.block_on(connect_to(context, listener.local_address()));
        auto [accept_error, server_side] = context.block_on(accept_one(listener));
        if (connect_error || accept_error) {
            fmt::print(stderr, "could not set up the idle connection\n");
            return 1;
        }

        context.spawn(watch_signals(context, signals));
        context.spawn(wait_for_a_client(listener));
        context.spawn(wait_for_bytes(std::move(server_side)));
        context.spawn(nap(context));
        context.spawn(announce(context));
        context.run();
        fmt::print("run() returned with {} operations in flight\n", context.in_flight());
    } catch (const std::system_error& e) {
        fmt::print(stderr, "07_clean_stop: {}\n", e.what());
        return 1;
    }
}
// ANCHOR_END: main
