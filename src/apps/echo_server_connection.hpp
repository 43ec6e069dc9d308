// One connection of the echo server: the echo itself (the fast path and --simple, side by
// side) and the bookkeeping around it.
#pragma once

#include "ucoro/buffer_ring.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

#include "echo_server_controls.hpp"

namespace ucoro::apps {

/// One connection: receive what arrives, send all of it back, until the peer closes. With
/// a `ring`, through a multishot receive into it (the default path); without, through
/// recv into a buffer of the connection's own and send_all (--simple).
/// With `controls`, the connection is counted and subject to its deadlines.
task<void> echo_connection(net::socket connection, bool quiet, echo_server_stats& stats,
                           buffer_ring* ring = nullptr, server_controls* controls = nullptr);

} // namespace ucoro::apps
