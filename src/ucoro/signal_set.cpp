#include "ucoro/signal_set.hpp"

#include <liburing.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "ucoro/io_context.hpp"

namespace ucoro {

signal_set::signal_set(io_context& context, std::initializer_list<int> signals)
    : m_context(&context), m_fd(-1) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int signal_number : signals) {
        sigaddset(&mask, signal_number);
    }
    if (const int error = pthread_sigmask(SIG_BLOCK, &mask, &m_previous_mask); error != 0) {
        throw std::system_error(error, std::system_category(), "pthread_sigmask");
    }
    m_fd = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (m_fd < 0) {
        const int error = errno;
        pthread_sigmask(SIG_SETMASK, &m_previous_mask, nullptr);
        throw std::system_error(error, std::system_category(), "signalfd");
    }
}

signal_set::~signal_set() {
    // Consume what arrived after the last wait(): unblocking a pending SIGINT would run its
    // default action and kill a process that had already decided to exit cleanly (a second
    // Ctrl+C, a supervisor's follow-up SIGTERM). Bounded: each read takes one signal.
    signalfd_siginfo info;
    for (int i = 0; i < 64 && ::read(m_fd, &info, sizeof(info)) == sizeof(info); ++i) {
    }
    ::close(m_fd);
    pthread_sigmask(SIG_SETMASK, &m_previous_mask, nullptr);
}

void signal_set::wait_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_poll_add(&sqe, m_fd, POLLIN);
}

bool signal_set::wait_operation::read_signal() noexcept {
    signalfd_siginfo info;
    const ssize_t n = ::read(m_fd, &info, sizeof(info));
    if (n == static_cast<ssize_t>(sizeof(info))) {
        m_signal = static_cast<int>(info.ssi_signo);
        return true;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        m_read_error = std::error_code(errno, std::system_category());
        return true;
    }
    return false; // nothing pending (the signalfd is non-blocking)
}

bool signal_set::wait_operation::resubmit_after(int result, std::uint32_t) noexcept {
    if (result < 0 || read_signal()) {
        return false; // the poll failed (a cancel, a deadline), or there is an outcome
    }
    // Readable, then empty: someone else read the signal first. Wait for the next one, as a
    // further round of this operation (so a cancel or a deadline still reaches it).
    std::error_code error;
    if (resubmit(error)) {
        return true;
    }
    m_read_error = error;
    return false;
}

io_result<int> signal_set::wait_operation::await_resume() const noexcept {
    if (m_read_error) {
        return {m_read_error, 0};
    }
    if (m_signal != 0) {
        return {{}, m_signal};
    }
    return {error(), 0};
}

} // namespace ucoro
