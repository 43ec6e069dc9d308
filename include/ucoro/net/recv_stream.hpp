// co_await sock.recv_multishot(ring).next(): multishot receive into a buffer_ring.
#pragma once

#include <coroutine>
#include <optional>

#include "ucoro/buffer_ring.hpp"
#include "ucoro/detail/multishot.hpp"
#include "ucoro/io_result.hpp"

namespace ucoro::net {

/// Receives with one request that keeps delivering (IORING_RECV_MULTISHOT): the kernel
/// picks a buffer from the ring only when data arrives, and next() hands the buffers out
/// in order. Data that arrives while the coroutine is busy waits in the stream, bounded by
/// the ring.
///
///     auto stream = connection.recv_multishot(ring);
///     while (true) {
///         auto [error, buffer] = co_await stream.next();
///         if (error || buffer.empty()) break; // an empty buffer is end of stream
///         ... buffer.bytes() ...              // back to the ring when `buffer` goes
///     }
///
/// The ring running empty (ENOBUFS) is not reported: the stream waits, without polling,
/// until a buffer comes back, and re-arms (counted in buffer_ring::enobufs_rearms()). So
/// release buffers before waiting for more, or hold fewer at once than the ring has. A
/// completion without IORING_CQE_F_MORE re-arms at once while data flows; after end of
/// stream or an error, the next call to next() re-arms. With buffer_ring_options::
/// stream_queue_limit buffers waiting, the stream stops receiving until the coroutine has
/// caught up, so a slow coroutine cannot drain the ring shared with other connections.
/// On a kernel without multishot receive (before 6.0), or with io_context_options::multishot_recv
/// off, each request is a single receive into the ring, re-armed the same way: the same behaviour.
///
/// Destroying the stream with its request armed is safe: the context cancels it and gives
/// back to the ring every buffer that still arrives (detail/multishot.hpp says how). The
/// stream keeps the ring's memory alive (buffer_ring.hpp); it must not outlive the socket,
/// whose descriptor it uses.
class recv_stream {
public:
    recv_stream(buffer_ring& ring, int fd);
    recv_stream(recv_stream&&) noexcept;
    recv_stream& operator=(recv_stream&&) noexcept;
    ~recv_stream();

    class next_awaiter;
    /// The next buffer of received bytes (empty at end of stream), or an error.
    [[nodiscard]] next_awaiter next() noexcept;

    /// How many results wait in the stream now: that many try_next() calls succeed.
    std::size_t ready() const noexcept;
    /// The next result if one is already waiting, without suspending; otherwise nothing
    /// (then co_await next(), which also re-arms the request when needed). A consumer that
    /// sends its echo with one gather send takes every buffer waiting this way.
    [[nodiscard]] std::optional<io_result<buffer_ring::buffer>> try_next() noexcept;

private:
    class request;
    detail::multishot_ptr<request> m_request;
};

class [[nodiscard]] recv_stream::next_awaiter {
public:
    bool await_ready() const noexcept { return m_next.await_ready(); }
    /// Awaited in a task (with its promise type, not erased), the task's cancellation scope
    /// can end the wait with operation_canceled.
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> waiter) {
        m_next.await_suspend(waiter);
    }
    io_result<buffer_ring::buffer> await_resume() noexcept;

private:
    /// A completion of the request as the value next() and try_next() give.
    static io_result<buffer_ring::buffer> to_result(detail::buffer_ring_state& ring,
                                                    const detail::completion& c) noexcept;

    friend class recv_stream;
    next_awaiter(detail::buffer_ring_state& ring, detail::multishot_operation& op) noexcept
        : m_ring(&ring), m_next{op} {}

    detail::buffer_ring_state* m_ring;
    detail::next_completion m_next;
};

} // namespace ucoro::net
