// How the echo server stops: the first SIGINT or SIGTERM drains every thread, a second one or
// the drain timeout closes what is left, and every stop goes through stop_serving.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

#include "ucoro/async_event.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/signal_set.hpp"
#include "ucoro/task.hpp"
#include "ucoro/thread_group.hpp"

#include "echo_server_controls.hpp"

namespace ucoro::apps {

/// Every stop that may leave connections open goes through here. shutdown(2) first: it ends
/// every send stuck on a peer that never reads, which stop() alone cannot (once the kernel
/// has handed the send to an io-wq worker, its cancel says ENOENT; docs/cancellation.md), so
/// the loop would wait for that send forever. stop() then cancels the rest. Without
/// controls there is no list of connections to shut down.
void stop_serving(io_context& context, server_controls* controls) noexcept;

/// What the main thread's loop knows of the serving threads. All of it lives on the main
/// thread; a serving thread reaches it only by posting to the main context.
struct serving_threads {
    thread_group* group = nullptr;
    server_shared* shared = nullptr;
    std::size_t ended = 0; // threads whose loop has returned
    async_event* first_ended = nullptr;
    async_event* all_ended = nullptr;
    bool failed = false; // a thread ended before any signal: stop the others, exit 1
};

/// On the main thread, which owns the signals (blocked in every thread, read by one
/// signalfd). The first signal drains every thread at once (server_controls::begin_drain,
/// posted to each): no new connections, each live one echoes what it received and closes,
/// and each thread's loop returns when its last one has. What is still open after the
/// drain timeout, or at a second signal, is shut down and cancelled (stop_serving, posted to
/// each thread). A thread that ends before any signal (its accept loop failed) stops the
/// others. Returns once every thread's loop has returned.
task<void> coordinate_shutdown(io_context& main_context, signal_set& signals,
                               serving_threads& threads, std::chrono::milliseconds drain_timeout);

} // namespace ucoro::apps
