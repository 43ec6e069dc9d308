// 09_multishot: one request that keeps delivering, into buffers the kernel picks.
//
// Shows: a multishot accept taking three connections with one request; a provided-buffer
// ring of two 1 KiB buffers shared by all of them; a multishot receive stream per
// connection, which gets a buffer from the ring only when bytes arrive, so an idle
// connection holds none; a 16 KiB message arriving through those two buffers in order, the
// stream waiting (not spinning) whenever the ring runs empty and re-arming when a buffer
// comes back; every buffer back in the ring at the end.
// Tutorial: docs/tutorial/09_multishot.md
// Needs: Linux >= 5.19 (provided-buffer rings; multishot receive from 6.0, else re-armed
// single receives).
// Try: build/debug/bin/09_multishot
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <span>
#include <system_error>
#include <vector>

namespace {

constexpr int clients = 3;
constexpr std::size_t message_size = 16 * 1024;

// ANCHOR: accept
// One IORING_OP_ACCEPT with IORING_ACCEPT_MULTISHOT: each connection is another CQE of the
// same request, and next() hands them out in order.
ucoro::task<std::vector<ucoro::net::socket>> accept_clients(ucoro::net::listener& listener) {
    std::vector<ucoro::net::socket> accepted;
    auto connections = listener.accept_multishot();
    while (accepted.size() < clients) {
        auto [error, connection] = co_await connections.next();
        if (error) {
            throw std::system_error(error, "accept");
        }
        fmt::print("accepted connection {}\n", accepted.size() + 1);
        accepted.push_back(std::move(connection));
    }
    co_return accepted;
}
// ANCHOR_END: accept

// ANCHOR: receive
// Reads until the peer closes. Each buffer is a loan from the ring: it goes back when the
// handle is destroyed, at the end of each turn of this loop.
ucoro::task<std::vector<std::byte>> receive_all(ucoro::net::socket& connection,
                                                ucoro::buffer_ring& ring) {
    std::vector<std::byte> received;
    int buffers = 0;
    auto stream = connection.recv_multishot(ring);
    while (true) {
        auto [error, buffer] = co_await stream.next();
        if (error) {
            throw std::system_error(error, "recv");
        }
        if (buffer.empty()) {
            break; // end of stream: the peer closed its side
        }
        ++buffers;
        received.insert(received.end(), buffer.bytes().begin(), buffer.bytes().end());
    }
    fmt::print("received {} bytes in {} buffers of at most {} bytes\n", received.size(), buffers,
               ring.buffer_size());
    co_return received;
}
// ANCHOR_END: receive

ucoro::task<void> send_and_close(ucoro::net::socket connection, std::span<const std::byte> bytes) {
    auto [error, sent] = co_await connection.send_all(bytes);
    (void)sent;
    if (error) {
        fmt::print("send failed: {}\n", error.message());
    }
    (void)co_await connection.close();
}

ucoro::task<ucoro::io_result<ucoro::net::socket>> connect_to(ucoro::io_context& context,
                                                             ucoro::net::address server) {
    co_return co_await ucoro::net::connect(context, server);
}

} // namespace

// ANCHOR: main
int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        ucoro::io_context context;
        if (!ucoro::buffer_ring::is_supported(context)) {
            fmt::print(stderr, "09_multishot: this kernel has no provided-buffer rings "
                               "(Linux 5.19 or newer)\n");
            return 1;
        }
        // Two buffers of 1 KiB for every connection together: far less than one message.
        ucoro::buffer_ring ring(context, {.count = 2, .buffer_size = 1024});
        ucoro::net::listener listener(context, ucoro::net::address::ipv4_loopback(0));

        std::vector<ucoro::net::socket> clients_side;
        for (int i = 0; i < clients; ++i) {
            auto [error, client] = context.block_on(connect_to(context, listener.local_address()));
            if (error) {
                throw std::system_error(error, "connect");
            }
            clients_side.push_back(std::move(client));
        }
        auto server_side = context.block_on(accept_clients(listener));

        // The first client sends 16 KiB and closes; the others stay idle, holding no buffer.
        std::vector<std::byte> message(message_size);
        for (std::size_t i = 0; i < message.size(); ++i) {
            message[i] = static_cast<std::byte>(i * 7 + 3);
        }
        context.spawn(send_and_close(std::move(clients_side[0]), message));
        const auto received = context.block_on(receive_all(server_side[0], ring));

        fmt::print("{}\n", std::ranges::equal(received, message)
                               ? "identical to what was sent, in order"
                               : "DIFFERENT from what was sent");
        fmt::print("the ring ran empty and the stream re-armed {} times\n", ring.enobufs_rearms());
        fmt::print("buffers back in the ring: {} of {}\n", ring.available(), ring.count());
        return std::ranges::equal(received, message) ? 0 : 1;
    } catch (const std::system_error& e) {
        fmt::print(stderr, "09_multishot: {}\n", e.what());
        return 1;
    }
}
// ANCHOR_END: main
