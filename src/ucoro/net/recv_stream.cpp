#include "ucoro/net/recv_stream.hpp"

#include <liburing.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
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
// buffers this stream holds, when it stops receiving, and the buffer of its own it falls
// back to when the ring is empty. Its request's states are multishot_operation's.
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

    ~request() override { m_ring->remove_ref(); }

    void prepare(io_uring_sqe& sqe) noexcept override {
        if (m_receive_private) {
            // Data is waiting (the ring's receive said ENOBUFS), so this completes at once.
            io_uring_prep_recv(&sqe, m_fd, m_private.get(), m_ring->buffer_size(), 0);
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
                // No more than the rest of our share: the kernel ends the request there,
                // so the stream cannot overshoot it (idle implies held() < share).
                const std::size_t left = m_ring->stream_queue_limit() - held();
                detail::set_recv_total_limit(
                    sqe, static_cast<unsigned>(std::min<std::size_t>(
                             left * m_ring->buffer_size(), std::numeric_limits<int>::max())));
            }
        }
        if (m_bundle) {
            sqe.ioprio |= recvsend_bundle; // several buffers per completion, when queued
        }
    }

    detail::buffer_ring_state& ring() const noexcept { return *m_ring; }

    std::byte* data(std::uint16_t id) const noexcept {
        return id == private_id ? m_private.get() : m_ring->data(id);
    }

    // A buffer this stream lent comes back (its handle was reset, or nobody will take it).
    void give_back(std::uint16_t id) noexcept override {
        if (id == private_id) {
            m_private_out = false;
            m_private.reset(); // an idle connection keeps no buffer of its own
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
        if (state() == detail::multishot_state::held && held() < m_ring->stream_queue_limit()) {
            unhold();
            if (std::exchange(m_after_enobufs, false)) {
                ++m_ring->enobufs_rearms;
            }
            arm_or_leave_to_next();
        }
    }

private:
    // Buffers this stream holds: ring buffers queued or in its consumer's hands, and its
    // own buffer while lent out.
    std::size_t held() const noexcept { return m_held + (m_private_out ? 1 : 0); }
    bool has_loans() const noexcept override { return held() > 0; }

    bool filter(detail::completion& c, bool live) noexcept override {
        if (std::exchange(m_receive_private, false)) {
            return filter_private(c, live);
        }
        unsigned buffers = 0;
        if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
            buffers = buffers_in(c);
            m_ring->lend(buffers); // every buffer a CQE carries, whoever ends up with it
            m_held += buffers;
        }
        if (!live) {
            // drop() gives back the first buffer; the rest of a bundle go back here, read
            // in ring order before any of them is given back (id_after's condition).
            for (unsigned i = 1; i < buffers; ++i) {
                give_back(m_ring->id_after(buffer_id(c), i));
            }
            return true;
        }
        const bool final = (c.flags & IORING_CQE_F_MORE) == 0;
        if (pause_ending() && (c.result == -ECANCELED || c.result == -ENOBUFS)) {
            // The end of our own pause: nothing for the consumer, unless the context is
            // stopping (then the cancel is really the stop's, and the consumer hears it).
            if (context().stop_requested()) {
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
        if (cancel_requested() || m_ring->closed() || context().stop_requested()) {
            c.result = -ECANCELED; // the stream is being ended: say so, do not wait
            return true;
        }
        if (m_ring->available() > 0) {
            ++m_ring->enobufs_rearms; // buffers came back before we saw the ENOBUFS
            arm_or_leave_to_next();
        } else if (held() == 0) {
            // We hold nothing, so waiting could last as long as other streams please:
            // receive this once into a buffer of our own instead.
            return !receive_privately(c); // an allocation failure reaches the consumer
        } else {
            // Ours will come back as our own consumer goes on: wait for them (give_back).
            m_after_enobufs = true;
            hold();
        }
        return false;
    }

    // False (with `c` now saying ENOMEM) if there is no memory for the buffer.
    bool receive_privately(detail::completion& c) noexcept {
        try {
            m_private = std::make_unique_for_overwrite<std::byte[]>(m_ring->buffer_size());
        } catch (...) {
            c.result = -ENOMEM;
            return false;
        }
        ++m_ring->private_receives;
        m_receive_private = true;
        try {
            arm();
        } catch (...) {
            m_receive_private = false; // the consumer's next() arms the ring again
            m_private.reset();
        }
        return true;
    }

    // The completion of a receive into our own buffer (single-shot: always final).
    bool filter_private(detail::completion& c, bool live) noexcept {
        if (c.result <= 0 || !live) {
            m_private.reset(); // end of stream, an error, or nobody to take it
            return live;
        }
        m_private_out = true;
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

    // If the ring fails here, the consumer's next() arms again and reports it. Nothing is
    // armed for a context that is stopping: it would only be cancelled.
    void arm_or_leave_to_next() noexcept {
        if (context().stop_requested()) {
            return;
        }
        try {
            arm();
        } catch (...) {
        }
    }

    void drop(detail::completion c) noexcept override {
        if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
            give_back(buffer_id(c));
        }
    }

    detail::buffer_ring_state* m_ring;
    int m_fd;
    bool m_multishot;
    bool m_bundle;
    bool m_limit;                           // arm with the rest of the share as a byte limit
    bool m_receive_private = false;         // the submission in flight receives into m_private
    bool m_private_out = false;             // m_private holds received bytes not given back yet
    bool m_after_enobufs = false;           // held because the ring ran empty (counted on re-arm)
    std::size_t m_held = 0;                 // ring buffers lent to this stream, not given back
    std::unique_ptr<std::byte[]> m_private; // only while receiving into it or lent out
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
    m_request->wait(waiter, scope);
}

io_result<buffer_ring::buffer> recv_stream::next_awaiter::await_resume() noexcept {
    if (m_request == nullptr) {
        return {std::make_error_code(std::errc::bad_file_descriptor), {}}; // moved from
    }
    return to_result(*m_request, m_request->pop());
}

io_result<buffer_ring::buffer>
recv_stream::next_awaiter::to_result(request& from, const detail::completion& c) noexcept {
    buffer_ring::buffer received;
    if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
        // Taken even when empty or failed, so that its destructor gives it back.
        const auto id = static_cast<std::uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT);
        received = buffer_ring::buffer(from, id, from.data(id),
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
