// 06_echo_client: the lesson's multi-connection client, as coroutines.
//
// Shows: net::connect as an awaitable; NUM_CONNECTIONS connections running at once, each
// one straight-line coroutine (connect, send both messages, read back as many bytes as it
// sent, close) instead of the lesson's start_connections() and service_connection()
// callbacks; counting bytes rather than messages, because TCP may merge or split them;
// a watchdog that gives up on a silent server with io_context::stop().
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

namespace {

using namespace std::chrono_literals;

// ANCHOR: messages
constexpr std::array<std::string_view, 2> messages = {"Message 1 from client.",
                                                      "Message 2 from client."};
// ANCHOR_END: messages

struct client_state {
    unsigned running = 0; // connections not finished yet
    unsigned matched = 0; // connections that got back exactly what they sent
};

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
                                 client_state& state) {
    // Not `if (co_await ...)`: GCC 12.2 miscompiles a co_await in an if condition.
    const bool matched = co_await exchange(context, server, id);
    state.matched += matched ? 1 : 0;
    if (--state.running == 0) {
        context.stop(); // the last one out cancels the watchdog's sleep
    }
}

// A server that accepts but never answers would keep us waiting forever.
ucoro::task<void> watchdog(ucoro::io_context& context, const client_state& state) {
    const std::error_code error = co_await ucoro::sleep_for(context, 10s);
    if (!error && state.running > 0) {
        fmt::print("no answer within 10 s, giving up\n");
        context.stop(); // every recv in flight completes with operation_canceled
    }
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
    client_state state;
    state.running = static_cast<unsigned>(count);
    try {
        ucoro::io_context context;
        for (int id = 1; id <= count; ++id) {
            context.spawn(run_connection(context, *server, id, state));
        }
        context.spawn(watchdog(context, state));
        context.run();
    } catch (const std::system_error& e) {
        fmt::print(stderr, "{}: {}\n", argv[0], e.what());
        return 1;
    }
    fmt::print("{} of {} connections got back every byte they sent\n", state.matched, count);
    return state.matched == static_cast<unsigned>(count) ? 0 : 1;
}
// ANCHOR_END: main
