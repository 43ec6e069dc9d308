// 04_echo_server: the lesson's multi-connection server, as coroutines.
//
// Shows: the lesson's accept_wrapper() as an accept loop that spawns one coroutine per
// connection; service_connection() as that coroutine, straight-line: recv, send_all back,
// until recv returns 0; the per-connection state (the lesson's `data` namespace) as the
// coroutine's local variables; a listener on port 0 when you want the kernel to choose.
// It has no Ctrl+C handling yet: chapter 7 adds that.
// Tutorial: docs/tutorial/04_echo_server.md
// Needs: Linux >= 5.11.
// Try: build/debug/bin/04_echo_server 127.0.0.1 65432
//      and in another terminal: printf 'hello' | nc -q1 127.0.0.1 65432
//      or the lesson's client: python3 tests/peers/selectors_echo_client.py 127.0.0.1 65432 3
//      To watch every SQE and CQE: UCORO_TRACE=1 build/debug/bin/04_echo_server 127.0.0.1 65432
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>

#include <array>
#include <cstdio>
#include <optional>
#include <system_error>

namespace {

// ANCHOR: service_connection
// The lesson's service_connection(), for one connection, from accept to close.
ucoro::task<void> service_connection(ucoro::net::socket connection) {
    const ucoro::net::address peer = connection.peer_address();
    std::array<std::byte, 1024> buffer; // the lesson's recv(1024), in this coroutine's frame
    while (true) {
        auto [recv_error, n] = co_await connection.recv(buffer);
        if (recv_error || n == 0) {
            break; // n == 0: the client closed its side, like the lesson's empty recv_data
        }
        auto [send_error, sent] = co_await connection.send_all(std::span(buffer).first(n));
        if (send_error) {
            break;
        }
    }
    fmt::print("closing connection to {}\n", peer);
    (void)co_await connection.close();
}
// ANCHOR_END: service_connection

// ANCHOR: accept_loop
// The lesson's accept_wrapper(), as a loop: one coroutine per accepted connection.
ucoro::task<void> accept_loop(ucoro::io_context& context, ucoro::net::listener& listener) {
    while (true) {
        auto [error, connection] = co_await listener.accept();
        if (error) {
            fmt::print(stderr, "accept failed: {}\n", error.message());
            break;
        }
        fmt::print("accepted connection from {}\n", connection.peer_address());
        context.spawn(service_connection(std::move(connection)));
    }
}
// ANCHOR_END: accept_loop

} // namespace

// ANCHOR: main
int main(int argc, char** argv) {
    const auto port = argc == 3 ? ucoro::net::address::parse_port(argv[2]) : std::nullopt;
    const auto local = port ? ucoro::net::address::parse(argv[1], *port) : std::nullopt;
    if (!local) {
        fmt::print(stderr, "usage: {} HOST PORT (a numeric address, port 0 to 65535)\n", argv[0]);
        return 2;
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // one line per event, even into a pipe
    try {
        ucoro::io_context context;
        ucoro::net::listener listener(context, *local); // throws if the port is taken
        fmt::print("listening on {}\n", listener.local_address());
        context.spawn(accept_loop(context, listener));
        context.run(); // the accept loop never ends: stop it with Ctrl+C
    } catch (const std::system_error& e) {
        fmt::print(stderr, "{}: {}\n", argv[0], e.what());
        return 1;
    }
}
// ANCHOR_END: main
