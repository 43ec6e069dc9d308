// buffer_ring: receive buffers the kernel picks from when data arrives (provided-buffer ring).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "ucoro/detail/buffer_ring_state.hpp"

namespace ucoro {

class io_context;
namespace net {
class recv_stream;
class datagram_stream;
} // namespace net

/// How many buffers, and how large. The memory (count * buffer_size, plus one ring entry
/// per buffer) is reserved up front and touched only as buffers are first used.
struct buffer_ring_options {
    /// A power of two, at most 32768 (the kernel's limit). The default serves 1,024
    /// connections that each hold one buffer at a time.
    unsigned count = 1024;
    /// A receive takes at most this many bytes at once; larger messages arrive in several
    /// buffers, in order. 4 KiB: one page, and more than a typical request.
    std::size_t buffer_size = 4096;
    /// Buffers one stream may hold at once (its share): those queued for its coroutine and
    /// those still in the coroutine's hands (a send in flight, a gather batch). At its share
    /// a stream stops receiving until buffers come back, so a peer that sends and never
    /// reads our replies is pushed back by TCP alone. See "Fairness" below.
    unsigned stream_queue_limit = 16;
};

/// N buffers of S bytes registered with the kernel as a provided-buffer ring
/// (IORING_REGISTER_PBUF_RING, Linux 5.19). A receive stream (socket::recv_multishot) asks
/// the kernel to pick a buffer only when data arrives, so an idle connection holds none:
/// the ring, not the connection, owns the memory. The buffer group id is the first one
/// free in this io_context, not a constant, so several rings can coexist.
///
/// Each received buffer reaches the coroutine as a buffer_ring::buffer, a move-only handle
/// that puts the buffer back in the ring when it is destroyed or reset(): hold it only as
/// long as needed (typically until the echo's send has completed).
///
/// Fairness: the ring is shared, and no stream may starve another of it. The rule, which
/// every receive stream (recv_stream.hpp) follows:
/// - A stream holds at most stream_queue_limit buffers (its share): queued, or in its
///   coroutine's hands, its own buffers (below) included. At that share it stops
///   receiving: its request is armed with a byte limit where the kernel has one
///   (ring_features::recv_limit, Linux 6.16), or cancelled, and what the kernel delivers
///   before the cancel lands is counted too. Its coroutine's next next() receives again
///   once buffers are back. Its peer is then pushed back by TCP, not by the ring.
/// - A stream that finds the ring empty (data waiting, no buffer) receives that data once
///   into a buffer of its own (at most 2 at a time, within its share; reused through a
///   small pool of spares, freed beyond it), instead of waiting for buffers other streams
///   hold.
/// - A coroutine that holds its whole share and waits for more gets no_buffer_space at
///   once: that wait could never end.
/// So however many streams stop draining (peers that never read, coroutines that stall),
/// every other stream is served without waiting for them: through the ring while it has
/// buffers, through buffers of its own when not. What one stream can take is its share of
/// the ring, plus 2 buffers of memory. An idle stream holds nothing either way. Counted in
/// private_receives() and share_pauses().
///
/// Lifetime: the memory and the kernel registration are shared by this object, the streams
/// using it and the buffers lent out, and go with the last of them, so nothing the kernel
/// may still write into is freed early. Destroy the buffer_ring after the streams that use
/// it: once it is gone, a stream that runs out of buffers ends with operation_canceled
/// instead of waiting. Everything must go before the io_context.
///
/// Without kernel support (before 5.19, or io_context_options::buffer_rings off),
/// is_supported() is false and the constructor throws std::system_error (ENOSYS): use
/// socket::recv into your own buffer instead, as the echo server's --simple path does.
class buffer_ring {
public:
    class buffer;

    /// Whether `context` can register buffer rings (probed when it was created).
    static bool is_supported(const io_context& context) noexcept;

    /// Throws std::invalid_argument for a count that is not a power of two in [1, 32768], an
    /// empty buffer_size or a stream_queue_limit of 0; std::system_error when the kernel
    /// refuses (see above).
    explicit buffer_ring(io_context& context, buffer_ring_options options = {});
    buffer_ring(buffer_ring&& other) noexcept : m_state(std::exchange(other.m_state, nullptr)) {}
    buffer_ring& operator=(buffer_ring&&) = delete;
    buffer_ring(const buffer_ring&) = delete;
    buffer_ring& operator=(const buffer_ring&) = delete;
    ~buffer_ring();

    io_context& context() const noexcept { return m_state->context(); }
    /// The buffer group id the kernel knows this ring by (sqe->buf_group).
    std::uint16_t group() const noexcept { return m_state->group(); }
    unsigned count() const noexcept { return m_state->count(); }
    std::size_t buffer_size() const noexcept { return m_state->buffer_size(); }
    unsigned stream_queue_limit() const noexcept { return m_state->stream_queue_limit(); }
    /// Buffers in the ring now; count() once every buffer has been given back.
    unsigned available() const noexcept { return m_state->available(); }
    /// How often a stream re-armed its receive after the ring had run empty (ENOBUFS).
    std::uint64_t enobufs_rearms() const noexcept { return m_state->enobufs_rearms; }
    /// Completions that carried more than one buffer (io_context_options::recv_bundle).
    std::uint64_t bundles() const noexcept { return m_state->bundles; }
    /// Receives into a stream's own buffer because the ring was empty (see Fairness).
    std::uint64_t private_receives() const noexcept { return m_state->private_receives; }
    /// Times a stream stopped receiving because it held its share.
    std::uint64_t share_pauses() const noexcept { return m_state->share_pauses; }

private:
    friend class net::recv_stream;     // shares the state with each request it makes
    friend class net::datagram_stream; // likewise

    detail::buffer_ring_state* m_state;
};

/// One received buffer: the bytes that arrived, on loan from the stream that received them
/// (and so from the ring, or the stream's own buffer) until this handle is destroyed or
/// reset(). Move-only. A default-constructed (or moved-from) buffer is empty.
class buffer_ring::buffer {
public:
    buffer() noexcept = default;
    /// Takes over buffer `id` lent by `source`: `size` bytes at `data`.
    buffer(detail::buffer_source& source, std::uint16_t id, std::byte* data,
           std::size_t size) noexcept
        : m_source(&source), m_data(data), m_size(size), m_id(id) {}
    buffer(buffer&& other) noexcept
        : m_source(std::exchange(other.m_source, nullptr)), m_data(other.m_data),
          m_size(std::exchange(other.m_size, 0)), m_id(other.m_id) {}
    buffer& operator=(buffer&& other) noexcept;
    buffer(const buffer&) = delete;
    buffer& operator=(const buffer&) = delete;
    ~buffer() { reset(); }

    /// The received bytes.
    std::span<std::byte> bytes() const noexcept { return {m_data, m_size}; }
    std::size_t size() const noexcept { return m_size; }
    bool empty() const noexcept { return m_size == 0; }

    /// Gives the buffer back now; the handle becomes empty.
    void reset() noexcept;

private:
    detail::buffer_source* m_source = nullptr;
    std::byte* m_data = nullptr;
    std::size_t m_size = 0;
    std::uint16_t m_id = 0;
};

} // namespace ucoro
