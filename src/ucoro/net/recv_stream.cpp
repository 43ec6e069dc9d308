#include "ucoro/net/recv_stream.hpp"

#include <liburing.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <utility>

#include "ucoro/detail/ring.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::net {

namespace {

// Linux 6.10; liburing 2.3's header predates it. Probed as ring_features::recv_bundle.
constexpr unsigned recvsend_bundle = 1U << 4; // IORING_RECVSEND_BUNDLE

} // namespace

// The receive side of the ring's fairness rule (buffer_ring.hpp, "Fairness"): how many
// buffers this stream holds, when it stops receiving, and the buffers of its own it
// receives into when the ring is empty. Its request's states are multishot_operation's.
class recv_stream::request final : public detail::multishot_operation,
                                   public detail::buffer_source {
public:
    request(detail::buffer_ring_state& ring, int fd) noexcept
        : multishot_operation(ring.context()), m_ring(&ring), m_fd(fd),
          m_multishot(ring.context().features().multishot_recv),
          m_bundle(ring.context().features().recv_bundle),
          m_limit(ring.context().features().recv_limit) {
        ring.add_ref();
    }

    ~request() override {
        // Nothing is in the kernel and nothing is lent out (has_loans() was false), so
        // only buffers received but never handed out can be left: none, as discard_completion()
        // frees those; this is for safety alone.
        while (m_ready_count > 0) {
            m_ring->return_private(take_private());
        }
        m_ring->remove_ref();
    }

    void prepare(io_uring_sqe& sqe) noexcept override {
        if (m_private_in_flight != nullptr) {
            // Data is waiting (the ring's receive said ENOBUFS), so this completes at once.
            io_uring_prep_recv(&sqe, m_fd, m_private_in_flight, m_ring->buffer_size(), 0);
            return;
        }
        // Length 0: each receive takes up to one whole buffer. POLL_FIRST: the kernel
        // picks a buffer only once data is there, so ENOBUFS always means data is waiting
        // (and an idle connection holds no buffer).
        io_uring_prep_recv(&sqe, m_fd, nullptr, 0, 0);
        sqe.flags |= IOSQE_BUFFER_SELECT;
        sqe.buf_group = m_ring->group();
        sqe.ioprio |= IORING_RECVSEND_POLL_FIRST;
        if (m_multishot) {
            sqe.ioprio |= IORING_RECV_MULTISHOT;
            if (m_limit) {
                // No more than the rest of our share: the kernel ends the request there.
                // may_arm() let us in only below the share, so this is never 0 (which
                // would mean no limit at all).
                const std::size_t left = m_ring->stream_queue_limit() - held();
                assert(left > 0 && left <= m_ring->stream_queue_limit());
                detail::set_recv_total_limit(
                    sqe, static_cast<unsigned>(std::min<std::size_t>(
                             left * m_ring->buffer_size(), std::numeric_limits<int>::max())));
            }
        }
        if (m_bundle) {
            sqe.ioprio |= recvsend_bundle; // several buffers per completion, when queued
        }
    }

    // The completion for the next buffer handed out is private: its bytes.
    std::byte* take_private() noexcept {
        assert(m_ready_count > 0);
        std::byte* const data = m_private_ready[m_ready_head];
        m_ready_head = (m_ready_head + 1) % max_private;
        --m_ready_count;
        return data;
    }

    std::byte* ring_data(std::uint16_t id) const noexcept { return m_ring->data(id); }

    // A buffer this stream lent comes back (its handle was reset, or nobody will take it).
    void give_back(std::uint16_t id, std::byte* data) noexcept override {
        if (id == private_id) {
            m_ring->return_private(data);
            --m_private;
        } else {
            m_ring->give_back(id);
            --m_held;
        }
        if (released()) {
            if (!has_loans()) {
                (void)loans_returned(); // may free this
            }
            return;
        }
        // Below our share again: the next next() arms. Not from here: the coroutine
        // decides when the stream receives, and it knows its socket is still open.
        if (state() == detail::multishot_state::held && held() < m_ring->stream_queue_limit()) {
            unhold();
        }
    }

private:
    // Buffers this stream holds: ring buffers queued or in its consumer's hands, and its
    // own (in the kernel, queued or lent out).
    std::size_t held() const noexcept { return m_held + m_private; }
    bool has_loans() const noexcept override { return held() > 0; }
    bool may_arm() const noexcept override {
        if (descriptor_closed()) {
            return false;
        }
        // A receive into our own buffer is counted in held() already.
        return m_private_in_flight != nullptr || held() < m_ring->stream_queue_limit();
    }

    // The coroutine waits, nothing is queued and nothing can be armed: it holds its whole
    // share itself (or its socket is closed). Waiting would never end: say so instead.
    void waiting_for_nothing() noexcept override {
        fail_wait(descriptor_closed() ? ECANCELED : ENOBUFS);
    }

    bool filter(detail::completion& c, bool live) noexcept override {
        if (m_private_in_flight != nullptr) {
            return filter_private(c, live);
        }
        unsigned buffers = 0;
        if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
            buffers = buffers_in(c);
            m_ring->lend(buffers); // every buffer a CQE carries, whoever ends up with it
            m_held += buffers;
        }
        if (!live) {
            // discard_completion() gives back the first buffer; the rest of a bundle go back here,
            // read in ring order before any of them is given back (id_after's condition).
            for (unsigned i = 1; i < buffers; ++i) {
                give_back(m_ring->id_after(buffer_id(c), i), nullptr);
            }
            return true;
        }
        const bool final = (c.flags & IORING_CQE_F_MORE) == 0;
        if (pause_ending() && (c.result == -ECANCELED || c.result == -ENOBUFS)) {
            // The end of our own pause: nothing for the consumer, unless the context is
            // stopping or the socket was closed meanwhile (then the cancel is theirs too).
            if (context().stop_requested() || descriptor_closed()) {
                c.result = -ECANCELED;
                return true;
            }
            keep_receiving();
            return false;
        }
        if (c.result == -ENOBUFS) {
            return final ? ring_ran_empty(c) : false;
        }
        if (c.result > 0) {
            const bool at_share = held() >= m_ring->stream_queue_limit();
            if (!final && at_share && state() == detail::multishot_state::armed &&
                !cancel_requested() && !context().stop_requested()) {
                // At our share with the request still armed (a kernel without the total
                // limit, or small reads under it): stop receiving. What arrives before the
                // cancel lands is counted in held() like the rest.
                try {
                    pause();
                    ++m_ring->share_pauses;
                } catch (...) {
                    // The ring failed: the loop reports it.
                }
            } else if (final) {
                keep_receiving(); // multishot ended (its limit, or single-shot): go on
            }
        }
        if (buffers > 1) {
            ++m_ring->bundles;
            hand_out_bundle(c, buffers);
            return false;
        }
        return true;
    }

    // The ring was empty when data arrived (the request has ended).
    bool ring_ran_empty(detail::completion& c) noexcept {
        if (cancel_requested() || m_ring->closed() || context().stop_requested() ||
            descriptor_closed()) {
            c.result = -ECANCELED; // the stream is being ended: say so, do not wait
            return true;
        }
        if (m_ring->available() > 0) {
            ++m_ring->enobufs_rearms; // buffers came back before we saw the ENOBUFS
            arm_or_leave_to_next();
        } else if (held() < m_ring->stream_queue_limit() && m_private < max_private) {
            // Waiting for the ring could last as long as other streams please: receive
            // this once into a buffer of our own instead, within our share.
            return !receive_privately(c); // an allocation failure reaches the consumer
        } else {
            // Our own buffers will come back as our coroutine goes on; if it waits for
            // more while holding them, waiting_for_nothing() tells it at once.
            m_ring->share_pauses += 1;
            hold();
        }
        return false;
    }

    // False (with `c` now saying ENOMEM) if there is no memory for the buffer.
    bool receive_privately(detail::completion& c) noexcept {
        m_private_in_flight = m_ring->take_private();
        if (m_private_in_flight == nullptr) {
            c.result = -ENOMEM;
            return false;
        }
        ++m_private;
        ++m_ring->private_receives;
        try {
            arm();
        } catch (...) {
            // The consumer's next() arms the ring again and reports the failure.
            m_ring->return_private(std::exchange(m_private_in_flight, nullptr));
            --m_private;
        }
        return true;
    }

    // The completion of a receive into our own buffer (single-shot: always final).
    bool filter_private(detail::completion& c, bool live) noexcept {
        std::byte* const data = std::exchange(m_private_in_flight, nullptr);
        if (c.result <= 0 || !live) {
            m_ring->return_private(data); // end of stream, an error, or nobody to take it
            --m_private;
            return live;
        }
        assert(m_ready_count < max_private);
        m_private_ready[(m_ready_head + m_ready_count) % max_private] = data;
        ++m_ready_count;
        c.flags |= IORING_CQE_F_BUFFER | (std::uint32_t{private_id} << IORING_CQE_BUFFER_SHIFT);
        keep_receiving();
        return true;
    }

    // The request has ended with data (or our pause ended): receive on while under our
    // share, otherwise wait for our buffers to come back.
    void keep_receiving() noexcept {
        if (held() >= m_ring->stream_queue_limit()) {
            hold();
        } else {
            arm_or_leave_to_next();
        }
    }

    static std::uint16_t buffer_id(const detail::completion& c) noexcept {
        return static_cast<std::uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT);
    }

    // How many ring buffers a completion with IORING_CQE_F_BUFFER carries: one, or for a
    // bundle as many as its bytes fill (the kernel fills each buffer before the next).
    unsigned buffers_in(const detail::completion& c) const noexcept {
        if (!m_bundle || c.result <= 0) {
            return 1;
        }
        const std::size_t size = m_ring->buffer_size();
        return static_cast<unsigned>((static_cast<std::size_t>(c.result) + size - 1) / size);
    }

    // A bundle reaches the consumer as one completion per buffer, in ring order, so that
    // next() and try_next() still give one buffer each. All of them are queued before the
    // consumer is woken (by the loop, once the filter returns), so every id is read before
    // any of them can be given back, and a cancel that comes later finds them all queued.
    void hand_out_bundle(const detail::completion& c, unsigned buffers) noexcept {
        const std::size_t size = m_ring->buffer_size();
        std::size_t left = static_cast<std::size_t>(c.result);
        for (unsigned i = 0; i < buffers; ++i) {
            const std::uint16_t id = i == 0 ? buffer_id(c) : m_ring->id_after(buffer_id(c), i);
            const std::size_t length = left < size ? left : size;
            left -= length;
            enqueue({static_cast<int>(length),
                     IORING_CQE_F_BUFFER | IORING_CQE_F_MORE |
                         (static_cast<std::uint32_t>(id) << IORING_CQE_BUFFER_SHIFT)});
        }
    }

    // If the ring fails here, the consumer's next() arms again and reports it. Nothing is
    // armed for a context that is stopping (it would only be cancelled) or on a descriptor
    // that has been closed (the number may name another file by now).
    void arm_or_leave_to_next() noexcept {
        if (context().stop_requested() || descriptor_closed()) {
            return;
        }
        try {
            arm();
        } catch (...) {
        }
    }

    void discard_completion(detail::completion c) noexcept override {
        if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
            const std::uint16_t id = buffer_id(c);
            give_back(id, id == private_id ? take_private() : nullptr);
        }
    }

    detail::buffer_ring_state* m_ring;
    int m_fd;
    bool m_multishot;
    bool m_bundle;
    bool m_limit;              // arm with the rest of the share as a byte limit
    std::size_t m_held = 0;    // ring buffers lent to this stream, not given back
    std::size_t m_private = 0; // buffers of our own: in the kernel, queued or lent out
    // At most this many of our own at once, whatever the share: enough that a coroutine
    // holding a buffer or two never waits on other streams, and little enough that peers
    // that never read cost 2 buffers each beyond the ring under attack, not a whole share.
    static constexpr std::size_t max_private = 2;
    std::byte* m_private_in_flight = nullptr; // the one a receive in the kernel fills
    // Received into, their completions still queued, oldest first: a FIFO of at most
    // max_private, so nothing is allocated for it, in an idle connection or any other.
    std::array<std::byte*, max_private> m_private_ready{};
    std::uint8_t m_ready_head = 0;
    std::uint8_t m_ready_count = 0;
};

recv_stream::recv_stream(buffer_ring& ring, int fd) : m_request(new request(*ring.m_state, fd)) {}

recv_stream::recv_stream(recv_stream&&) noexcept = default;
recv_stream& recv_stream::operator=(recv_stream&&) noexcept = default;
recv_stream::~recv_stream() = default;

recv_stream::next_awaiter recv_stream::next() noexcept {
    return next_awaiter(m_request.get());
}

std::size_t recv_stream::ready() const noexcept {
    return m_request != nullptr ? m_request->queued() : 0;
}

std::optional<io_result<buffer_ring::buffer>> recv_stream::try_next() noexcept {
    if (m_request == nullptr || !m_request->has_completion()) {
        return std::nullopt;
    }
    return next_awaiter::to_result(*m_request, m_request->pop());
}

detail::multishot_state recv_stream::state() const noexcept {
    return m_request != nullptr ? m_request->state() : detail::multishot_state::idle;
}

bool recv_stream::next_awaiter::await_ready() const noexcept {
    return m_request == nullptr || m_request->has_completion();
}

void recv_stream::next_awaiter::wait(std::coroutine_handle<> waiter,
                                     detail::cancellation_scope* scope) {
    m_request->wait(waiter, scope, m_slot);
}

io_result<buffer_ring::buffer> recv_stream::next_awaiter::await_resume() noexcept {
    if (m_request == nullptr) {
        return {std::make_error_code(std::errc::bad_file_descriptor), {}}; // moved from
    }
    if (m_slot.ended) {
        return {make_io_error(m_slot.result), {}}; // the wait ended; nothing was taken
    }
    return to_result(*m_request, m_request->pop());
}

io_result<buffer_ring::buffer>
recv_stream::next_awaiter::to_result(request& from, const detail::completion& c) noexcept {
    buffer_ring::buffer received;
    if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
        // Taken even when empty or failed, so that its destructor gives it back.
        const auto id = static_cast<std::uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT);
        std::byte* const data =
            id == detail::buffer_source::private_id ? from.take_private() : from.ring_data(id);
        received = buffer_ring::buffer(from, id, data,
                                       c.result > 0 ? static_cast<std::size_t>(c.result) : 0);
    }
    if (c.result < 0) {
        return {make_io_error(c.result), {}};
    }
    if (c.result == 0) {
        return {{}, {}}; // end of stream
    }
    return {{}, std::move(received)};
}

} // namespace ucoro::net
