// co_await sock.recv(buffer): IORING_OP_RECV.
#pragma once

#include <cstddef>
#include <span>

#include "ucoro/detail/io_awaitable.hpp"
#include "ucoro/io_result.hpp"

namespace ucoro::net {

/// Receives up to buffer.size() bytes. The value is how many arrived; 0 means the peer
/// has closed its side (end of stream), which is not an error.
///
/// An empty buffer is rejected at once with std::errc::invalid_argument, without a system
/// call: the kernel would answer 0, and 0 must keep meaning end of stream.
class [[nodiscard]] recv_operation final : public detail::io_awaitable {
public:
    recv_operation(io_context* context, int fd, std::span<std::byte> buffer) noexcept
        : io_awaitable(context), m_fd(fd), m_buffer(buffer) {}

    bool await_ready() const noexcept { return m_buffer.empty() || io_awaitable::await_ready(); }
    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<std::size_t> await_resume() const noexcept;

private:
    int m_fd;
    std::span<std::byte> m_buffer;
};

} // namespace ucoro::net
