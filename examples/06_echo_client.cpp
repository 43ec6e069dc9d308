// 06_echo_client: the lesson's multi-connection client, as coroutines.
//
// Shows: net::connect as an awaitable; NUM_CONNECTIONS connections running at once, each
// one straight-line coroutine (connect, send both messages, read back as many bytes as it
// sent, close) instead of the lesson's start_connections() and service_connection()
// callbacks; counting bytes rather than messages, because TCP may merge or split them;
// the task_handle that spawn returns: the client waits for its connections with join(),
// and a watchdog gives up on a silent server by cancelling them (cancel()), which reaches
// the one operation each is suspended in; no io_context::stop() on the normal path.
// Tutorial: docs/tutorial/06_echo_client.md
// Needs: Linux >= 5.11.
// Try: build/debug/bin/04_echo_server 127.0.0.1 65432   (or the lesson's Python server)
//      then: build/debug/bin/06_echo_client 127.0.0.1 65432 3
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>
#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

using namespace std::chrono_literals;

// ANCHOR: messages
constexpr std::array<std::string_view, 2> messages = {"Message 1 from client.",
                                                      "Message 2 from client."};
// ANCHOR_END: messages

std::span<const std::byte> bytes_of(std::string_view text) {
    return std::as_bytes(std::span(text.data(), text.size()));
}

// ANCHOR: connection
// One connection of the lesson's client, from connect to close.
ucoro::task<bool> exchange(ucoro::io_context& context, ucoro::net::address server, int id) {
    fmt::print("starting connection {} to {}\n", id, server);
    auto [connect_error, sock] = co_await ucoro::net::connect(context, server);
    if (connect_error) {
        fmt::print("connection {}: connect failed: {}\n", id, connect_error.message());
        co_return false;
    }
    std::string sent; // the lesson's data.outb and data.msg_total, as one local
    for (std::string_view message : messages) {
        fmt::print("sending {:?} to connection {}\n", message, id);
        auto [error, n] = co_await sock.send_all(bytes_of(message));
        if (error) {
            fmt::print("connection {}: send failed: {}\n", id, error.message());
            co_return false;
        }
        sent += message;
    }
    std::string received; // the lesson's data.recv_total
    std::array<std::byte, 1024> buffer;
    while (received.size() < sent.size()) {
        auto [error, n] = co_await sock.recv(buffer);
        if (error || n == 0) {
            fmt::print("connection {}: {} after {} of {} bytes\n", id,
                       error ? error.message() : "server closed", received.size(), sent.size());
            co_return false;
        }
        const std::string_view chunk(reinterpret_cast<const char*>(buffer.data()), n);
        fmt::print("received {:?} from connection {}\n", chunk, id);
        received += chunk;
    }
    fmt::print("closing connection {}\n", id);
    (void)co_await sock.close();
    co_return received == sent;
}
// ANCHOR_END: connection

// ANCHOR: run_connection
ucoro::task<void> run_connection(ucoro::io_context& context, ucoro::net::address server, int id,
                                 unsigned& matched) {
    // Not `if (co_await ...)`: GCC 12.2 miscompiles a bare co_await as a condition (chapter 1).
    const bool same = co_await exchange(context, server, id);
    matched += same ? 1 : 0;
}

// A server that accepts but never answers would keep us waiting forever.
ucoro::task<void> watchdog(ucoro::io_context& context,
                           std::vector<ucoro::task_handle>& connections) {
    if (auto error = co_await ucoro::sleep_for(context, 10s)) {
        co_return; // cancelled: every connection finished in time
    }
    fmt::print("no answer within 10 s, giving up\n");
    for (ucoro::task_handle& connection : connections) {
        connection.cancel(); // the operation it waits in completes with operation_canceled
    }
}

// The whole client: start the connections, wait for each one, then call the watchdog off.
ucoro::task<void> run_client(ucoro::io_context& context, ucoro::net::address server, int count,
                             unsigned& matched) {
    std::vector<ucoro::task_handle> connections;
    for (int id = 1; id <= count; ++id) {
        connections.push_back(context.spawn(run_connection(context, server, id, matched)));
    }
    ucoro::task_handle guard = context.spawn(watchdog(context, connections));
    for (ucoro::task_handle& connection : connections) {
        co_await connection.join();
    }
    guard.cancel();        // its sleep completes with operation_canceled
    co_await guard.join(); // it reads `connections`: let it finish before they go
}
// ANCHOR_END: run_connection

} // namespace

// ANCHOR: main
int main(int argc, char** argv) {
    const auto port = argc == 4 ? ucoro::net::address::parse_port(argv[2]) : std::nullopt;
    const auto server = port ? ucoro::net::address::parse(argv[1], *port) : std::nullopt;
    const int count = argc == 4 ? std::atoi(argv[3]) : 0;
    if (!server || count < 1 || count > 1000) {
        fmt::print(stderr, "usage: {} HOST PORT NUM_CONNECTIONS (1 to 1000)\n", argv[0]);
        return 2;
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    unsigned matched = 0; // connections that got back exactly what they sent
    try {
        ucoro::io_context context;
        context.block_on(run_client(context, *server, count, matched));
    } catch (const std::system_error& e) {
        fmt::print(stderr, "{}: {}\n", argv[0], e.what());
        return 1;
    }
    fmt::print("{} of {} connections got back every byte they sent\n", matched, count);
    return matched == static_cast<unsigned>(count) ? 0 : 1;
}
// ANCHOR_END: main
