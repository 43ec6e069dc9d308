#include "ucoro/net/send_gather.hpp"

#include <liburing.h>

#include <algorithm>
#include <climits>

#include <sys/socket.h>

#include "ucoro/io_context.hpp"

namespace ucoro::net {

send_all_gather_operation::send_all_gather_operation(io_context* context, int fd,
                                                     std::span<iovec> buffers) noexcept
    : io_operation(context), m_fd(fd), m_buffers(buffers) {
    for (const iovec& buffer : buffers) {
        m_nothing_to_send = m_nothing_to_send && buffer.iov_len == 0;
    }
}

void send_all_gather_operation::prepare(io_uring_sqe& sqe) noexcept {
    // Empty buffers at the front are skipped (advance_past_sent drops the ones it reaches
    // after a round; these were empty to begin with), so the kernel never sees a request
    // that could legitimately send 0 bytes.
    while (!m_buffers.empty() && m_buffers.front().iov_len == 0) {
        m_buffers = m_buffers.subspan(1);
    }
    m_message = {};
    m_message.msg_iov = m_buffers.data();
    // IOV_MAX (1024) is the kernel's limit per call; the rest goes in the next round.
    m_message.msg_iovlen = std::min<std::size_t>(m_buffers.size(), IOV_MAX);
    // MSG_WAITALL where probed, as send_all: see send.cpp.
    const unsigned flags =
        MSG_NOSIGNAL | (context().features().send_waitall ? unsigned{MSG_WAITALL} : 0U);
    io_uring_prep_sendmsg(&sqe, m_fd, &m_message, flags);
}

bool send_all_gather_operation::resubmit_after(int result, std::uint32_t) noexcept {
    // Advances the caller's array in place past what went (send.hpp).
    return detail::advance_past_sent(result, m_buffers, m_sent, m_error) && resubmit(m_error);
}

io_result<std::size_t> send_all_gather_operation::await_resume() const noexcept {
    if (!has_context()) {
        return {std::make_error_code(std::errc::bad_file_descriptor), 0};
    }
    return {m_error, m_sent};
}

} // namespace ucoro::net
