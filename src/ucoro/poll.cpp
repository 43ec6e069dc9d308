#include "ucoro/poll.hpp"

#include <liburing.h>

namespace ucoro {

void poll_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_poll_add(&sqe, m_fd, m_events);
}

io_result<unsigned> poll_operation::await_resume() const noexcept {
    return result_as<unsigned>();
}

} // namespace ucoro
