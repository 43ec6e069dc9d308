// co_await f.stat(): IORING_OP_STATX (Linux 5.6) on an open file, on the public operation
// contract.
#pragma once

#include <sys/stat.h>

#include "ucoro/io_result.hpp"
#include "ucoro/operation.hpp"

namespace ucoro::fs {

/// Asks for the basic fields of an open file's status (STATX_BASIC_STATS: size, mode, times,
/// links...). The kernel writes the struct statx while the request is in flight, possibly
/// from an io-wq worker, so it lives in the operation (rule 1) and is copied out at the end.
class [[nodiscard]] stat_operation final : public io_operation {
public:
    stat_operation(stat_operation&&) = delete;

    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<struct ::statx> await_resume() const noexcept;

private:
    friend class file; // file makes it, on its own descriptor
    stat_operation(io_context* context, int fd) noexcept : io_operation(context), m_fd(fd) {}

    int m_fd;
    struct ::statx m_status {};
};

} // namespace ucoro::fs
