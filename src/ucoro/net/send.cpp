#include "ucoro/net/send.hpp"

#include <liburing.h>
#include <sys/socket.h>

#include "ucoro/io_context.hpp"

namespace ucoro::net {

void send_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_send(&sqe, m_fd, m_bytes.data(), m_bytes.size(), MSG_NOSIGNAL);
}

io_result<std::size_t> send_operation::await_resume() const noexcept {
    if (m_result < 0) {
        return {make_io_error(m_result), 0};
    }
    return {{}, static_cast<std::size_t>(m_result)};
}

void send_all_operation::prepare(io_uring_sqe& sqe) noexcept {
    const auto rest = m_bytes.subspan(m_sent);
    // MSG_WAITALL (where probed): the kernel retries a short send itself, so one request
    // and one completion carry the whole span; resubmit_after still handles a short count.
    const int flags = MSG_NOSIGNAL | (context().features().send_waitall ? MSG_WAITALL : 0);
    io_uring_prep_send(&sqe, m_fd, rest.data(), rest.size(), flags);
}

bool send_all_operation::resubmit_after(int result, std::uint32_t) noexcept {
    if (result < 0) {
        m_error = make_io_error(result);
        return false;
    }
    if (result == 0) {
        // A stream socket never accepts 0 of a non-empty send; stop rather than spin.
        m_error = std::make_error_code(std::errc::io_error);
        return false;
    }
    m_sent += static_cast<std::size_t>(result);
    if (m_sent == m_bytes.size()) {
        return false;
    }
    return resubmit(m_error); // a short send: send the rest
}

io_result<std::size_t> send_all_operation::await_resume() const noexcept {
    if (!has_context()) {
        return {std::make_error_code(std::errc::bad_file_descriptor), 0};
    }
    return {m_error, m_sent};
}

} // namespace ucoro::net
