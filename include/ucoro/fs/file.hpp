// file: an open file's descriptor and the operations on it (read and write at an offset,
// sync, stat, close). fs::open (open.hpp) makes one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "ucoro/fs/read.hpp"
#include "ucoro/fs/stat.hpp"
#include "ucoro/fs/sync.hpp"
#include "ucoro/fs/write.hpp"
#include "ucoro/net/close.hpp"

namespace ucoro {
class io_context;
}

namespace ucoro::fs {

/// Owns a file descriptor and starts operations on it, each at an explicit offset, so
/// coroutines can read and write the same file at once without a shared position.
/// Move-only. Destroying an open file closes it synchronously, and cancels nothing: a read
/// of a pipe still armed on it keeps the pipe open and goes on waiting. `co_await f.close()`
/// closes it through the ring, after cancelling what is armed on it, and reports the error
/// (on some filesystems, NFS, a delayed write error: check it after writing).
///
/// Buffers handed to an operation must stay alive until it completes, which they do when
/// they live in the awaiting coroutine's frame. Cancelling a read or write of a regular file
/// may have to wait for the disk: read.hpp says why.
///
/// A default-constructed file (what an io_result<file> holds on error) belongs to no
/// context: every operation on it completes at once with std::errc::bad_file_descriptor.
class file {
public:
    file() noexcept = default;
    file(io_context& context, int fd) noexcept : m_context(&context), m_fd(fd) {}
    file(file&& other) noexcept : m_context(other.m_context), m_fd(std::exchange(other.m_fd, -1)) {}
    file& operator=(file&& other) noexcept;
    file(const file&) = delete;
    file& operator=(const file&) = delete;
    ~file();

    bool is_open() const noexcept { return m_fd >= 0; }
    int native_handle() const noexcept { return m_fd; }

    read_operation read_at(std::span<std::byte> buffer, std::uint64_t offset) noexcept {
        return {m_context, m_fd, buffer, offset};
    }
    read_exactly_operation read_exactly_at(std::span<std::byte> buffer,
                                           std::uint64_t offset) noexcept {
        return {m_context, m_fd, buffer, offset};
    }
    write_operation write_at(std::span<const std::byte> bytes, std::uint64_t offset) noexcept {
        return {m_context, m_fd, bytes, offset};
    }
    write_all_operation write_all_at(std::span<const std::byte> bytes,
                                     std::uint64_t offset) noexcept {
        return {m_context, m_fd, bytes, offset};
    }
    sync_operation sync(sync_kind kind = sync_kind::all) noexcept {
        return {m_context, m_fd, kind};
    }
    stat_operation stat() noexcept { return {m_context, m_fd}; }
    /// Closes through the ring with the same operation as a socket's close (close.hpp): it
    /// cancels what is still armed on the descriptor first, cannot be cancelled or timed, and
    /// the file gives up its descriptor at once, so it is closed exactly once whatever the
    /// outcome, even if the operation is never awaited.
    net::close_operation close() noexcept { return {m_context, std::exchange(m_fd, -1)}; }

    /// Gives up ownership of the descriptor without closing it.
    int release() noexcept { return std::exchange(m_fd, -1); }

private:
    io_context* m_context = nullptr;
    int m_fd = -1;
};

} // namespace ucoro::fs
