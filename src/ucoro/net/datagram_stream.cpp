#include "ucoro/net/datagram_stream.hpp"

#include <liburing.h>
#include <sys/socket.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "ucoro/io_context.hpp"

namespace ucoro::net {

static_assert(sizeof(io_uring_recvmsg_out) == 16, "datagram_stream::overhead counts 16 bytes");

namespace {
// The room each buffer reserves for the sender's address (the msghdr's msg_namelen).
constexpr socklen_t name_room = sizeof(sockaddr_in6);
} // namespace

// The datagram side of the ring's fairness rule (datagram_stream.hpp): what this stream
// holds, when it stops receiving, and its one buffer of its own for an empty ring. Its
// request's states are multishot_operation's.
class datagram_stream::request final : public detail::multishot_operation,
                                       public detail::buffer_source {
public:
    request(detail::buffer_ring_state& ring, int fd) noexcept
        : multishot_operation(ring.context()), m_ring(&ring), m_fd(fd),
          m_supported(ring.context().features().multishot_recv) {
        ring.add_ref();
        // The template of every buffer's layout: header, name_room bytes of address, no
        // control data, then the payload. The kernel reads it at each arm, and takes a
        // null msg_name to mean no room for the address, so it names a spare.
        m_message.msg_name = &m_name_template;
        m_message.msg_namelen = name_room;
    }

    ~request() override {
        // has_loans() was false, so our own buffer is back already; this is for safety.
        if (m_private != nullptr) {
            m_ring->return_private(m_private);
        }
        m_ring->remove_ref();
    }

    void prepare(io_uring_sqe& sqe) noexcept override {
        if (m_private_in_flight) {
            // Laid out as the kernel lays out a ring buffer, so one parser reads both.
            m_private_iovec = {m_private + overhead, m_ring->buffer_size() - overhead};
            m_private_message = {};
            m_private_message.msg_name = m_private + sizeof(io_uring_recvmsg_out);
            m_private_message.msg_namelen = name_room;
            m_private_message.msg_iov = &m_private_iovec;
            m_private_message.msg_iovlen = 1;
            // MSG_TRUNC: the result is the datagram's full length, so a cut is seen.
            io_uring_prep_recvmsg(&sqe, m_fd, &m_private_message, MSG_TRUNC);
            return;
        }
        // MSG_TRUNC: the header's payloadlen is the full length, so a cut is seen.
        io_uring_prep_recvmsg_multishot(&sqe, m_fd, &m_message, MSG_TRUNC);
        sqe.flags |= IOSQE_BUFFER_SELECT;
        sqe.buf_group = m_ring->group();
        // The kernel picks a buffer only once a datagram is there: ENOBUFS then means one
        // is waiting, and an idle socket holds no buffer.
        sqe.ioprio |= IORING_RECVSEND_POLL_FIRST;
    }

    msghdr& layout() noexcept { return m_message; }
    std::byte* ring_data(std::uint16_t id) const noexcept { return m_ring->data(id); }
    std::byte* private_data() const noexcept { return m_private; }

    void give_back(std::uint16_t id,
                   std::byte* /*data: the payload, not the buffer*/) noexcept override {
        if (id == private_id) {
            m_ring->return_private(std::exchange(m_private, nullptr));
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
        // Below the share again: the coroutine's next next() arms (it knows its socket is
        // still open).
        if (state() == detail::multishot_state::held && held() < m_ring->stream_queue_limit()) {
            unhold();
        }
    }

private:
    std::size_t held() const noexcept { return m_held + (m_private != nullptr ? 1 : 0); }
    bool has_loans() const noexcept override { return held() > 0; }
    bool may_arm() const noexcept override {
        if (!m_supported || descriptor_closed()) {
            return false;
        }
        return m_private_in_flight || held() < m_ring->stream_queue_limit();
    }

    void waiting_for_nothing() noexcept override {
        fail_wait(!m_supported ? EOPNOTSUPP : descriptor_closed() ? ECANCELED : ENOBUFS);
    }

    bool filter(detail::completion& c, bool live) noexcept override {
        if (m_private_in_flight) {
            return filter_private(c, live);
        }
        if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
            m_ring->lend();
            ++m_held;
        }
        if (!live) {
            return true; // discard_completion() gives the buffer back
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
        if (c.result >= 0) {
            if (!final && held() >= m_ring->stream_queue_limit() &&
                state() == detail::multishot_state::armed && !cancel_requested() &&
                !context().stop_requested()) {
                // At the share: stop receiving. Datagrams the kernel delivers before the
                // cancel lands are counted like the rest; later ones wait in SO_RCVBUF.
                try {
                    pause();
                    ++m_ring->share_pauses;
                } catch (...) {
                    // The ring failed: the loop reports it.
                }
            } else if (final) {
                keep_receiving();
            }
        }
        return true;
    }

    // The ring was empty when a datagram arrived (the request has ended).
    bool ring_ran_empty(detail::completion& c) noexcept {
        if (cancel_requested() || m_ring->closed() || context().stop_requested() ||
            descriptor_closed()) {
            c.result = -ECANCELED;
            return true;
        }
        if (m_ring->available() > 0) {
            ++m_ring->enobufs_rearms; // buffers came back before we saw the ENOBUFS
            arm_or_leave_to_next();
        } else if (held() < m_ring->stream_queue_limit() && m_private == nullptr) {
            return !receive_privately(c); // an allocation failure reaches the consumer
        } else {
            // Our own buffers come back as the coroutine goes on; a coroutine that waits
            // meanwhile is told at once rather than left waiting on other streams.
            ++m_ring->share_pauses;
            hold_at_share();
        }
        return false;
    }

    bool receive_privately(detail::completion& c) noexcept {
        m_private = m_ring->take_private();
        if (m_private == nullptr) {
            c.result = -ENOMEM;
            return false;
        }
        m_private_in_flight = true;
        ++m_ring->private_receives;
        try {
            arm();
        } catch (...) {
            m_private_in_flight = false;
            m_ring->return_private(std::exchange(m_private, nullptr));
        }
        return true;
    }

    // The completion of a receive into our own buffer (single-shot, so final): written as
    // the kernel writes a multishot one, header first.
    bool filter_private(detail::completion& c, bool live) noexcept {
        m_private_in_flight = false;
        if (c.result < 0 || !live) {
            m_ring->return_private(std::exchange(m_private, nullptr));
            return live;
        }
        io_uring_recvmsg_out header{};
        header.namelen = m_private_message.msg_namelen;
        header.payloadlen = static_cast<unsigned>(c.result);
        header.flags = static_cast<unsigned>(m_private_message.msg_flags);
        std::memcpy(m_private, &header, sizeof(header));
        const std::size_t room = m_ring->buffer_size() - overhead;
        const std::size_t kept =
            static_cast<std::size_t>(c.result) < room ? static_cast<std::size_t>(c.result) : room;
        c.result = static_cast<int>(overhead + kept);
        c.flags |= IORING_CQE_F_BUFFER | (std::uint32_t{private_id} << IORING_CQE_BUFFER_SHIFT);
        keep_receiving();
        return true;
    }

    void keep_receiving() noexcept {
        if (held() >= m_ring->stream_queue_limit()) {
            hold_at_share();
        } else {
            arm_or_leave_to_next();
        }
    }

    // Out of the kernel until our buffers come back. A coroutine already waiting holds
    // them itself (nothing is queued for it), so that wait could never end: say so now.
    void hold_at_share() noexcept {
        hold();
        fail_wait(ENOBUFS);
    }

    // Nothing is armed for a stopping context or a closed descriptor (its number may name
    // another file by now); if the ring fails here, the consumer's next() arms and reports.
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
            give_back(static_cast<std::uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT), nullptr);
        }
    }

    detail::buffer_ring_state* m_ring;
    int m_fd;
    bool m_supported;
    bool m_private_in_flight = false; // the receive in the kernel fills m_private
    std::size_t m_held = 0;           // ring buffers lent to this stream, not given back
    std::byte* m_private = nullptr;   // our own buffer: in the kernel, queued or lent out
    msghdr m_message{};               // the ring buffers' layout (rule 1: the kernel reads it)
    sockaddr_in6 m_name_template{};   // never written: the addresses go into the buffers
    msghdr m_private_message{};
    iovec m_private_iovec{};
};

datagram_stream::datagram_stream(buffer_ring& ring, int fd) {
    if (ring.buffer_size() <= overhead) {
        throw std::invalid_argument("ucoro: a datagram_stream needs ring buffers larger than " +
                                    std::to_string(overhead) + " bytes");
    }
    m_request.reset(new request(*ring.m_state, fd));
}

datagram_stream::datagram_stream(datagram_stream&&) noexcept = default;
datagram_stream& datagram_stream::operator=(datagram_stream&&) noexcept = default;
datagram_stream::~datagram_stream() = default;

datagram_stream::next_awaiter datagram_stream::next() noexcept {
    return next_awaiter(m_request.get());
}

std::size_t datagram_stream::ready() const noexcept {
    return m_request != nullptr ? m_request->queued() : 0;
}

std::optional<io_result<datagram>> datagram_stream::try_next() noexcept {
    if (m_request == nullptr || !m_request->has_completion()) {
        return std::nullopt;
    }
    return next_awaiter::to_result(*m_request, m_request->pop());
}

detail::multishot_state datagram_stream::state() const noexcept {
    return m_request != nullptr ? m_request->state() : detail::multishot_state::idle;
}

bool datagram_stream::next_awaiter::await_ready() const noexcept {
    return m_request == nullptr || m_request->has_completion();
}

void datagram_stream::next_awaiter::wait(std::coroutine_handle<> waiter,
                                         detail::cancellation_scope* scope) {
    m_request->wait(waiter, scope, m_slot);
}

io_result<datagram> datagram_stream::next_awaiter::await_resume() noexcept {
    if (m_request == nullptr) {
        return {std::make_error_code(std::errc::bad_file_descriptor), {}}; // moved from
    }
    if (m_slot.ended) {
        return {make_io_error(m_slot.result), {}};
    }
    return to_result(*m_request, m_request->pop());
}

io_result<datagram> datagram_stream::next_awaiter::to_result(request& from,
                                                             const detail::completion& c) noexcept {
    if ((c.flags & IORING_CQE_F_BUFFER) == 0) {
        // Every success carries a buffer; a failure (cancel, close) carries none.
        return {make_io_error(c.result < 0 ? c.result : -EIO), {}};
    }
    const auto id = static_cast<std::uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT);
    std::byte* const data =
        id == detail::buffer_source::private_id ? from.private_data() : from.ring_data(id);
    io_uring_recvmsg_out* const out = io_uring_recvmsg_validate(data, c.result, &from.layout());
    if (c.result < 0 || out == nullptr) {
        buffer_ring::buffer back(from, id, data, 0); // its destructor gives it back
        return {make_io_error(c.result < 0 ? c.result : -EPROTO), {}};
    }
    datagram received;
    auto* const payload = static_cast<std::byte*>(io_uring_recvmsg_payload(out, &from.layout()));
    received.payload = buffer_ring::buffer(
        from, id, payload, io_uring_recvmsg_payload_length(out, c.result, &from.layout()));
    received.full_size = out->payloadlen;
    received.sender =
        address::from_sockaddr(static_cast<const sockaddr*>(io_uring_recvmsg_name(out)),
                               out->namelen < name_room ? out->namelen : name_room);
    if ((out->flags & MSG_TRUNC) != 0) {
        return {std::make_error_code(std::errc::message_size), std::move(received)};
    }
    return {{}, std::move(received)};
}

} // namespace ucoro::net
