#include "ucoro/net/close.hpp"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>

#include "ucoro/io_result.hpp"

namespace ucoro::net {

void close_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_close(&sqe, m_fd);
}

void close_operation::discard(int result, std::uint32_t) noexcept {
    if (result == -ECANCELED) {
        ::close(m_fd); // cancelled before it ran, and the socket gave the fd up already
    }
}

std::error_code close_operation::await_resume() const noexcept {
    if (m_fd < 0) {
        return {};
    }
    if (m_result == -ECANCELED) {
        // Cancelled before it ran (the context is stopping): the descriptor is still open
        // and nobody else owns it, so close it here rather than leak it.
        return ::close(m_fd) == 0 ? std::error_code()
                                  : std::error_code(errno, std::system_category());
    }
    return make_io_error(m_result);
}

} // namespace ucoro::net
