// What the parts of the echo server share: its counters, and the state that the accept
// loop, the connections and the drain read and change.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <vector>

#include "ucoro/async_event.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/remote_context.hpp"

#include "connection_deadlines.hpp"

namespace ucoro::apps {

/// One thread's counters, read by -v at exit and by --metrics while it runs. Plain integers:
/// each thread has its own and only it touches them (--metrics asks the thread for a copy,
/// -v reads them after the thread ended), so the echo path pays one add per event, no
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

struct server_controls;

/// What every thread of the server shares: the connection count behind --max-connections
/// (one atomic add at each accept and each close, never per message), and how to reach the
/// other threads' accept loops when that count drops below the limit.
struct server_shared {
    std::atomic<std::size_t> live{0}; // connections open on every thread together
    std::size_t max_connections = 0;  // 0: no limit
    /// An out-of-descriptors episode is on: the limit is the process's, so an episode is
    /// the server's, announced by the first thread to hit it and ended by the first
    /// successful accept on any thread (a relaxed load per accept while it is off). Changed,
    /// with its line printed, under episode_mutex, so that the lines keep the changes' order.
    std::atomic<bool> backing_off{false};
    std::mutex episode_mutex;
    /// Each thread's context and controls, by thread index: written by each thread in its
    /// setup, read only once every thread has started (thread_group's start barrier).
    std::vector<remote_context> remotes;
    std::vector<server_controls*> controls;
};

/// What the accept loop, the connections and the drain on SIGINT share on one thread (the
/// server's defences; docs/cancellation.md, "The server's defences").
struct server_controls {
    io_context* context = nullptr;
    connection_deadlines* deadlines = nullptr; // counts live connections; times them out
    std::size_t max_connections = 0;           // 0: no limit
    std::size_t live = 0; // accepted and not yet closed (counted at accept, before they run)
    server_shared* shared = nullptr; // with threads: the server-wide count and limit
    unsigned index = 0;              // this thread's, in shared->remotes
    /// Called once when a drain on this thread is complete (its last connection closed).
    std::function<void()> drained;
    bool draining = false; // SIGINT seen: accept no more
    /// Set when a paused accept loop should look again (a connection closed and freed a
    /// slot or a descriptor, or a drain began); the loop resets it before it looks. Owned
    /// by echo_server_main, beside the context; without one a pause runs its whole length.
    async_event* accept_wake = nullptr;
    /// This thread's listener while it exists (null once torn down): the drain cancels its
    /// accept.
    net::listener* listener = nullptr;
    bool gather_send = true; // echo the buffers waiting in a stream with one sendmsg
    unsigned max_batch = 16; // the loop's batch_wait_events with this many connections or more

    /// A connection was accepted: counted, and the loop may wait for one more completion
    /// per wake-up (io_context::set_batch_wait_events: one per live connection, at most
    /// max_batch, since each client completes one message per round trip).
    void connection_opened() noexcept;
    /// With a server-wide limit: takes one of its slots before an accept is armed, so that
    /// threads accepting at once cannot pass the limit together. False at the limit.
    /// connection_closed() gives the slot back, or release_slot() if the accept failed.
    bool reserve_slot() noexcept;
    void release_slot() noexcept;
    /// A connection has closed its descriptor: a paused accept loop (at the limit, or out
    /// of descriptors) tries again now, and the last connection of a drain stops the loop.
    void connection_closed() noexcept;
    /// Cuts short the accept loop's pause, if it is in one (sets accept_wake; the loop's
    /// own wait sees it, nothing here touches the loop's frame).
    void wake_accept_loop() noexcept;
    /// The first signal, on this thread: accept no more (the armed accept on `listener` is
    /// cancelled), and half-close every connection so that each echoes what it received and
    /// closes; the last one stops the loop. False if the drain could not start (the ring
    /// refused the cancel), after stopping the loop.
    bool begin_drain() noexcept;
};

} // namespace ucoro::apps
