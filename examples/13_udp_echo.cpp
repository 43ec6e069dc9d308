// 13_udp_echo: a UDP echo server, one straight-line coroutine.
//
// Shows: a udp_socket bound to port 0 when you want the kernel to choose; receive_from
// giving each datagram with its sender's address, and send_to answering that address; no
// connections and no accept: one socket and one loop serve every client; a datagram is
// whole or not at all (an empty one is a datagram too, echoed as such).
// Tutorial: docs/tutorial/13_udp.md
// Needs: Linux >= 5.11.
// Try: build/debug/bin/13_udp_echo 127.0.0.1 65432
//      and in another terminal: printf 'hello' | nc -u -q1 127.0.0.1 65432
//      or: python3 tests/peers/udp_echo_client.py 127.0.0.1 65432
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>

#include <cstddef>
#include <cstdio>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

namespace {

// ANCHOR: echo
// Every datagram back to whoever sent it. 65,535 bytes: more than any UDP payload, so
// nothing is ever cut (receive_from would report message_size if it were).
ucoro::task<void> echo(ucoro::net::udp_socket& sock) {
    std::vector<std::byte> buffer(65535);
    while (true) {
        auto [error, datagram] = co_await sock.receive_from(buffer);
        if (error) {
            fmt::print(stderr, "receive failed: {}\n", error.message());
            break;
        }
        const auto bytes = std::span(buffer).first(datagram.size);
        auto [send_error, sent] = co_await sock.send_to(bytes, datagram.sender);
        if (send_error) {
            fmt::print(stderr, "send to {} failed: {}\n", datagram.sender, send_error.message());
            continue; // one client's failure is not the others'
        }
        fmt::print("echoed {} bytes to {}\n", sent, datagram.sender);
    }
}
// ANCHOR_END: echo

} // namespace

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
        ucoro::net::udp_socket sock(context, *local); // throws if the port is taken
        fmt::print("listening on udp {}\n", sock.local_address());
        context.block_on(echo(sock)); // ends only on an error: stop it with Ctrl+C
    } catch (const std::system_error& e) {
        fmt::print(stderr, "{}: {}\n", argv[0], e.what());
        return 1;
    }
}
