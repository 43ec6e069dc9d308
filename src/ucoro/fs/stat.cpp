#include "ucoro/fs/stat.hpp"

#include <fcntl.h>
#include <liburing.h>

namespace ucoro::fs {

void stat_operation::prepare(io_uring_sqe& sqe) noexcept {
    // An empty path with AT_EMPTY_PATH names the descriptor itself, as fstat does.
    io_uring_prep_statx(&sqe, m_fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &m_status);
}

io_result<struct ::statx> stat_operation::await_resume() const noexcept {
    if (result() < 0) {
        return {error(), {}};
    }
    return {{}, m_status};
}

} // namespace ucoro::fs
