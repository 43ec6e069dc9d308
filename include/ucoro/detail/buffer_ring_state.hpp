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

/// Something waiting for a buffer to come back to the ring: a receive stream whose request
/// ended with ENOBUFS. It is parked until then, so that it re-arms without spinning.
class buffer_waiter {
public:
    /// Called once per park, after unparking: a buffer is back (`ring_usable`), or the ring
    /// will not be refilled for it (its buffer_ring was destroyed, or the context stops).
    virtual void buffers_available(bool ring_usable) noexcept = 0;

protected:
    buffer_waiter() = default;
    ~buffer_waiter() = default;

private:
    friend class buffer_ring_state;
    buffer_waiter* m_prev = nullptr;
    buffer_waiter* m_next = nullptr;
    bool m_parked = false;
};

/// Reference-counted by the buffer_ring handle, by every receive stream using it and by
/// every buffer lent out, so the memory the kernel writes into lives until the last of
/// them lets go, whatever the order. The last one unregisters the ring from the kernel;
/// all of them must go before the io_context (as every object made from it).
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
    /// Puts buffer `id` back in the ring and wakes the oldest parked waiter, if any.
    void give_back(std::uint16_t id) noexcept;

    void park(buffer_waiter& waiter) noexcept;
    void unpark(buffer_waiter& waiter) noexcept;

    /// The buffer_ring handle is gone: nobody will be re-armed any more; waiters hear so.
    void close() noexcept;
    bool closed() const noexcept { return m_closed; }

    std::uint64_t enobufs_rearms = 0; // re-arms after the ring ran empty
    std::uint64_t bundles = 0;        // completions that carried several buffers

private:
    buffer_ring_state() = default;
    ~buffer_ring_state();
    void wake_first(bool ring_usable) noexcept;

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
    buffer_waiter* m_parked_head = nullptr;
    buffer_waiter* m_parked_tail = nullptr;
};

} // namespace ucoro::detail
