#include "ucoro/net/close.hpp"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>

#include "ucoro/detail/context_access.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/io_result.hpp"

namespace ucoro::net {

close_operation::~close_operation() {
    if (m_fd >= 0 && !m_handed_to_kernel) {
        ::close(m_fd); // never awaited, cancelled before it ran, or no context to run it
    }
}

void close_operation::await_suspend(std::coroutine_handle<> waiter) {
    // In the same batch, before the close: cancel what is armed on the descriptor, or a
    // pending recv would keep the file open (and its coroutine waiting) after the close.
    // Each operation by its user_data, found in the context's list for this descriptor: a
    // cancel by descriptor (cancel_fd) makes the kernel walk every request in flight, so a
    // storm of N closes cost O(N^2). Usually nothing is armed (the receive saw end of
    // stream) and no cancel is queued at all.
    // Room for all of them first, so that no flush (which can fail) comes between: the
    // close enters the SQ with its cancels, or nothing does and the caller sees the error.
    // (More cancels than the SQ holds are flushed as they are queued: a cancel by
    // user_data left behind by a failed close only cancels that operation early.)
    io_context& context = this->context();
    using detail::context_access;
    context_access::reserve_sqes(
        context, static_cast<unsigned>(context_access::cancels_needed_on(context, m_fd)) + 1);
    context_access::cancel_operations_on(context, m_fd);
    io_operation::await_suspend(waiter);
}

void close_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_close(&sqe, m_fd);
}

void close_operation::discard(int result, std::uint32_t) noexcept {
    // Cancelled before it ran (the context is being torn down): the fd is still ours, and
    // the destructor closes it. Any other result means the close ran.
    m_handed_to_kernel = result != -ECANCELED;
}

std::error_code close_operation::await_resume() noexcept {
    if (m_fd < 0) {
        return {};
    }
    if (!has_context()) {
        return std::make_error_code(std::errc::bad_file_descriptor);
    }
    if (result() == -ECANCELED) {
        // Cancelled before it ran (the context is stopping): the descriptor is still open
        // and nobody else owns it, so close it here rather than leak it.
        const int fd = std::exchange(m_fd, -1);
        return ::close(fd) == 0 ? std::error_code()
                                : std::error_code(errno, std::system_category());
    }
    m_handed_to_kernel = true;
    return error();
}

} // namespace ucoro::net
