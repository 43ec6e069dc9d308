#include "ucoro/net/send.hpp"

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>

#include "ucoro/io_context.hpp"

namespace ucoro::detail {

bool advance_past_sent(int result, std::span<iovec>& rest, std::size_t& sent,
                       std::error_code& error) noexcept {
    if (result < 0) {
        error = make_io_error(result);
        return false;
    }
    if (result == 0) {
        error = std::make_error_code(std::errc::io_error);
        return false;
    }
    auto went = static_cast<std::size_t>(result);
    sent += went;
    while (!rest.empty()) {
        iovec& front = rest.front();
        const std::size_t taken = std::min(went, front.iov_len);
        front.iov_base = static_cast<std::byte*>(front.iov_base) + taken;
        front.iov_len -= taken;
        went -= taken;
        if (front.iov_len != 0) {
            break; // sent part of this buffer: the next round starts inside it
        }
        rest = rest.subspan(1); // also skips the empty buffers that follow a finished one
    }
    return !rest.empty();
}

} // namespace ucoro::detail

namespace ucoro::net {

void send_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_send(&sqe, m_fd, m_bytes.data(), m_bytes.size(), MSG_NOSIGNAL);
}

io_result<std::size_t> send_operation::await_resume() const noexcept {
    return result_as<std::size_t>();
}

send_all_operation::send_all_operation(io_context* context, int fd,
                                       std::span<const std::byte> bytes) noexcept
    : io_operation(context), m_fd(fd) {
    // iovec's base is not const, but the kernel only reads through it.
    m_rest.iov_base = const_cast<std::byte*>(bytes.data());
    m_rest.iov_len = bytes.size();
}

void send_all_operation::prepare(io_uring_sqe& sqe) noexcept {
    // MSG_WAITALL (where probed): the kernel retries a short send itself, so one request
    // and one completion carry the whole span; resubmit_after still handles a short count.
    const int flags = MSG_NOSIGNAL | (context().features().send_waitall ? MSG_WAITALL : 0);
    io_uring_prep_send(&sqe, m_fd, m_rest.iov_base, m_rest.iov_len, flags);
}

bool send_all_operation::resubmit_after(int result, std::uint32_t) noexcept {
    std::span<iovec> rest(&m_rest, 1);
    return detail::advance_past_sent(result, rest, m_sent, m_error) && resubmit(m_error);
}

io_result<std::size_t> send_all_operation::await_resume() const noexcept {
    if (!has_context()) {
        return {std::make_error_code(std::errc::bad_file_descriptor), 0};
    }
    return {m_error, m_sent};
}

} // namespace ucoro::net
