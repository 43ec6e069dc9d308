// Per-connection deadlines for the echo server (--idle-timeout, --send-timeout), and the
// list of live connections that draining and --max-connections count.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "ucoro/io_context.hpp"
#include "ucoro/task.hpp"

namespace ucoro::apps {

/// Every live connection, with a coarse deadline each, swept by one periodic timer.
///
/// The fast path receives through a multishot request, so a per-operation linked timeout
/// cannot bound it, and arming a kernel timer per message would cost a syscall's worth of
/// work per message. Instead the sweeper advances a tick counter every `period` (a quarter
/// of the shortest timeout), and a connection records the current tick when it starts and
/// finishes sending an echo: one load and one store, no clock read, no syscall. The sweeper
/// walks the list once per tick and shuts down the sockets whose deadline passed, so a
/// timeout fires between 1 and 1.25 times its length after the last activity.
///
/// Expiry never closes a descriptor under a request in flight: shutdown(2) makes the
/// connection's pending receive see end of stream and its pending send fail (EPIPE), and
/// the connection's coroutine then closes the socket as it does for any peer.
class connection_deadlines {
public:
    class entry;

    /// A timeout of zero is off. With both off there is nothing to sweep (sweep() returns
    /// at once) but connections are still counted.
    connection_deadlines(io_context& context, std::chrono::milliseconds idle_timeout,
                         std::chrono::milliseconds send_timeout) noexcept;
    /// Detaches the entries still listed: each may be destroyed later, on its own.
    ~connection_deadlines();
    connection_deadlines(const connection_deadlines&) = delete;
    connection_deadlines& operator=(const connection_deadlines&) = delete;

    /// Live connections (added and not yet removed).
    std::size_t size() const noexcept { return m_size; }

    /// Runs until the context stops: every tick, expires the connections whose deadline
    /// passed. Spawn it once.
    task<void> sweep();

    /// Half-closes the receive side of every live connection (the drain on SIGINT): each
    /// echoes what it has already received, then sees end of stream and closes.
    void shut_down_receives() noexcept;

    /// Shuts down both directions of every live connection and makes its close discard
    /// what is unsent (the end of a drain: a second signal or the drain timeout). This, not
    /// io_uring's cancel, is what ends a send blocked on a peer that never reads: after a
    /// spurious wakeup the kernel hands such a send to an io-wq worker, where it blocks in
    /// the socket and ASYNC_CANCEL reports ENOENT (seen on 6.18; docs/cancellation.md).
    void shut_down_all() noexcept;

    /// Connections closed by a timeout so far, for -v and the tests.
    std::uint64_t idle_expired() const noexcept { return m_idle_expired; }
    std::uint64_t send_expired() const noexcept { return m_send_expired; }

private:
    friend class entry;
    void expire(entry& connection, bool stalled_reader) noexcept;

    io_context* m_context;
    std::uint64_t m_tick = 0;
    std::uint64_t m_idle_ticks = 0; // 0: off
    std::uint64_t m_send_ticks = 0; // 0: off
    std::chrono::milliseconds m_period{0};
    entry* m_head = nullptr;
    std::size_t m_size = 0;
    std::uint64_t m_idle_expired = 0;
    std::uint64_t m_send_expired = 0;
};

/// One connection's place in the list; lives in the connection's coroutine frame, from
/// accept to close. Unregisters itself when destroyed (unless the list is gone already:
/// then only its destructor may still run, nothing else).
class connection_deadlines::entry {
public:
    entry(connection_deadlines& owner, int fd) noexcept;
    ~entry();
    entry(const entry&) = delete;
    entry& operator=(const entry&) = delete;

    /// Before sending an echo: the connection was active now, and its send deadline starts.
    void sending() noexcept {
        m_since = m_owner->m_tick;
        m_sending = true;
    }
    /// After the echo went out: the idle deadline starts again from now.
    void sent() noexcept {
        m_since = m_owner->m_tick;
        m_sending = false;
    }
    /// The connection is closing its descriptor: from now on the number may belong to
    /// another socket, so neither a sweep nor a drain may touch it.
    void closing() noexcept { m_expired = true; }

private:
    friend class connection_deadlines;
    connection_deadlines* m_owner;
    int m_fd;
    std::uint64_t m_since;  // tick of the last activity, or of the start of the send
    bool m_sending = false; // a send is in flight: the send deadline applies, not idle
    bool m_expired = false; // shut down already; the coroutine is on its way to close
    entry* m_prev = nullptr;
    entry* m_next = nullptr;
};

} // namespace ucoro::apps
