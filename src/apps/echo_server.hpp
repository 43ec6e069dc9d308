// The multi-connection echo server, as a library the binary and the tests share.
#pragma once

#include <cstdio>

#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

namespace ucoro::apps {

struct echo_server_stats {
    unsigned long accepted = 0;
    unsigned long closed = 0;
    bool failed = false; // accept failed for a reason that retrying cannot fix
};

/// One connection: receive what arrives, send all of it back, until the peer closes. With
/// a `ring`, through a multishot receive into it (the default path); without, through
/// recv into a buffer of the connection's own and send_all (--simple).
task<void> echo_connection(net::socket connection, bool quiet, echo_server_stats& stats,
                           buffer_ring* ring = nullptr);

/// Accepts connections and spawns echo_connection for each, until the context stops. If
/// the loop itself fails (an exception: the ring broke, out of memory), it prints one line,
/// sets stats.failed and stops the context: a server that cannot accept must not linger.
task<void> accept_connections(io_context& context, net::listener& listener, bool quiet,
                              echo_server_stats& stats, buffer_ring* ring = nullptr);

/// The whole program: `ucoro-echo-server [-q] [-v] [--simple] HOST PORT`. Returns the exit code
/// (0 after SIGINT/SIGTERM, 1 on a runtime failure, 2 on wrong arguments).
int echo_server_main(int argc, char** argv);

} // namespace ucoro::apps
