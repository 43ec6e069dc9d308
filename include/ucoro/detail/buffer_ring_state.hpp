// The shared state behind a buffer_ring: the registered ring, its memory, who waits for it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

struct io_uring_buf_ring;

namespace ucoro {
class io_context;
struct buffer_ring_options;
} // namespace ucoro

namespace ucoro::detail {

/// Where a lent buffer goes back to: the receive stream it was lent to, which counts what
/// it holds (its share of the ring) and owns the buffers of its own it received into when
/// the ring was empty. buffer_ring::buffer calls give_back() when it is reset.
class buffer_source {
public:
    /// Buffer `id` at `data` (a ring buffer id, or private_id for one of the stream's own)
    /// is back.
    virtual void give_back(std::uint16_t id, std::byte* data) noexcept = 0;

    /// The id of a buffer that is not the ring's (a ring has at most 32768 buffers).
    static constexpr std::uint16_t private_id = 0xFFFF;

protected:
    buffer_source() = default;
    ~buffer_source() = default;
};

/// Reference-counted by the buffer_ring handle and by every receive stream using it (a
/// stream lives on until every buffer lent to it is back), so the memory the kernel writes
/// into lives until the last of them lets go, whatever the order. The last one unregisters the ring
/// from the kernel; all of them must go before the io_context (as every object made from it).
class buffer_ring_state {
public:
    /// Registers a new ring under the first buffer group id the kernel has free. Throws
    /// std::invalid_argument for bad sizes, std::system_error when the kernel refuses.
    static buffer_ring_state* create(io_context& context, const buffer_ring_options& options);

    void add_ref() noexcept { ++m_references; }
    void remove_ref() noexcept;

    io_context& context() const noexcept { return *m_context; }
    std::uint16_t group() const noexcept { return m_group; }
    unsigned count() const noexcept { return m_count; }
    std::size_t buffer_size() const noexcept { return m_buffer_size; }
    unsigned stream_queue_limit() const noexcept { return m_stream_queue_limit; }
    /// Buffers in the ring, as far as the completions seen so far tell.
    unsigned available() const noexcept { return m_count - m_lent; }
    std::byte* data(std::uint16_t id) const noexcept { return m_buffers + id * m_buffer_size; }

    /// A completion carried `buffers` buffers (IORING_CQE_F_BUFFER): out of the ring.
    void lend(unsigned buffers = 1) noexcept { m_lent += buffers; }
    /// The id of the buffer `offset` places after `first` in the ring, where a bundle
    /// completion (which names only its first buffer) took the rest from: the kernel takes
    /// a bundle's buffers from consecutive ring entries. Valid while those buffers are
    /// still lent out (their entries cannot have been reused: the ring holds at most
    /// count() entries, and these are among them).
    std::uint16_t id_after(std::uint16_t first, unsigned offset) const noexcept;
    /// Puts buffer `id` back in the ring (its stream has counted it back already).
    void give_back(std::uint16_t id) noexcept;

    /// A buffer of buffer_size() bytes for a stream's own receive (ring empty): a spare one
    /// if any is kept, otherwise a new one; null when out of memory.
    std::byte* take_private() noexcept;
    /// A stream's own buffer is back: kept as a spare (up to max_spares), else freed. Reuse
    /// keeps a stream of private receives from costing an allocation each.
    void return_private(std::byte* data) noexcept;
    static constexpr std::size_t max_spares = 16;

    /// The buffer_ring handle is gone: a stream that runs out of buffers now ends instead
    /// of waiting for one.
    void close() noexcept;
    bool closed() const noexcept { return m_closed; }

    std::uint64_t enobufs_rearms = 0;   // re-arms after the ring ran empty
    std::uint64_t bundles = 0;          // completions that carried several buffers
    std::uint64_t private_receives = 0; // receives into a stream's own buffer (ring empty)
    std::uint64_t share_pauses = 0;     // times a stream stopped receiving at its share

private:
    buffer_ring_state() = default;
    ~buffer_ring_state();

    io_context* m_context = nullptr;
    io_uring_buf_ring* m_ring = nullptr; // the kernel's view: ring entries, then buffers
    std::byte* m_buffers = nullptr;
    std::size_t m_mapping_size = 0;
    std::size_t m_buffer_size = 0;
    unsigned m_count = 0;
    unsigned m_stream_queue_limit = 0;
    unsigned m_lent = 0;
    std::uint16_t m_group = 0;
    bool m_registered = false;
    bool m_closed = false;
    unsigned m_references = 1;
    std::unique_ptr<std::uint16_t[]> m_entry_of; // ring entry (tail value) each id was put at
    std::byte* m_spares[max_spares] = {};        // private buffers kept for reuse
    std::size_t m_spare_count = 0;
};

} // namespace ucoro::detail
