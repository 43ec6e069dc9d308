// co_await f.write_at(bytes, offset) and co_await f.write_all_at(bytes, offset):
// IORING_OP_WRITE (Linux 5.6), on the public operation contract (operation.hpp).
//
// A buffered write to a regular file copies into the page cache and is usually served
// inline; one that must wait (a full page cache, a filesystem without async buffered writes)
// goes to an io-wq worker, where a cancel or a deadline cannot stop it (read.hpp says more).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>

#include "ucoro/io_result.hpp"
#include "ucoro/operation.hpp"

namespace ucoro::fs {

/// Writes up to bytes.size() bytes at `offset` (ignored by pipes and other streams; a file
/// opened with O_APPEND writes at its end). The value is how many went, which may be fewer
/// than asked (a full disk after part of it, a signal). An empty span completes at once
/// with 0, without a system call.
class [[nodiscard]] write_operation final : public io_operation {
public:
    write_operation(write_operation&&) = delete;

    bool await_ready() const noexcept { return m_bytes.empty() || io_operation::await_ready(); }
    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<std::size_t> await_resume() const noexcept;

private:
    friend class file; // file makes it, on its own descriptor
    write_operation(io_context* context, int fd, std::span<const std::byte> bytes,
                    std::uint64_t offset) noexcept
        : io_operation(context), m_fd(fd), m_bytes(bytes), m_offset(offset) {}

    int m_fd;
    std::span<const std::byte> m_bytes;
    std::uint64_t m_offset;
};

/// Writes every byte from `offset`, writing the rest again after each short count without
/// resuming the coroutine in between. The value is the number of bytes written: all of
/// them, or those written before the error (a round that writes 0 bytes is io_error: stop
/// rather than spin).
class [[nodiscard]] write_all_operation final : public io_operation {
public:
    write_all_operation(write_all_operation&&) = delete;

    bool await_ready() const noexcept { return m_bytes.empty() || io_operation::await_ready(); }
    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<std::size_t> await_resume() const noexcept;

private:
    friend class file; // file makes it, on its own descriptor
    write_all_operation(io_context* context, int fd, std::span<const std::byte> bytes,
                        std::uint64_t offset) noexcept
        : io_operation(context), m_fd(fd), m_bytes(bytes), m_offset(offset) {}

    bool resubmit_after(int result, std::uint32_t flags) noexcept override;

    int m_fd;
    std::span<const std::byte> m_bytes;
    std::uint64_t m_offset;
    std::size_t m_done = 0; // bytes written by the rounds so far
    std::error_code m_error;
};

} // namespace ucoro::fs
