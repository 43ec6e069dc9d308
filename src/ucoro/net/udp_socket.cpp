#include "ucoro/net/udp_socket.hpp"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include "ucoro/buffer_ring.hpp"
#include "ucoro/net/datagram_stream.hpp"

namespace ucoro::net {

datagram_stream udp_socket::receive_from_multishot(buffer_ring& ring) {
    // As socket::recv_multishot: a ring of another context is a programming error.
    if (m_context != nullptr && &ring.context() != m_context) {
        throw std::invalid_argument(
            "udp_socket::receive_from_multishot: the buffer_ring belongs to another io_context");
    }
    return {ring, m_fd};
}

send_to_operation::send_to_operation(io_context* context, int fd, std::span<const std::byte> bytes,
                                     const address& to) noexcept
    : io_operation(context), m_fd(fd),
      m_to(to), m_iovec{const_cast<std::byte*>(bytes.data()), bytes.size()} {
    m_message.msg_name = m_to.data();
    m_message.msg_namelen = m_to.size();
    m_message.msg_iov = &m_iovec;
    m_message.msg_iovlen = 1;
}

void send_to_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_sendmsg(&sqe, m_fd, &m_message, MSG_NOSIGNAL);
}

receive_from_operation::receive_from_operation(io_context* context, int fd,
                                               std::span<std::byte> buffer) noexcept
    : io_operation(context), m_fd(fd), m_iovec{buffer.data(), buffer.size()} {
    m_message.msg_iov = &m_iovec;
    m_message.msg_iovlen = 1;
}

void receive_from_operation::prepare(io_uring_sqe& sqe) noexcept {
    // Reset each round: the kernel writes the lengths and flags back.
    m_message.msg_name = &m_sender;
    m_message.msg_namelen = sizeof(m_sender);
    m_message.msg_flags = 0;
    // MSG_TRUNC: the result is the datagram's full length even when it did not fit.
    io_uring_prep_recvmsg(&sqe, m_fd, &m_message, MSG_TRUNC);
}

io_result<datagram_info> receive_from_operation::await_resume() const noexcept {
    if (result() < 0) {
        return {error(), {}};
    }
    datagram_info info;
    info.full_size = static_cast<std::size_t>(result());
    info.size = info.full_size < m_iovec.iov_len ? info.full_size : m_iovec.iov_len;
    info.sender =
        address::from_sockaddr(reinterpret_cast<const sockaddr*>(&m_sender), m_message.msg_namelen);
    if ((m_message.msg_flags & MSG_TRUNC) != 0 || info.full_size > info.size) {
        return {std::make_error_code(std::errc::message_size), info};
    }
    return {{}, info};
}

udp_socket::udp_socket(io_context& context, const address& local)
    : m_context(&context), m_local(local) {
    const auto fail = [this, &local](const char* step) {
        const int error = errno;
        if (m_fd >= 0) {
            ::close(m_fd);
        }
        throw std::system_error(error, std::system_category(), fmt::format("{} {}", step, local));
    };
    m_fd = ::socket(local.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (m_fd < 0) {
        fail("socket");
    }
    if (::bind(m_fd, local.data(), local.size()) != 0) {
        fail("bind");
    }
    socklen_t length = address::capacity();
    if (::getsockname(m_fd, m_local.data(), &length) != 0) {
        fail("getsockname");
    }
}

udp_socket& udp_socket::operator=(udp_socket&& other) noexcept {
    if (this != &other) {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
        m_context = other.m_context;
        m_fd = std::exchange(other.m_fd, -1);
        m_local = other.m_local;
    }
    return *this;
}

udp_socket::~udp_socket() {
    if (m_fd >= 0) {
        ::close(m_fd);
    }
}

} // namespace ucoro::net
