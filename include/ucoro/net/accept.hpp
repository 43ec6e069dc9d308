// co_await listener.accept(): IORING_OP_ACCEPT.
#pragma once

#include <sys/socket.h>

#include "ucoro/io_result.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/operation.hpp"

namespace ucoro::net {

/// Accepts one connection. The value is the connected socket (close-on-exec), which knows
/// its peer's address. An error (EMFILE when out of descriptors, ECONNABORTED when the
/// peer gave up first) is an error_code, never a descriptor.
class [[nodiscard]] accept_operation final : public io_operation {
public:
    void prepare(io_uring_sqe& sqe) noexcept override;
    void discard(int result, std::uint32_t flags) noexcept override;
    io_result<socket> await_resume() noexcept;

private:
    friend class listener; // listener::accept() makes it, on its own descriptor
    accept_operation(io_context& context, int listen_fd) noexcept
        : io_operation(context), m_listen_fd(listen_fd) {}

    int m_listen_fd;
    address m_peer; // the kernel writes the peer's address here
    socklen_t m_peer_length = address::capacity();
};

} // namespace ucoro::net
