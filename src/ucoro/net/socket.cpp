#include "ucoro/net/socket.hpp"

#include <netinet/tcp.h>
#include <unistd.h>

#include <stdexcept>

namespace ucoro::net {

recv_stream socket::recv_multishot(buffer_ring& ring) {
    // A default-constructed socket has no context: its stream completes with EBADF, as its
    // other operations do.
    if (m_context != nullptr && &ring.context() != m_context) {
        throw std::invalid_argument(
            "socket::recv_multishot: the buffer_ring belongs to another io_context");
    }
    return {ring, m_fd};
}

socket& socket::operator=(socket&& other) noexcept {
    if (this != &other) {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
        m_context = other.m_context;
        m_fd = std::exchange(other.m_fd, -1);
        m_peer = other.m_peer;
    }
    return *this;
}

socket::~socket() {
    if (m_fd >= 0) {
        ::close(m_fd);
    }
}

address socket::local_address() const {
    address local;
    socklen_t length = address::capacity();
    if (::getsockname(m_fd, local.data(), &length) != 0) {
        return {};
    }
    local.set_size(length);
    return local;
}

void socket::set_no_delay(bool enabled) noexcept {
    const int value = enabled ? 1 : 0;
    ::setsockopt(m_fd, IPPROTO_TCP, TCP_NODELAY, &value, sizeof(value));
}

} // namespace ucoro::net
