// 05_short_sends: send() may take less than you asked; send_all() takes care of the rest.
//
// Shows: a peer with a tiny receive buffer (SO_RCVBUF set before connect) reading 1 KiB at
// a time like the lesson's server; the lesson's `outb = outb[sent:]` loop written with
// send(), printing every short send as it happens; then send_all(), which does the same
// loop inside the operation and resumes the coroutine once, when every byte is out; the
// peer checking byte for byte that nothing was lost or repeated.
// Tutorial: docs/tutorial/05_partial_sends.md
// Needs: Linux >= 5.11.
// Try: build/debug/bin/05_short_sends   (the byte counts change from run to run)
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <span>
#include <system_error>
#include <vector>

namespace {

constexpr int tiny_buffer = 4096;               // the kernel doubles it and keeps a minimum
constexpr std::size_t message_size = 64 * 1024; // far more than both buffers can hold

void set_buffer_size(int fd, int option, int size) {
    if (::setsockopt(fd, SOL_SOCKET, option, &size, sizeof(size)) != 0) {
        throw std::system_error(errno, std::system_category(), "setsockopt");
    }
}

// ANCHOR: tiny_peer
// A client socket with a tiny receive buffer. SO_RCVBUF must be set before connect: the
// receive window is agreed in the handshake. (A blocking connect is fine here: on
// loopback it returns as soon as the listener's backlog holds the connection.)
ucoro::net::socket connect_with_tiny_buffer(ucoro::io_context& context,
                                            const ucoro::net::address& server) {
    const int fd = ::socket(server.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::system_error(errno, std::system_category(), "socket");
    }
    ucoro::net::socket sock(context, fd, server); // owns fd from here on
    set_buffer_size(fd, SO_RCVBUF, tiny_buffer);
    if (::connect(fd, server.data(), server.size()) != 0) {
        throw std::system_error(errno, std::system_category(), "connect");
    }
    return sock;
}
// ANCHOR_END: tiny_peer

// ANCHOR: lesson_loop
// The lesson's write path: send what the kernel accepts now, keep the rest for later.
ucoro::task<std::error_code> send_like_the_lesson(ucoro::net::socket& sock,
                                                  std::span<const std::byte> outb) {
    for (int call = 1; !outb.empty(); ++call) {
        auto [error, sent] = co_await sock.send(outb);
        if (error) {
            co_return error;
        }
        fmt::print("send #{}: asked for {} bytes, the kernel took {}\n", call, outb.size(), sent);
        outb = outb.subspan(sent); // the lesson's outb = outb[sent:]
    }
    co_return std::error_code();
}
// ANCHOR_END: lesson_loop

// ANCHOR: sender
ucoro::task<bool> sender(ucoro::net::socket& sock, std::span<const std::byte> message) {
    fmt::print("with send(), the lesson's way:\n");
    if (auto error = co_await send_like_the_lesson(sock, message)) {
        fmt::print("send failed: {}\n", error.message());
        co_return false;
    }
    fmt::print("with send_all(), one co_await:\n");
    auto [error, sent] = co_await sock.send_all(message);
    fmt::print("send_all: {} of {} bytes sent{}\n", sent, message.size(),
               error ? ", then " + error.message() : "");
    co_return !error;
}
// ANCHOR_END: sender

// ANCHOR: peer
// The slow reader: 1 KiB per recv, like the lesson's server, until it has `expected`.
ucoro::task<void> peer(ucoro::net::socket sock, std::vector<std::byte> expected, bool& same) {
    std::vector<std::byte> received;
    std::array<std::byte, 1024> buffer;
    int calls = 0;
    while (received.size() < expected.size()) {
        auto [error, n] = co_await sock.recv(buffer);
        if (error || n == 0) {
            break;
        }
        ++calls;
        received.insert(received.end(), buffer.begin(), buffer.begin() + n);
    }
    same = received == expected;
    fmt::print("peer: {} bytes in {} recv calls, {} what was sent\n", received.size(), calls,
               same ? "identical to" : "DIFFERENT from");
}
// ANCHOR_END: peer

ucoro::task<ucoro::io_result<ucoro::net::socket>> accept_one(ucoro::net::listener& listener) {
    co_return co_await listener.accept();
}

} // namespace

int main() {
    std::vector<std::byte> message(message_size);
    for (std::size_t i = 0; i < message.size(); ++i) {
        message[i] = static_cast<std::byte>(i % 251); // a prime period: a lost chunk shows
    }
    std::vector<std::byte> expected = message; // sent twice: once by send, once by send_all
    expected.insert(expected.end(), message.begin(), message.end());

    ucoro::io_context context;
    ucoro::net::listener listener(context, ucoro::net::address::ipv4_loopback(0));
    ucoro::net::socket reader = connect_with_tiny_buffer(context, listener.local_address());
    auto [error, writer] = context.block_on(accept_one(listener));
    if (error) {
        fmt::print("accept failed: {}\n", error.message());
        return 1;
    }
    set_buffer_size(writer.native_handle(), SO_SNDBUF, tiny_buffer); // the sender's side too

    bool same = false;
    context.spawn(peer(std::move(reader), std::move(expected), same));
    const bool sent = context.block_on(sender(writer, message));
    context.run(); // let the peer read the rest
    return sent && same ? 0 : 1;
}
