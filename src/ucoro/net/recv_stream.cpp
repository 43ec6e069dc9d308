#include "ucoro/net/recv_stream.hpp"

#include <liburing.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "ucoro/io_context.hpp"

namespace ucoro::net {

namespace {

// Linux 6.10; liburing 2.3's header predates it. Probed as ring_features::recv_bundle.
constexpr unsigned recvsend_bundle = 1U << 4; // IORING_RECVSEND_BUNDLE

} // namespace

class recv_stream::request final : public detail::multishot_operation,
                                   public detail::buffer_waiter {
public:
    request(detail::buffer_ring_state& ring, int fd) noexcept
        : multishot_operation(ring.context()), m_ring(&ring), m_fd(fd),
          m_multishot(ring.context().features().multishot_recv),
          m_bundle(ring.context().features().recv_bundle) {
        ring.add_ref();
    }

    ~request() override {
        m_ring->unpark(*this);
        m_ring->remove_ref();
    }

    void prepare(io_uring_sqe& sqe) noexcept override {
        // Length 0: each receive takes up to one whole buffer. POLL_FIRST: the kernel
        // picks a buffer only once data is there, so ENOBUFS always means data is waiting
        // (and an idle connection holds no buffer).
        io_uring_prep_recv(&sqe, m_fd, nullptr, 0, 0);
        sqe.flags |= IOSQE_BUFFER_SELECT;
        sqe.buf_group = m_ring->group();
        sqe.ioprio |= IORING_RECVSEND_POLL_FIRST;
        if (m_multishot) {
            sqe.ioprio |= IORING_RECV_MULTISHOT;
        }
        if (m_bundle) {
            sqe.ioprio |= recvsend_bundle; // several buffers per completion, when queued
        }
    }

    detail::buffer_ring_state& ring() const noexcept { return *m_ring; }

    void buffers_available(bool ring_usable) noexcept override {
        m_waiting_for_buffer = false;
        if (ring_usable && !context().stop_requested()) {
            rearm_after_enobufs();
        } else {
            // Nobody will refill the ring for us: end the wait the way a cancel would.
            post_completion({-ECANCELED, 0});
        }
    }

    void cancel_from_scope() override {
        if (std::exchange(m_waiting_for_buffer, false)) {
            // Parked, not in the ring: stop waiting for a buffer; the base posts the
            // cancel to the consumer.
            m_ring->unpark(*this);
        }
        multishot_operation::cancel_from_scope();
    }

private:
    bool filter(detail::completion& c, bool live) noexcept override {
        unsigned buffers = 0;
        if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
            buffers = buffers_in(c);
            m_ring->lend(buffers); // every buffer a CQE carries, whoever ends up with it
        }
        if (!live) {
            // drop() gives back the first buffer; the rest of a bundle go back here, read
            // in ring order before any of them is given back (id_after's condition).
            for (unsigned i = 1; i < buffers; ++i) {
                m_ring->give_back(m_ring->id_after(buffer_id(c), i));
            }
            return true;
        }
        const bool final = (c.flags & IORING_CQE_F_MORE) == 0;
        if (final && std::exchange(m_paused, false) &&
            (c.result == -ECANCELED || c.result == -ENOBUFS)) {
            // The end of our own pause: nothing for the consumer. If it has caught up
            // already, receive again now; otherwise its next() will.
            if (!has_completion()) {
                arm_or_leave_to_next();
            }
            return false;
        }
        if (c.result == -ENOBUFS) {
            if (!final) {
                return false;
            }
            if (cancel_requested() || m_ring->closed() || context().stop_requested()) {
                c.result = -ECANCELED; // the stream is being ended: say so, do not wait
                return true;
            }
            if (m_ring->available() > 0) {
                rearm_after_enobufs(); // buffers came back before we saw the ENOBUFS
            } else {
                m_waiting_for_buffer = true;
                m_ring->park(*this);
            }
            return false;
        }
        if (c.result > 0) {
            // This completion will be queued: at the limit, stop receiving until the
            // consumer catches up, so that one slow reader cannot drain the ring.
            const bool full = queued() + buffers >= m_ring->stream_queue_limit();
            if (!final && full && !cancel_requested()) {
                m_paused = true;
                try {
                    context().cancel(*this);
                } catch (...) {
                    m_paused = false; // the ring failed: the loop reports it
                }
            } else if (final && !full && !cancel_requested()) {
                // Multishot ended (or single-shot fallback): keep data flowing.
                arm_or_leave_to_next();
            }
        }
        if (buffers > 1) {
            ++m_ring->bundles;
            hand_out_bundle(c, buffers);
            return false;
        }
        return true;
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
    // next() and try_next() still give one buffer each. All ids are read before the
    // consumer (resumed later, through the ready queue) can give any of them back.
    void hand_out_bundle(const detail::completion& c, unsigned buffers) noexcept {
        const std::size_t size = m_ring->buffer_size();
        std::size_t left = static_cast<std::size_t>(c.result);
        for (unsigned i = 0; i < buffers; ++i) {
            const std::uint16_t id = i == 0 ? buffer_id(c) : m_ring->id_after(buffer_id(c), i);
            const std::size_t length = left < size ? left : size;
            left -= length;
            post_completion({static_cast<int>(length),
                             IORING_CQE_F_BUFFER | IORING_CQE_F_MORE |
                                 (static_cast<std::uint32_t>(id) << IORING_CQE_BUFFER_SHIFT)});
        }
    }

    // If the ring fails here, the consumer's next() arms again and reports it.
    void arm_or_leave_to_next() noexcept {
        try {
            arm();
        } catch (...) {
        }
    }

    void drop(detail::completion c) noexcept override {
        if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
            m_ring->give_back(static_cast<std::uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT));
        }
    }

    bool may_arm() const noexcept override { return !m_waiting_for_buffer; }

    void rearm_after_enobufs() noexcept {
        ++m_ring->enobufs_rearms;
        arm_or_leave_to_next();
    }

    detail::buffer_ring_state* m_ring;
    int m_fd;
    bool m_multishot;
    bool m_bundle;
    bool m_waiting_for_buffer = false;
    bool m_paused = false; // we cancelled the request because the queue is full
};

recv_stream::recv_stream(buffer_ring& ring, int fd) : m_request(new request(*ring.m_state, fd)) {}

recv_stream::recv_stream(recv_stream&&) noexcept = default;
recv_stream& recv_stream::operator=(recv_stream&&) noexcept = default;
recv_stream::~recv_stream() = default;

recv_stream::next_awaiter recv_stream::next() noexcept {
    return {m_request->ring(), *m_request};
}

std::size_t recv_stream::ready() const noexcept {
    return m_request->queued();
}

std::optional<io_result<buffer_ring::buffer>> recv_stream::try_next() noexcept {
    if (!m_request->has_completion()) {
        return std::nullopt;
    }
    return next_awaiter::to_result(m_request->ring(), m_request->pop());
}

io_result<buffer_ring::buffer> recv_stream::next_awaiter::await_resume() noexcept {
    return to_result(*m_ring, m_next.await_resume());
}

io_result<buffer_ring::buffer>
recv_stream::next_awaiter::to_result(detail::buffer_ring_state& ring,
                                     const detail::completion& c) noexcept {
    buffer_ring::buffer received;
    if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
        // Taken even when empty or failed, so that its destructor gives it back.
        received = buffer_ring::buffer(
            ring, static_cast<std::uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT),
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
