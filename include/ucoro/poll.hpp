// co_await poll(context, fd, POLLIN): IORING_OP_POLL_ADD.
#pragma once

#include <poll.h>

#include "ucoro/io_result.hpp"
#include "ucoro/operation.hpp"

namespace ucoro {

/// Waits until `fd` is ready for `events` (POLLIN, POLLOUT, ...); the value is the revents
/// mask. For descriptors whose reads must happen in this thread, like a signalfd.
class [[nodiscard]] poll_operation final : public io_operation {
public:
    poll_operation(io_context& context, int fd, unsigned events) noexcept
        : io_operation(context), m_fd(fd), m_events(events) {}

    void prepare(io_uring_sqe& sqe) noexcept override;
    io_result<unsigned> await_resume() const noexcept;

private:
    int m_fd;
    unsigned m_events;
};

inline poll_operation poll(io_context& context, int fd, unsigned events) noexcept {
    return {context, fd, events};
}

} // namespace ucoro
