// co_await fs::open(context, path, flags, mode): IORING_OP_OPENAT (Linux 5.6), on the public
// operation contract. Its result owns a descriptor, so it is the example of rule 4.
#pragma once

#include <sys/types.h>

#include <string>

#include "ucoro/fs/file.hpp"
#include "ucoro/io_result.hpp"
#include "ucoro/operation.hpp"

namespace ucoro::fs {

/// Opens `path` (relative to the current directory) as openat(2) would, always adding
/// O_CLOEXEC, so that a child process never inherits the descriptor. The value is the open
/// file; errors are the kernel's (no_such_file_or_directory, permission_denied, ...).
///
/// The path is copied into the operation: the kernel reads it when the request starts, which
/// may be in an io-wq worker after the caller's string is gone (rule 1). If the context is
/// destroyed with the open in flight, discard() closes the descriptor nobody will take
/// (rule 4). An open that runs in an io-wq worker (always with O_CREAT or O_TRUNC) and waits
/// there (a FIFO waiting for its peer, a slow network filesystem) ends on a cancel
/// (task_handle::cancel, when_any's loser, stop()) with operation_canceled if its wait can be
/// interrupted, as a FIFO's can. with_timeout does not bound it: on Linux 6.18 the kernel
/// did not fire a linked timeout while the worker waited (docs/cancellation.md, "Files and
/// io-wq"); time such an open with when_any and a sleep_for.
class [[nodiscard]] open_operation final : public io_operation {
public:
    open_operation(io_context& context, std::string path, int flags, mode_t mode)
        : io_operation(context), m_path(std::move(path)), m_flags(flags), m_mode(mode) {}
    open_operation(open_operation&&) = delete;

    void prepare(io_uring_sqe& sqe) noexcept override;
    void discard(int result, std::uint32_t flags) noexcept override;
    io_result<file> await_resume() noexcept;

private:
    std::string m_path;
    int m_flags;
    mode_t m_mode;
};

/// `flags` are open(2)'s (O_RDONLY, O_WRONLY | O_CREAT | O_TRUNC, ...); `mode` is used with
/// O_CREAT or O_TMPFILE, less the umask.
inline open_operation open(io_context& context, std::string path, int flags, mode_t mode = 0666) {
    return {context, std::move(path), flags, mode};
}

} // namespace ucoro::fs
