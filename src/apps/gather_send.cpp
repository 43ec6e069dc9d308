#include "gather_send.hpp"

#include <span>

namespace ucoro::apps {

// One per thread, as the io_context.
gather_pool& this_thread_gather_pool() {
    static thread_local gather_pool pool;
    return pool;
}

// Moves `first` and the buffers already waiting in `stream` into `slot`, until the stream
// has none or the slot is full, noting whether the stream ended. Not a coroutine, so its
// temporaries take no room in the connection's frame.
void fill_batch(gather_slot& slot, buffer_ring::buffer first, net::recv_stream& stream) {
    slot.held[slot.count++] = std::move(first);
    while (slot.count < gather_slot::capacity) {
        auto waiting = stream.try_next();
        if (!waiting) {
            return;
        }
        if (waiting->error || waiting->value.empty()) {
            slot.ended = true; // echo what came before the end, then stop
            slot.end_error = waiting->error;
            return;
        }
        slot.held[slot.count++] = std::move(waiting->value);
    }
}

// Prepares the slot's sendmsg over its buffers.
await_in_place prepare_gather(gather_slot& slot, net::socket& connection) {
    for (std::size_t i = 0; i < slot.count; ++i) {
        slot.pieces[i] = {slot.held[i].bytes().data(), slot.held[i].size()};
    }
    // Built in place: an operation cannot move (the kernel may point at it). The conversion
    // returns a prvalue, which initialises the optional's storage directly.
    struct in_place {
        net::socket& connection;
        std::span<iovec> pieces;
        operator net::send_all_gather_operation() const noexcept {
            return connection.send_all_gather(pieces);
        }
    };
    return {&slot.send.emplace(in_place{connection, std::span(slot.pieces).first(slot.count)})};
}

} // namespace ucoro::apps
