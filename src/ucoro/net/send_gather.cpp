#include "ucoro/net/send_gather.hpp"

#include <liburing.h>

#include <algorithm>
#include <climits>

#include <sys/socket.h>

#include "ucoro/io_context.hpp"

namespace ucoro::net {

send_all_gather_operation::send_all_gather_operation(io_context* context, int fd,
                                                     std::span<iovec> buffers) noexcept
    : io_awaitable(context), m_fd(fd), m_buffers(buffers) {
    for (const iovec& buffer : buffers) {
        m_left += buffer.iov_len;
    }
}

void send_all_gather_operation::prepare(io_uring_sqe& sqe) noexcept {
    // Empty buffers at the front (all sent, or empty to begin with) are skipped, so the
    // kernel never sees a request that could legitimately send 0 bytes.
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
    if (result < 0) {
        m_error = make_io_error(result);
        return false;
    }
    if (result == 0) {
        // A stream socket never accepts 0 of a non-empty send; stop rather than spin.
        m_error = std::make_error_code(std::errc::io_error);
        return false;
    }
    auto sent = static_cast<std::size_t>(result);
    m_sent += sent;
    m_left -= sent;
    // Advance the array past what went: whole buffers, then part of the next one.
    while (sent > 0) {
        iovec& front = m_buffers.front();
        const std::size_t taken = std::min(sent, front.iov_len);
        front.iov_base = static_cast<std::byte*>(front.iov_base) + taken;
        front.iov_len -= taken;
        sent -= taken;
        if (front.iov_len == 0) {
            m_buffers = m_buffers.subspan(1);
        }
    }
    if (m_left == 0) {
        return false;
    }
    return resubmit(m_error); // a short send: send the rest
}

io_result<std::size_t> send_all_gather_operation::await_resume() const noexcept {
    if (!has_context()) {
        return {std::make_error_code(std::errc::bad_file_descriptor), 0};
    }
    return {m_error, m_sent};
}

} // namespace ucoro::net
