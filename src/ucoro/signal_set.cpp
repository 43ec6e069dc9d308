#include "ucoro/signal_set.hpp"

#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "ucoro/io_context.hpp"
#include "ucoro/poll.hpp"

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

task<io_result<int>> signal_set::wait() {
    while (true) {
        // Poll through the ring, then read here: a signalfd read returns the signals of the
        // thread that reads it, and that must be this one, not an io_uring worker.
        signalfd_siginfo info;
        const ssize_t n = ::read(m_fd, &info, sizeof(info));
        if (n == static_cast<ssize_t>(sizeof(info))) {
            co_return io_result<int>{{}, static_cast<int>(info.ssi_signo)};
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            co_return io_result<int>{std::error_code(errno, std::system_category()), 0};
        }
        auto [error, revents] = co_await poll(*m_context, m_fd, POLLIN);
        if (error) {
            co_return io_result<int>{error, 0};
        }
    }
}

} // namespace ucoro
