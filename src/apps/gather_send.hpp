// Gather sends for the echo server's fast path: the buffers waiting in a receive stream go
// back in one sendmsg, from a slot lent by a per-thread pool for the time of one batch.
#pragma once

#include <sys/uio.h>

#include <array>
#include <coroutine>
#include <cstddef>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_result.hpp"
#include "ucoro/net/recv_stream.hpp"
#include "ucoro/net/send_gather.hpp"
#include "ucoro/net/socket.hpp"

namespace ucoro::apps {

// What a gather send of up to 16 buffers needs while it is in flight: the buffers, their
// iovec array and the sendmsg awaiter (about 1 KiB). It is lent to a connection only for
// the time of one batch and is not in the connection's frame: kept there, it would cost
// each idle connection that 1 KiB (measured: 2.0 -> 3.1 KiB of RSS per idle connection at
// 5,000), as much as the rest of the connection.
struct gather_slot {
    // 16: the stream's default queue limit, so one batch takes all that can be waiting.
    static constexpr std::size_t capacity = 16;
    std::array<buffer_ring::buffer, capacity> held;
    std::array<iovec, capacity> pieces{};
    std::size_t count = 0;
    bool ended = false; // the stream ended after these buffers
    std::error_code end_error;
    std::optional<net::send_all_gather_operation> send;
    gather_slot* next_free = nullptr;
};

// The slots of this thread's connections. At most `limit` exist; when all are lent out a
// connection sends its buffers one by one, as without batching. Slots are made on first
// need and reused, so a steady stream allocates nothing.
class gather_pool {
public:
    static constexpr std::size_t limit = 64;

    gather_pool() = default;
    gather_pool(const gather_pool&) = delete;
    gather_pool& operator=(const gather_pool&) = delete;
    // A slot still lent out at thread exit is leaked on purpose: its sendmsg may still be in
    // flight (a context that leaked frames never drained it), and the kernel would read the
    // freed iovecs. Only the slots back in the free list are freed.
    ~gather_pool() {
        for (auto& slot : m_slots) {
            if (!is_free(slot.get())) {
                (void)slot.release();
            }
        }
    }

    gather_slot* acquire() {
        if (m_free == nullptr) {
            if (m_slots.size() == limit) {
                return nullptr;
            }
            m_slots.push_back(std::make_unique<gather_slot>());
            return m_slots.back().get();
        }
        return std::exchange(m_free, m_free->next_free);
    }

    // Every buffer goes back to its ring here, after the send has completed (or the
    // coroutine is destroyed, which the context does only once nothing is in flight).
    void release(gather_slot* slot) noexcept {
        slot->send.reset();
        for (std::size_t i = 0; i < slot->count; ++i) {
            slot->held[i].reset();
        }
        slot->count = 0;
        slot->ended = false;
        slot->end_error.clear();
        slot->next_free = std::exchange(m_free, slot);
    }

private:
    bool is_free(const gather_slot* slot) const noexcept {
        for (const gather_slot* free = m_free; free != nullptr; free = free->next_free) {
            if (free == slot) {
                return true;
            }
        }
        return false;
    }

    std::vector<std::unique_ptr<gather_slot>> m_slots;
    gather_slot* m_free = nullptr;
};

/// This thread's pool (one per thread, as the io_context).
gather_pool& this_thread_gather_pool();

// A slot lent for one batch (or none), returned however the coroutine leaves, including
// its destruction. One pointer: every byte here is in each connection's frame.
class gather_lease {
public:
    explicit gather_lease(gather_slot* slot) noexcept : m_slot(slot) {}
    gather_lease(const gather_lease&) = delete;
    gather_lease& operator=(const gather_lease&) = delete;
    ~gather_lease() {
        if (m_slot != nullptr) {
            this_thread_gather_pool().release(m_slot);
        }
    }
    gather_slot* get() const noexcept { return m_slot; }

private:
    gather_slot* m_slot;
};

// Moves `first` and the buffers already waiting in `stream` into `slot`, until the stream
// has none or the slot is full, noting whether the stream ended. Not a coroutine, so its
// temporaries take no room in the connection's frame.
void fill_batch(gather_slot& slot, buffer_ring::buffer first, net::recv_stream& stream);

// Awaits an operation that lives elsewhere (in a slot): GCC 12 copies an lvalue awaiter
// into the frame, and an operation cannot be copied; this keeps one pointer there instead.
struct await_in_place {
    net::send_all_gather_operation* op;
    bool await_ready() const noexcept { return op->await_ready(); }
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> waiter) {
        op->await_suspend(waiter); // with the task's cancellation scope, as a direct await
    }
    io_result<std::size_t> await_resume() const noexcept { return op->await_resume(); }
};

// Prepares the slot's sendmsg over its buffers; co_await the result.
await_in_place prepare_gather(gather_slot& slot, net::socket& connection);

} // namespace ucoro::apps
