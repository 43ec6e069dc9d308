// co_await net::connect(context, address): IORING_OP_CONNECT.
#pragma once

#include "ucoro/io_result.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/operation.hpp"

namespace ucoro::net {

/// Opens a TCP socket and connects it to `peer`. The value is the connected socket;
/// ECONNREFUSED and friends come back as the error. If the socket cannot even be created
/// (EMFILE), the operation completes at once with that error, without suspending.
class [[nodiscard]] connect_operation final : public io_operation {
public:
    connect_operation(io_context& context, const address& peer) noexcept;
    connect_operation(connect_operation&&) = delete;
    ~connect_operation();

    bool await_ready() const noexcept { return m_fd < 0; }
    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<socket> await_resume() noexcept;

private:
    address m_peer;
    int m_fd;
    int m_socket_error = 0;
};

inline connect_operation connect(io_context& context, const address& peer) noexcept {
    return {context, peer};
}

} // namespace ucoro::net
