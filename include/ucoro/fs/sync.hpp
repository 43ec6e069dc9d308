// co_await f.sync(): IORING_OP_FSYNC (Linux 5.1), on the public operation contract.
#pragma once

#include <system_error>

#include "ucoro/operation.hpp"

namespace ucoro::fs {

/// What a sync waits for: everything about the file (fsync), or only its data and what is
/// needed to read it back, such as the size, but not the times (fdatasync).
enum class sync_kind { all, data };

/// Waits until what was written to the file is on its storage. A sync runs in an io-wq worker
/// and, once started, is not stopped by a cancel or a deadline (read.hpp): the waiter is
/// resumed when the disk has answered.
class [[nodiscard]] sync_operation final : public io_operation {
public:
    sync_operation(sync_operation&&) = delete;

    void prepare(io_uring_sqe& sqe) noexcept override;
    [[nodiscard]] std::error_code await_resume() const noexcept { return error(); }

private:
    friend class file; // file makes it, on its own descriptor
    sync_operation(io_context* context, int fd, sync_kind kind) noexcept
        : io_operation(context), m_fd(fd), m_kind(kind) {}

    int m_fd;
    sync_kind m_kind;
};

} // namespace ucoro::fs
