// co_await sock.send(bytes) and co_await sock.send_all(bytes): IORING_OP_SEND.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <system_error>

#include "ucoro/io_result.hpp"
#include "ucoro/operation.hpp"

namespace ucoro::detail {

/// The bookkeeping after one round of a send that must send everything (send_all,
/// send_all_gather): counts the round's `result` into `sent` and moves `rest` past those
/// bytes, whole buffers first, then into the next one, dropping the buffers left empty.
/// Returns true while bytes are left to send. Returns false when all went, or when the
/// round failed, with `error` set: the round's own error, or io_error for 0 (a stream
/// socket never accepts 0 bytes of a non-empty send; stop rather than spin).
bool advance_past_sent(int result, std::span<iovec>& rest, std::size_t& sent,
                       std::error_code& error) noexcept;

} // namespace ucoro::detail

namespace ucoro::net {

/// Sends what the kernel accepts now, which may be less than asked (a full socket buffer,
/// a signal): the value says how many bytes went. Like every ucoro send it uses
/// MSG_NOSIGNAL, so a peer that has reset the connection yields EPIPE or ECONNRESET
/// instead of killing the process with SIGPIPE.
class [[nodiscard]] send_operation final : public io_operation {
public:
    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<std::size_t> await_resume() const noexcept;

private:
    // Made by socket, which passes its context (null for a default-constructed
    // socket: the await then completes at once with EBADF) and its descriptor.
    friend class socket;
    send_operation(io_context* context, int fd, std::span<const std::byte> bytes) noexcept
        : io_operation(context), m_fd(fd), m_bytes(bytes) {}

    int m_fd;
    std::span<const std::byte> m_bytes;
};

/// Sends every byte, resubmitting after each short send without resuming the coroutine in
/// between. The value is the number of bytes sent: all of them, or those that went before
/// the error (timed_out under with_timeout, which bounds all the rounds together).
class [[nodiscard]] send_all_operation final : public io_operation {
public:
    bool await_ready() const noexcept { return m_rest.iov_len == 0 || io_operation::await_ready(); }
    io_result<std::size_t> await_resume() const noexcept;

    void prepare(io_uring_sqe& sqe) noexcept override;

private:
    // Made by socket, which passes its context (null for a default-constructed
    // socket: the await then completes at once with EBADF) and its descriptor.
    friend class socket;
    send_all_operation(io_context* context, int fd, std::span<const std::byte> bytes) noexcept;

    bool resubmit_after(int result, std::uint32_t flags) noexcept override;

    int m_fd;
    iovec m_rest{}; // what is still to send
    std::size_t m_sent = 0;
    std::error_code m_error;
};

} // namespace ucoro::net
