#include "ucoro/fs/sync.hpp"

#include <liburing.h>

namespace ucoro::fs {

void sync_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_fsync(&sqe, m_fd, m_kind == sync_kind::data ? IORING_FSYNC_DATASYNC : 0);
}

} // namespace ucoro::fs
