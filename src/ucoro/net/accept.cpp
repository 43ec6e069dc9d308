#include "ucoro/net/accept.hpp"

#include <liburing.h>
#include <unistd.h>

namespace ucoro::net {

void accept_operation::prepare(io_uring_sqe& sqe) noexcept {
    m_peer_length = address::capacity();
    io_uring_prep_accept(&sqe, m_listen_fd, m_peer.data(), &m_peer_length, SOCK_CLOEXEC);
}

void accept_operation::discard(int result, std::uint32_t) noexcept {
    if (result >= 0) {
        ::close(result); // accepted as the context was torn down: nobody will take it
    }
}

io_result<socket> accept_operation::await_resume() noexcept {
    if (result() < 0) {
        return {error(), {}};
    }
    m_peer.set_size(m_peer_length); // a Unix peer's name is as long as the kernel said
    return {{}, socket(context(), result(), m_peer)};
}

} // namespace ucoro::net
