// co_await sock.send_all_gather(iovecs): every byte of several buffers, IORING_OP_SENDMSG.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <system_error>

#include "ucoro/io_result.hpp"
#include "ucoro/net/send.hpp"
#include "ucoro/operation.hpp"

namespace ucoro::net {

/// Sends every byte of several buffers, in order, with one sendmsg(2) request per round
/// trip instead of one send per buffer: an echo of 16 received buffers is one request and
/// one completion, not 16 of each (the kernel builds one TCP write from the whole array).
/// After a short send it resubmits the rest without resuming the coroutine.
///
/// The iovec array is the caller's, typically a fixed-size array in the coroutine's frame,
/// so nothing is allocated; it must stay alive until the await completes, and this
/// operation advances it in place past the bytes sent (its contents are unspecified
/// afterwards). The msghdr lives in this awaiter. The value is the number of bytes sent:
/// all of them, or those that went before the error (timed_out under with_timeout, which
/// bounds all the rounds together). MSG_NOSIGNAL, as every ucoro send.
class [[nodiscard]] send_all_gather_operation final : public io_operation {
public:
    bool await_ready() const noexcept { return m_nothing_to_send || io_operation::await_ready(); }
    io_result<std::size_t> await_resume() const noexcept;

    void prepare(io_uring_sqe& sqe) noexcept override;

private:
    // Made by socket, which passes its context (null for a default-constructed
    // socket: the await then completes at once with EBADF) and its descriptor.
    friend class socket;
    send_all_gather_operation(io_context* context, int fd, std::span<iovec> buffers) noexcept;

    bool resubmit_after(int result, std::uint32_t flags) noexcept override;

    int m_fd;
    std::span<iovec> m_buffers; // from the first buffer not wholly sent
    msghdr m_message{};
    bool m_nothing_to_send = true;
    std::size_t m_sent = 0;
    std::error_code m_error;
};

} // namespace ucoro::net
