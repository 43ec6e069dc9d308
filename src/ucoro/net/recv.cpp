#include "ucoro/net/recv.hpp"

#include <liburing.h>

namespace ucoro::net {

void recv_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_recv(&sqe, m_fd, m_buffer.data(), m_buffer.size(), 0);
}

io_result<std::size_t> recv_operation::await_resume() const noexcept {
    if (m_buffer.empty() && has_context()) {
        return {std::make_error_code(std::errc::invalid_argument), 0};
    }
    return result_as<std::size_t>();
}

} // namespace ucoro::net
