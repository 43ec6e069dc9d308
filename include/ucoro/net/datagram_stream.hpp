// co_await sock.receive_from_multishot(ring).next(): multishot recvmsg into a buffer_ring.
#pragma once

#include <coroutine>
#include <cstddef>
#include <optional>
#include <type_traits>

#include "ucoro/buffer_ring.hpp"
#include "ucoro/detail/multishot.hpp"
#include "ucoro/io_result.hpp"
#include "ucoro/net/address.hpp"

namespace ucoro::net {

/// One received datagram: its bytes, on loan from the ring until `payload` goes (as with
/// recv_stream), and who sent it.
struct datagram {
    /// The bytes that fit; empty for a zero-length datagram (which is a datagram, not an end).
    buffer_ring::buffer payload;
    /// The datagram's length as sent: more than payload.size() when it was truncated.
    std::size_t full_size = 0;
    address sender;
};

/// Receives datagram after datagram with one IORING_OP_RECVMSG request that keeps
/// delivering (IORING_RECV_MULTISHOT, Linux 6.0). The kernel lays each datagram out in one
/// ring buffer (an io_uring_recvmsg_out header, the sender's address, then the bytes), and
/// next() hands them out in order with the sender parsed:
///
///     auto stream = sock.receive_from_multishot(ring);
///     while (true) {
///         auto [error, d] = co_await stream.next();
///         if (error) break;               // operation_canceled once the socket is closed
///         ... d.payload.bytes(), d.sender ...
///     }
///
/// A datagram larger than a buffer's room (buffer_size minus datagram_stream::overhead
/// bytes) is truncated, and that is reported: the error is std::errc::message_size, and the
/// value still holds what fitted, the full length and the sender.
///
/// The ring is shared by the same rule as recv_stream (buffer_ring.hpp, "Fairness"), with
/// one difference that UDP allows: at its share (stream_queue_limit buffers queued or in
/// the coroutine's hands) the stream stops receiving (its request is cancelled), and the
/// datagrams that arrive meanwhile wait in the socket's receive buffer, bounded by
/// SO_RCVBUF; beyond it the kernel drops them, as UDP always may. So a slow coroutine costs
/// the ring its share, never more, and no sender can make it take more. If the ring is empty
/// when a datagram arrives, the stream receives that one datagram into one buffer of its own
/// (one, not recv_stream's two: a datagram is never split over buffers) rather than wait for
/// buffers other streams hold; a coroutine that waits for the next datagram while that
/// buffer is still in its hands and the ring is still empty gets no_buffer_space at once.
///
/// Cancellation is partial, as for recv_stream: a cancel that reaches a coroutine waiting in
/// next() resumes it with operation_canceled and what arrives stays queued. Closing the
/// socket through the ring ends the request: next() gives operation_canceled, at once and
/// from then on. Dropping the stream ends it too, and every buffer still in flight goes
/// back to the ring. Without multishot receive (a kernel before 6.0, or
/// io_context_options::multishot_recv off) next() completes at once with
/// operation_not_supported: use udp_socket::receive_from in a loop instead.
class datagram_stream {
public:
    /// Bytes of each ring buffer taken before the datagram's own: the kernel's header
    /// (io_uring_recvmsg_out, 16 bytes) and room for an IPv6 sender address.
    static constexpr std::size_t overhead = 16 + sizeof(sockaddr_in6);

    /// Throws std::invalid_argument if the ring's buffers leave no room for a datagram.
    datagram_stream(buffer_ring& ring, int fd);
    datagram_stream(datagram_stream&&) noexcept;
    datagram_stream& operator=(datagram_stream&&) noexcept;
    ~datagram_stream();

    class next_awaiter;
    /// The next datagram, or an error.
    [[nodiscard]] next_awaiter next() noexcept;

    /// How many results wait in the stream now: that many try_next() calls succeed.
    std::size_t ready() const noexcept;
    /// The next result if one is already waiting, without suspending.
    [[nodiscard]] std::optional<io_result<datagram>> try_next() noexcept;

    /// Where the request is (detail/multishot.hpp's state table), for tests and diagnostics.
    detail::multishot_state state() const noexcept;

private:
    class request;
    detail::multishot_ptr<request> m_request;
};

class [[nodiscard]] datagram_stream::next_awaiter {
public:
    bool await_ready() const noexcept;
    /// Awaited in a task, the task's cancellation scope can end the wait (operation_canceled).
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> waiter) {
        if constexpr (std::is_base_of_v<detail::task_promise_base, Promise>) {
            wait(waiter, waiter.promise().m_scope);
        } else {
            wait(waiter, nullptr);
        }
    }
    io_result<datagram> await_resume() noexcept;

private:
    static io_result<datagram> to_result(request& from, const detail::completion& c) noexcept;

    friend class datagram_stream;
    explicit next_awaiter(request* from) noexcept : m_request(from) {}
    void wait(std::coroutine_handle<> waiter, detail::cancellation_scope* scope);

    request* m_request; // null for a moved-from stream
    detail::wait_slot m_slot;
};

} // namespace ucoro::net
