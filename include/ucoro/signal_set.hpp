// signal_set: receive signals (SIGINT, SIGTERM) as events of the loop.
#pragma once

#include <signal.h>

#include <initializer_list>

#include "ucoro/io_result.hpp"
#include "ucoro/task.hpp"

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

    /// Waits for one of the signals; the value is its number.
    task<io_result<int>> wait();

private:
    io_context* m_context;
    int m_fd;
    sigset_t m_previous_mask;
};

} // namespace ucoro
