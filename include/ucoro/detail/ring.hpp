// Setting up the io_uring and probing what the kernel offers.
#pragma once

#include <liburing.h>

namespace ucoro {
struct io_context_options;
}

namespace ucoro::detail {

/// Optional kernel features ucoro uses when present and replaces with a plain path when
/// not. Each is probed once, when the ring is set up; io_context_options can force each off
/// so that the fallbacks are tested on any kernel.
struct ring_features {
    /// IORING_ACCEPT_MULTISHOT (Linux 5.19): one accept request, one CQE per connection.
    bool multishot_accept = false;
    /// IORING_REGISTER_PBUF_RING (Linux 5.19): buffers the kernel picks at receive time.
    bool buffer_rings = false;
    /// IORING_RECV_MULTISHOT (Linux 6.0): one receive request, one CQE per arrival.
    bool multishot_recv = false;
    /// IORING_REGISTER_RING_FDS (Linux 5.18): io_uring_enter finds the ring by its index in
    /// this thread's registered rings instead of looking its fd up. Per thread, which suits
    /// io_context (used on one thread).
    bool registered_ring_fd = false;
    /// MSG_WAITALL honoured by IORING_OP_SEND / IORING_OP_SENDMSG: a short send is retried
    /// inside the kernel (io_uring/net.c keeps the bytes done and re-arms on socket space)
    /// rather than completed short. Older kernels hand the flag to the socket, where TCP
    /// ignores it on sends, so it is harmless there; the send_all operations resubmit a
    /// short count either way (a signal or an error can still cut a send short).
    bool send_waitall = false;
    /// IORING_FEAT_MIN_TIMEOUT (Linux 6.12): io_uring_enter can wait for a batch of
    /// completions for a bounded time past the first one (io_context_options::batch_wait).
    /// Set only when that option asks for it.
    bool batch_wait = false;
    /// IORING_FEAT_RECVSEND_BUNDLE (Linux 6.10): a multishot receive may fill several ring
    /// buffers per completion (io_context_options::recv_bundle). Set only when asked for
    /// and multishot receive is on.
    bool recv_bundle = false;
    /// A multishot receive's total byte limit (sqe->optlen, Linux 6.16): the kernel ends the
    /// request by itself once that many bytes have arrived. A receive stream arms with its
    /// remaining share of the ring, so it cannot take more than that share. Probed by
    /// submitting one (an older kernel refuses it with EINVAL); without it a stream at its
    /// share cancels its request instead.
    bool recv_limit = false;
    /// IORING_OP_MSG_RING (Linux 5.18): one ring posts a CQE into another, the wake-up for
    /// cross-thread messages (remote_context); without it, an eventfd the loop polls.
    bool msg_ring = false;
};

/// Gives a multishot receive a total byte limit (ring_features::recv_limit): sqe->optlen,
/// Linux 6.16 (io_uring/net: allow multishot receive total limit). liburing 2.3's header
/// predates it; the field it shares its place with there is file_index.
inline void set_recv_total_limit(io_uring_sqe& sqe, unsigned bytes) noexcept {
    sqe.file_index = bytes; // sqe->optlen
}

/// Sets up `ring` with the best flags this kernel accepts and checks that every opcode
/// ucoro needs is there. Returns 0, or -errno (ENOSYS when the kernel is too old).
int init_ring(io_uring& ring, const io_context_options& options, ring_features& features);

/// Under ThreadSanitizer, orders every ring's teardown before any later ring's setup, as
/// the kernel does: liburing maps and unmaps rings with raw system calls TSan does not see,
/// so a ring mapped where another thread's ring used to be would otherwise look shared with
/// that thread. Call ring_mapped() after a ring is set up and ring_unmapping() before
/// io_uring_queue_exit. No-ops otherwise.
void ring_mapped() noexcept;
void ring_unmapping() noexcept;

/// io_uring_submit_and_wait(ring, wait_nr), except that once one completion is there the
/// kernel goes on waiting for the rest of wait_nr for up to min_wait_usec (batch_wait).
/// Built on liburing's io_uring_submit_and_wait_min_timeout where the liburing it was
/// compiled against has it (2.8); liburing 2.3 has no call for this, so there it flushes the
/// SQ and enters itself. Returns the number of SQEs submitted or -errno (-ETIME: woke with
/// nothing, which the loop treats as an empty wake-up).
int submit_and_wait_batch(io_uring& ring, unsigned wait_nr, unsigned min_wait_usec,
                          bool registered_ring_fd);

/// Which of the two submit_and_wait_batch uses in this build, in words (for tests and -v).
const char* batch_wait_implementation() noexcept;

} // namespace ucoro::detail
