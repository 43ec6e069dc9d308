// The echo server's accept loop: one echo_connection per connection, at most
// --max-connections at once, and a pause while out of descriptors.
#pragma once

#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/task.hpp"

#include "echo_server_controls.hpp"

namespace ucoro::apps {

/// Accepts connections and spawns echo_connection for each, until the context stops. If
/// the loop itself fails (an exception: the ring broke, out of memory), it prints one line,
/// sets stats.failed and stops the context: a server that cannot accept must not linger.
/// With `controls`, it stops at controls->max_connections, pauses while out of
/// descriptors until one is freed, and ends when a drain starts.
task<void> accept_connections(io_context& context, net::listener& listener, bool quiet,
                              echo_server_stats& stats, buffer_ring* ring = nullptr,
                              server_controls* controls = nullptr);

} // namespace ucoro::apps
