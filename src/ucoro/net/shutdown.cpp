#include "ucoro/net/shutdown.hpp"

#include <liburing.h>

#include "ucoro/io_result.hpp"

namespace ucoro::net {

void shutdown_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_shutdown(&sqe, m_fd, static_cast<int>(m_how));
}

std::error_code shutdown_operation::await_resume() const noexcept {
    return error();
}

} // namespace ucoro::net
