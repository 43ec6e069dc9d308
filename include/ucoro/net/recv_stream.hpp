// co_await sock.recv_multishot(ring).next(): multishot receive into a buffer_ring.
#pragma once

#include <coroutine>
#include <optional>
#include <type_traits>

#include "ucoro/buffer_ring.hpp"
#include "ucoro/detail/multishot.hpp"
#include "ucoro/io_result.hpp"

namespace ucoro::net {

/// Receives with one request that keeps delivering (IORING_RECV_MULTISHOT): the kernel
/// picks a buffer from the ring only when data arrives, and next() hands the buffers out
/// in order. Data that arrives while the coroutine is busy waits in the stream, up to the
/// stream's share of the ring.
///
///     auto stream = connection.recv_multishot(ring);
///     while (true) {
///         auto [error, buffer] = co_await stream.next();
///         if (error || buffer.empty()) break; // an empty buffer is end of stream
///         ... buffer.bytes() ...              // back to the ring when `buffer` goes
///     }
///
/// The ring is shared fairly (buffer_ring.hpp, "Fairness"): the stream holds at most
/// buffer_ring_options::stream_queue_limit buffers, queued or in the coroutine's hands, and
/// stops receiving at that share until the coroutine gives some back and calls next()
/// again; if the ring is empty when data arrives, it receives into a buffer of its own
/// instead of waiting for other streams. A coroutine that holds its whole share and waits
/// for more gets no_buffer_space at once (copy out what you keep, or raise the share).
/// A completion without IORING_CQE_F_MORE re-arms at once while data flows; after end of
/// stream or an error, the next call to next() re-arms. On a kernel without multishot
/// receive (before 6.0), or with io_context_options::multishot_recv off, each request is a
/// single receive into the ring, re-armed the same way: the same behaviour.
///
/// Cancellation is partial (detail/multishot.hpp): a cancel that reaches a coroutine
/// waiting in next() (when_any, task_handle::cancel, stop()) resumes it with
/// operation_canceled and leaves the request armed, and what arrives stays queued for the
/// next call. Dropping the stream is what ends the request: the context cancels it and
/// gives back to the ring every buffer that still arrives. One coroutine at a time may wait
/// in next(); a second throws std::logic_error. A moved-from stream is empty: next() then
/// completes at once with bad_file_descriptor. The stream keeps the ring's memory alive
/// (buffer_ring.hpp); it must not outlive the socket, whose descriptor it uses.
class recv_stream {
public:
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

    /// Where the request is (detail/multishot.hpp's state table), for tests and diagnostics.
    detail::multishot_state state() const noexcept;

private:
    // socket::recv_multishot(ring) makes it, on its own descriptor, once it has checked
    // that the ring belongs to its context.
    friend class socket;
    recv_stream(buffer_ring& ring, int fd);

    class request;
    detail::multishot_ptr<request> m_request;
};

class [[nodiscard]] recv_stream::next_awaiter {
public:
    bool await_ready() const noexcept;
    /// Awaited in a task (with its promise type, not erased), the task's cancellation scope
    /// can end the wait with operation_canceled.
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> waiter) {
        if constexpr (std::is_base_of_v<detail::task_promise_base, Promise>) {
            wait(waiter, waiter.promise().m_scope);
        } else {
            wait(waiter, nullptr);
        }
    }
    io_result<buffer_ring::buffer> await_resume() noexcept;

private:
    /// A completion of the request as the value next() and try_next() give.
    static io_result<buffer_ring::buffer> to_result(request& from,
                                                    const detail::completion& c) noexcept;

    friend class recv_stream;
    explicit next_awaiter(request* from) noexcept : m_request(from) {}
    void wait(std::coroutine_handle<> waiter, detail::cancellation_scope* scope);

    request* m_request; // null for a moved-from stream
    detail::wait_slot m_slot;
};

} // namespace ucoro::net
