// co_await sock.recv(buffer): IORING_OP_RECV.
#pragma once

#include <cstddef>
#include <span>

#include "ucoro/detail/operation.hpp"
#include "ucoro/io_result.hpp"

namespace ucoro::net {

/// Receives up to buffer.size() bytes. The value is how many arrived; 0 means the peer
/// has closed its side (end of stream), which is not an error.
class [[nodiscard]] recv_operation final : public detail::io_awaitable {
public:
    recv_operation(io_context& context, int fd, std::span<std::byte> buffer) noexcept
        : io_awaitable(context), m_fd(fd), m_buffer(buffer) {}

    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<std::size_t> await_resume() const noexcept;

private:
    int m_fd;
    std::span<std::byte> m_buffer;
};

} // namespace ucoro::net
