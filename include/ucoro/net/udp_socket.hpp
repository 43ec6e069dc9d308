// udp_socket: a bound UDP socket; send_to and receive_from one datagram at a time, or a
// multishot stream of datagrams into a buffer ring (datagram_stream.hpp).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <utility>

#include "ucoro/net/address.hpp"
#include "ucoro/net/close.hpp"
#include "ucoro/net/datagram_stream.hpp"
#include "ucoro/operation.hpp"

namespace ucoro {
class io_context;
class buffer_ring;
} // namespace ucoro

namespace ucoro::net {

/// Sends one datagram with IORING_OP_SENDMSG. The value is the number of bytes sent, which
/// for UDP is all of them or an error (EMSGSIZE for a datagram larger than 65,507 bytes over
/// IPv4). An empty datagram is a datagram: it is sent, and the value is 0.
class [[nodiscard]] send_to_operation final : public io_operation {
public:
    send_to_operation(send_to_operation&&) = delete;

    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<std::size_t> await_resume() const noexcept { return result_as<std::size_t>(); }

private:
    friend class udp_socket; // udp_socket makes it, on its own descriptor
    send_to_operation(io_context* context, int fd, std::span<const std::byte> bytes,
                      const address& to) noexcept;

    // What the SQE points to (operation.hpp, rule 1): the kernel may read it until the CQE.
    int m_fd;
    address m_to;
    iovec m_iovec;
    msghdr m_message{};
};

/// What receive_from learnt about one datagram.
struct datagram_info {
    /// Bytes written into the buffer.
    std::size_t size = 0;
    /// The datagram's length as sent: more than `size` when it did not fit (truncated).
    std::size_t full_size = 0;
    /// Who sent it.
    address sender;
};

/// Receives one datagram with IORING_OP_RECVMSG into `buffer`, with the sender's address.
/// A datagram longer than the buffer is cut to fit and the rest is gone (UDP keeps no
/// remainder); that is reported, not silent: the error is std::errc::message_size, and the
/// value still says what was kept, the full length and the sender. A zero-length datagram
/// gives size 0 and no error.
class [[nodiscard]] receive_from_operation final : public io_operation {
public:
    receive_from_operation(receive_from_operation&&) = delete;

    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<datagram_info> await_resume() const noexcept;

private:
    friend class udp_socket; // udp_socket makes it, on its own descriptor
    receive_from_operation(io_context* context, int fd, std::span<std::byte> buffer) noexcept;

    int m_fd;
    iovec m_iovec;
    msghdr m_message{};
    sockaddr_storage m_sender{};
};

/// Owns a UDP socket (close-on-exec) bound to a local IPv4 or IPv6 address. Move-only;
/// destroying an open socket closes it synchronously, `co_await sock.close()` closes it
/// through the ring (cancelling what is armed on it, a datagram_stream's request included).
///
/// Buffers given to send_to and receive_from must stay alive until the await completes,
/// which they do in the awaiting coroutine's frame. A default-constructed socket belongs to
/// no context: its operations complete at once with bad_file_descriptor.
class udp_socket {
public:
    udp_socket() noexcept = default;
    /// Opens a socket of `local`'s family and binds it (port 0: the kernel picks one, and
    /// local_address() says which). Throws std::system_error naming the step and address
    /// ("bind 127.0.0.1:9") with its errno.
    udp_socket(io_context& context, const address& local);
    udp_socket(udp_socket&& other) noexcept
        : m_context(other.m_context), m_fd(std::exchange(other.m_fd, -1)), m_local(other.m_local) {}
    udp_socket& operator=(udp_socket&& other) noexcept;
    udp_socket(const udp_socket&) = delete;
    udp_socket& operator=(const udp_socket&) = delete;
    ~udp_socket();

    bool is_open() const noexcept { return m_fd >= 0; }
    int native_handle() const noexcept { return m_fd; }
    /// The bound address, with the port the kernel chose.
    const address& local_address() const noexcept { return m_local; }

    send_to_operation send_to(std::span<const std::byte> bytes, const address& to) noexcept {
        return {m_context, m_fd, bytes, to};
    }
    receive_from_operation receive_from(std::span<std::byte> buffer) noexcept {
        return {m_context, m_fd, buffer};
    }
    /// Receives datagram after datagram into buffers of `ring` with one multishot request
    /// (datagram_stream.hpp). The stream must not outlive the socket. A ring of another
    /// io_context throws std::invalid_argument, as socket::recv_multishot does.
    datagram_stream receive_from_multishot(buffer_ring& ring);
    /// Closes through the ring; the socket gives up its descriptor at once.
    close_operation close() noexcept { return {m_context, std::exchange(m_fd, -1)}; }

private:
    io_context* m_context = nullptr;
    int m_fd = -1;
    address m_local;
};

} // namespace ucoro::net
