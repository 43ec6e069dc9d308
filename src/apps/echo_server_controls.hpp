// What the parts of the echo server share: its counters, and the state that the accept
// loop, the connections and the drain read and change.
#pragma once

#include <cstddef>

#include "ucoro/async_event.hpp"
#include "ucoro/io_context.hpp"

#include "connection_deadlines.hpp"

namespace ucoro::apps {

/// The server's own counters, read by -v at exit and by --metrics while it runs. Plain
/// integers: the server is single-threaded, so the echo path pays one add per event, no
/// atomic and no syscall.
struct echo_server_stats {
    unsigned long accepted = 0;
    unsigned long closed = 0;
    unsigned long accept_pauses = 0; // episodes out of descriptors or memory
    // The echo paths (fast and --simple): a message is one receive that delivered bytes
    // (in) and one send of echoed bytes, plain or gathered (out).
    unsigned long long bytes_in = 0;
    unsigned long long bytes_out = 0;
    unsigned long long messages_in = 0;
    unsigned long long messages_out = 0;
    bool failed = false; // accept failed for a reason that retrying cannot fix
};

/// What the accept loop, the connections and the drain on SIGINT share (the server's
/// defences; docs/cancellation.md, "The server's defences").
struct server_controls {
    io_context* context = nullptr;
    connection_deadlines* deadlines = nullptr; // counts live connections; times them out
    std::size_t max_connections = 0;           // 0: no limit
    std::size_t live = 0;  // accepted and not yet closed (counted at accept, before they run)
    bool draining = false; // SIGINT seen: accept no more
    /// Set when a paused accept loop should look again (a connection closed and freed a
    /// slot or a descriptor, or a drain began); the loop resets it before it looks. Owned
    /// by echo_server_main, beside the context; without one a pause runs its whole length.
    async_event* accept_wake = nullptr;
    bool gather_send = true; // echo the buffers waiting in a stream with one sendmsg
    unsigned max_batch = 16; // the loop's batch_wait_events with this many connections or more

    /// A connection was accepted: counted, and the loop may wait for one more completion
    /// per wake-up (io_context::set_batch_wait_events: one per live connection, at most
    /// max_batch, since each client completes one message per round trip).
    void connection_opened() noexcept;
    /// A connection has closed its descriptor: a paused accept loop (at the limit, or out
    /// of descriptors) tries again now, and the last connection of a drain stops the loop.
    void connection_closed() noexcept;
    /// Cuts short the accept loop's pause, if it is in one (sets accept_wake; the loop's
    /// own wait sees it, nothing here touches the loop's frame).
    void wake_accept_loop() noexcept;
};

} // namespace ucoro::apps
