// co_await sock.send(bytes) and co_await sock.send_all(bytes): IORING_OP_SEND.
#pragma once

#include <cstddef>
#include <span>

#include "ucoro/detail/io_awaitable.hpp"
#include "ucoro/io_result.hpp"

namespace ucoro::net {

/// Sends what the kernel accepts now, which may be less than asked (a full socket buffer,
/// a signal): the value says how many bytes went. Like every ucoro send it uses
/// MSG_NOSIGNAL, so a peer that has reset the connection yields EPIPE or ECONNRESET
/// instead of killing the process with SIGPIPE.
class [[nodiscard]] send_operation final : public detail::io_awaitable {
public:
    send_operation(io_context* context, int fd, std::span<const std::byte> bytes) noexcept
        : io_awaitable(context), m_fd(fd), m_bytes(bytes) {}

    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<std::size_t> await_resume() const noexcept;

private:
    int m_fd;
    std::span<const std::byte> m_bytes;
};

/// Sends every byte, resubmitting after each short send without resuming the coroutine in
/// between. The value is the number of bytes sent: all of them, or those that went before
/// the error.
class [[nodiscard]] send_all_operation final : public detail::io_awaitable {
public:
    send_all_operation(io_context* context, int fd, std::span<const std::byte> bytes) noexcept
        : io_awaitable(context), m_fd(fd), m_bytes(bytes) {}

    bool await_ready() const noexcept { return m_bytes.empty() || io_awaitable::await_ready(); }
    io_result<std::size_t> await_resume() const noexcept;

    void prepare(io_uring_sqe& sqe) noexcept override;

private:
    bool resubmit_after(int result, std::uint32_t flags) noexcept override;

    int m_fd;
    std::span<const std::byte> m_bytes;
    std::size_t m_sent = 0;
    std::error_code m_error;
};

} // namespace ucoro::net
