// How the echo server stops: the first SIGINT or SIGTERM drains, a second one or the drain
// timeout closes what is left, and every stop goes through stop_serving.
#pragma once

#include <chrono>

#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/signal_set.hpp"
#include "ucoro/task.hpp"

#include "echo_server_controls.hpp"

namespace ucoro::apps {

/// Every stop that may leave connections open goes through here. shutdown(2) first: it ends
/// every send stuck on a peer that never reads, which stop() alone cannot (once the kernel
/// has handed the send to an io-wq worker, its cancel says ENOENT; docs/cancellation.md), so
/// the loop would wait for that send forever. stop() then cancels the rest. Without
/// controls there is no list of connections to shut down.
void stop_serving(io_context& context, server_controls* controls) noexcept;

/// The first signal drains: accept no more, half-close every connection's receive side so
/// each echoes what it already received, sees end of stream and closes. The last one to
/// close stops the loop (server_controls::connection_closed). What is still open after the
/// drain timeout, or at a second signal, is shut down and cancelled by stop().
task<void> watch_signals(io_context& context, signal_set& signals, net::listener& listener,
                         server_controls& controls, std::chrono::milliseconds drain_timeout);

} // namespace ucoro::apps
