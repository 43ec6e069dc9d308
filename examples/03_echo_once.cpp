// 03_echo_once: a server and a client coroutine talking over loopback, in one program.
//
// Shows: a listener on port 0 (the kernel picks the port); accept and connect as
// awaitables; send_all and recv; recv returning 0 at end of stream; errors as values
// (io_result), checked at every step.
// Needs: Linux >= 5.11.
// Try: build/debug/bin/03_echo_once
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>

#include <array>
#include <string>
#include <string_view>

namespace {

std::span<const std::byte> bytes_of(std::string_view text) {
    return std::as_bytes(std::span(text.data(), text.size()));
}

// Accept one connection and echo it until the client closes its side.
ucoro::task<void> server(ucoro::net::listener& listener) {
    auto [error, connection] = co_await listener.accept();
    if (error) {
        fmt::print("server: accept failed: {}\n", error.message());
        co_return;
    }
    fmt::print("server: accepted connection from {}\n", connection.peer_address());
    std::array<std::byte, 1024> buffer;
    while (true) {
        auto [recv_error, n] = co_await connection.recv(buffer);
        if (recv_error || n == 0) {
            break; // n == 0: the client shut down its sending side
        }
        auto [send_error, sent] = co_await connection.send_all(std::span(buffer).first(n));
        if (send_error) {
            break;
        }
    }
    fmt::print("server: closing connection to {}\n", connection.peer_address());
    (void)co_await connection.close();
}

ucoro::task<bool> client(ucoro::io_context& context, ucoro::net::address server_address) {
    auto [error, sock] = co_await ucoro::net::connect(context, server_address);
    if (error) {
        fmt::print("client: connect failed: {}\n", error.message());
        co_return false;
    }
    constexpr std::string_view message = "Hello, world";
    auto [send_error, sent] = co_await sock.send_all(bytes_of(message));
    // Tell the server we are done sending; we can still receive.
    auto shutdown_error = co_await sock.shutdown();
    if (send_error || shutdown_error) {
        co_return false;
    }
    std::string echoed;
    std::array<std::byte, 1024> buffer;
    while (true) {
        auto [recv_error, n] = co_await sock.recv(buffer);
        if (recv_error || n == 0) {
            break;
        }
        echoed.append(reinterpret_cast<const char*>(buffer.data()), n);
    }
    fmt::print("client: sent {:?}, received {:?}\n", message, echoed);
    co_return echoed == message;
}

} // namespace

int main() {
    ucoro::io_context context;
    ucoro::net::listener listener(context, ucoro::net::address::ipv4_loopback(0));
    fmt::print("listening on {}\n", listener.local_address());
    context.spawn(server(listener));
    const bool ok = context.block_on(client(context, listener.local_address()));
    if (!ok) {
        context.stop(); // the server may still be waiting for a connection that never came
    }
    context.run(); // let the server finish closing
    fmt::print("{}\n", ok ? "echo matched" : "echo did NOT match");
    return ok ? 0 : 1;
}
