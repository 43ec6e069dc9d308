// signal_set: receive signals (SIGINT, SIGTERM) as events of the loop.
#pragma once

#include <signal.h>

#include <cstdint>
#include <initializer_list>
#include <system_error>

#include "ucoro/io_result.hpp"
#include "ucoro/operation.hpp"

namespace ucoro {

class io_context;

/// Blocks the given signals for this thread and delivers them through a signalfd polled by
/// the ring, so a handler is ordinary coroutine code running in the loop, free to call
/// io_context::stop() or anything else: nothing runs in async-signal context.
///
/// Create it before any other thread, so that every thread inherits the blocked mask and
/// the signal stays pending for the signalfd. The destructor restores the previous mask.
class signal_set {
public:
    /// Throws std::system_error if the mask or the signalfd cannot be set up.
    signal_set(io_context& context, std::initializer_list<int> signals);
    ~signal_set();
    signal_set(const signal_set&) = delete;
    signal_set& operator=(const signal_set&) = delete;

    class wait_operation;
    /// Waits for one of the signals; the value is its number (see wait_operation).
    wait_operation wait() noexcept;

private:
    io_context* m_context;
    int m_fd;
    sigset_t m_previous_mask;
};

/// co_await signals.wait(): one of the set's signals, by number. A poll of the signalfd
/// through the ring (IORING_OP_POLL_ADD), then a read of it here: a signalfd read returns
/// the signals of the thread that reads it, which must be the loop's, not an io_uring
/// worker's. A signal already pending is read at once, without the ring. Nothing is
/// allocated; it can be timed (with_timeout) and cancelled like any operation.
class [[nodiscard]] signal_set::wait_operation final : public io_operation {
public:
    /// Reads a pending signal (or a read error) without suspending.
    bool await_ready() noexcept { return read_signal(); }
    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<int> await_resume() const noexcept;

private:
    friend class signal_set;
    wait_operation(io_context& context, int fd) noexcept : io_operation(context), m_fd(fd) {}

    // After the poll: read, or poll again if another reader took the signal first.
    bool resubmit_after(int result, std::uint32_t flags) noexcept override;
    // True once there is an outcome: a signal, or a read that failed for good.
    bool read_signal() noexcept;

    int m_fd;
    int m_signal = 0;
    std::error_code m_read_error;
};

inline signal_set::wait_operation signal_set::wait() noexcept {
    return {*m_context, m_fd};
}

} // namespace ucoro
