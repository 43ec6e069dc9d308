#include "ucoro/net/connect.hpp"

#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace ucoro::net {

connect_operation::connect_operation(io_context& context, const address& peer) noexcept
    : io_operation(context), m_peer(peer),
      m_fd(::socket(peer.family(), SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (m_fd < 0) {
        m_socket_error = errno;
    }
}

connect_operation::~connect_operation() {
    if (m_fd >= 0) {
        ::close(m_fd); // not handed to a socket: the connect failed or was never awaited
    }
}

void connect_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_connect(&sqe, m_fd, m_peer.data(), m_peer.size());
}

io_result<socket> connect_operation::await_resume() noexcept {
    if (m_fd < 0) {
        return {std::error_code(m_socket_error, std::system_category()), {}};
    }
    if (result() < 0) {
        return {error(), {}};
    }
    return {{}, socket(context(), std::exchange(m_fd, -1), m_peer)};
}

} // namespace ucoro::net
