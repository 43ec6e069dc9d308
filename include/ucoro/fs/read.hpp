// co_await f.read_at(buffer, offset) and co_await f.read_exactly_at(buffer, offset):
// IORING_OP_READ (Linux 5.6), written on the public operation contract (operation.hpp).
//
// Cancelling a file read, and what io-wq means for it (operation.hpp, rule 6):
// - A read of a regular file is served inline when the page cache has the bytes; otherwise
//   the kernel waits for the page asynchronously where the filesystem supports it (ext4, xfs,
//   btrfs), or hands the request to an io-wq worker thread, which does a blocking read.
// - A cancel (task_handle::cancel, when_any's loser, stop(), with_timeout's timer) reaches a
//   request not yet started at once; one an io-wq worker is running is only signalled, and a
//   disk read does not stop for a signal: the CQE, and the waiter's resumption, come when the
//   read finishes, with its bytes. A deadline on a file read therefore bounds nothing the
//   kernel is already doing; bound the size of each read instead.
// - A read of a pipe, FIFO or socket waits by polling, like a recv: a cancel ends it at once
//   with operation_canceled, and no byte is lost.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>

#include "ucoro/io_result.hpp"
#include "ucoro/operation.hpp"

namespace ucoro::fs {

/// The most one request asks for: the kernel never reads or writes more than this at once
/// (MAX_RW_COUNT), and the SQE's length is 32 bits.
inline constexpr std::size_t max_transfer = 0x7fff'f000;

/// Reads up to buffer.size() bytes at `offset` (ignored by pipes and other streams). The
/// value is how many came: fewer than asked at end of file, and 0 at or past it, which is
/// not an error. An empty buffer completes at once with 0, without a system call.
class [[nodiscard]] read_operation final : public io_operation {
public:
    read_operation(read_operation&&) = delete;

    bool await_ready() const noexcept { return m_buffer.empty() || io_operation::await_ready(); }
    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<std::size_t> await_resume() const noexcept;

private:
    friend class file; // file makes it, on its own descriptor
    read_operation(io_context* context, int fd, std::span<std::byte> buffer,
                   std::uint64_t offset) noexcept
        : io_operation(context), m_fd(fd), m_buffer(buffer), m_offset(offset) {}

    int m_fd;
    std::span<std::byte> m_buffer;
    std::uint64_t m_offset;
};

/// Fills the whole buffer from `offset`, reading again after each short count without
/// resuming the coroutine in between. The value is the number of bytes read: all of them, or
/// those read before the error. End of file first is the error no_message_available (ENODATA:
/// the file has fewer bytes than asked); under with_timeout the deadline bounds every round
/// together.
class [[nodiscard]] read_exactly_operation final : public io_operation {
public:
    read_exactly_operation(read_exactly_operation&&) = delete;

    bool await_ready() const noexcept { return m_buffer.empty() || io_operation::await_ready(); }
    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<std::size_t> await_resume() const noexcept;

private:
    friend class file; // file makes it, on its own descriptor
    read_exactly_operation(io_context* context, int fd, std::span<std::byte> buffer,
                           std::uint64_t offset) noexcept
        : io_operation(context), m_fd(fd), m_buffer(buffer), m_offset(offset) {}

    bool resubmit_after(int result, std::uint32_t flags) noexcept override;

    int m_fd;
    std::span<std::byte> m_buffer;
    std::uint64_t m_offset;
    std::size_t m_done = 0; // bytes read by the rounds so far
    std::error_code m_error;
};

} // namespace ucoro::fs
