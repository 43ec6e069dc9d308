#include "ucoro/detail/buffer_ring_state.hpp"

#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <system_error>

#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::detail {

namespace {

constexpr unsigned max_buffers = 32768; // the kernel's limit for one provided-buffer ring

std::size_t round_up_to_page(std::size_t size) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return (size + page - 1) / page * page;
}

} // namespace

buffer_ring_state* buffer_ring_state::create(io_context& context,
                                             const buffer_ring_options& options) {
    const unsigned count = options.count;
    if (count == 0 || count > max_buffers || (count & (count - 1)) != 0) {
        throw std::invalid_argument("buffer_ring: count must be a power of two from 1 to 32768");
    }
    if (options.buffer_size == 0 ||
        options.buffer_size > std::numeric_limits<std::uint32_t>::max() ||
        options.buffer_size > std::numeric_limits<std::size_t>::max() / 2 / count) {
        throw std::invalid_argument("buffer_ring: buffer_size must be from 1 byte to 4 GiB");
    }
    if (options.stream_queue_limit == 0) {
        throw std::invalid_argument("buffer_ring: stream_queue_limit must be at least 1");
    }
    if (!context.features().buffer_rings) {
        throw std::system_error(std::make_error_code(std::errc::function_not_supported),
                                "buffer_ring: provided-buffer rings need Linux 5.19 "
                                "(IORING_REGISTER_PBUF_RING) and io_context_options::buffer_rings");
    }

    auto* state = new buffer_ring_state();
    state->m_context = &context;
    state->m_count = count;
    state->m_buffer_size = options.buffer_size;
    state->m_stream_queue_limit = options.stream_queue_limit;
    try {
        // One anonymous mapping: the ring entries (page aligned, as the kernel requires),
        // then the buffers. Pages are touched only when a buffer is first written.
        const std::size_t ring_bytes = round_up_to_page(count * sizeof(io_uring_buf));
        state->m_mapping_size = ring_bytes + round_up_to_page(count * options.buffer_size);
        void* memory = ::mmap(nullptr, state->m_mapping_size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) {
            state->m_mapping_size = 0;
            throw std::system_error(errno, std::system_category(), "buffer_ring: mmap");
        }
        state->m_ring = static_cast<io_uring_buf_ring*>(memory);
        state->m_buffers = static_cast<std::byte*>(memory) + ring_bytes;

        // The first group id the kernel does not know yet: whatever else registered groups
        // on this ring (another buffer_ring, the user's own provided buffers) keeps its own.
        io_uring_buf_reg registration{};
        registration.ring_addr = reinterpret_cast<std::uintptr_t>(memory);
        registration.ring_entries = count;
        int result = -EEXIST;
        for (unsigned group = 0; group <= std::numeric_limits<std::uint16_t>::max(); ++group) {
            registration.bgid = static_cast<std::uint16_t>(group);
            result = io_uring_register_buf_ring(&native_ring(context), &registration, 0);
            if (result != -EEXIST) {
                break;
            }
        }
        if (result < 0) {
            throw std::system_error(-result, std::system_category(),
                                    result == -EINVAL ? "buffer_ring: the kernel refused "
                                                        "IORING_REGISTER_PBUF_RING (Linux 5.19+)"
                                                      : "buffer_ring: io_uring_register_buf_ring");
        }
        state->m_group = registration.bgid;
        state->m_registered = true;

        io_uring_buf_ring_init(state->m_ring);
        state->m_entry_of = std::make_unique<std::uint16_t[]>(count);
        const int mask = io_uring_buf_ring_mask(count);
        for (unsigned id = 0; id < count; ++id) {
            state->m_entry_of[id] = static_cast<std::uint16_t>(id);
            io_uring_buf_ring_add(state->m_ring, state->data(static_cast<std::uint16_t>(id)),
                                  static_cast<unsigned>(options.buffer_size),
                                  static_cast<unsigned short>(id), mask, static_cast<int>(id));
        }
        io_uring_buf_ring_advance(state->m_ring, static_cast<int>(count));
    } catch (...) {
        delete state;
        throw;
    }
    return state;
}

std::byte* buffer_ring_state::take_private() noexcept {
    if (m_spare_count > 0) {
        return m_spares[--m_spare_count];
    }
    return new (std::nothrow) std::byte[m_buffer_size];
}

void buffer_ring_state::return_private(std::byte* data) noexcept {
    if (m_spare_count < max_spares) {
        m_spares[m_spare_count++] = data;
    } else {
        delete[] data;
    }
}

buffer_ring_state::~buffer_ring_state() {
    while (m_spare_count > 0) {
        delete[] m_spares[--m_spare_count];
    }
    if (m_registered) {
        // Nothing refers to the ring any more: no stream can be armed on it, and no buffer
        // is lent out.
        io_uring_unregister_buf_ring(&native_ring(*m_context), m_group);
    }
    if (m_mapping_size != 0) {
        ::munmap(m_ring, m_mapping_size);
    }
}

void buffer_ring_state::remove_ref() noexcept {
    if (--m_references == 0) {
        delete this;
    }
}

std::uint16_t buffer_ring_state::id_after(std::uint16_t first, unsigned offset) const noexcept {
    const unsigned entry = (m_entry_of[first] + offset) & (m_count - 1);
    return m_ring->bufs[entry].bid;
}

void buffer_ring_state::give_back(std::uint16_t id) noexcept {
    m_entry_of[id] = m_ring->tail; // only this thread moves the tail
    io_uring_buf_ring_add(m_ring, data(id), static_cast<unsigned>(m_buffer_size), id,
                          io_uring_buf_ring_mask(m_count), 0);
    io_uring_buf_ring_advance(m_ring, 1);
    --m_lent;
}

void buffer_ring_state::close() noexcept {
    m_closed = true;
    remove_ref();
}

} // namespace ucoro::detail
