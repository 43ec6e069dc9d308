// co_await sock.recv(buffer): IORING_OP_RECV.
#pragma once

#include <cstddef>
#include <span>

#include "ucoro/io_result.hpp"
#include "ucoro/operation.hpp"

namespace ucoro::net {

/// Receives up to buffer.size() bytes. The value is how many arrived; 0 means the peer
/// has closed its side (end of stream), which is not an error.
///
/// An empty buffer is rejected at once with std::errc::invalid_argument, without a system
/// call: the kernel would answer 0, and 0 must keep meaning end of stream.
class [[nodiscard]] recv_operation final : public io_operation {
public:
    bool await_ready() const noexcept { return m_buffer.empty() || io_operation::await_ready(); }
    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<std::size_t> await_resume() const noexcept;

private:
    // Made by socket, which passes its context (null for a default-constructed
    // socket: the await then completes at once with EBADF) and its descriptor.
    friend class socket;
    recv_operation(io_context* context, int fd, std::span<std::byte> buffer) noexcept
        : io_operation(context), m_fd(fd), m_buffer(buffer) {}

    int m_fd;
    std::span<std::byte> m_buffer;
};

} // namespace ucoro::net
