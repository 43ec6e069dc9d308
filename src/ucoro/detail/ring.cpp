#include "ucoro/detail/ring.hpp"

#include <fmt/core.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <system_error>

#include "ucoro/io_context.hpp"

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer's synchronization interface (libtsan).
extern "C" void __tsan_acquire(void* address);
extern "C" void __tsan_release(void* address);
#endif

namespace ucoro::detail {

#if defined(__SANITIZE_THREAD__)
namespace {
char ring_lifetimes; // the sync object: every teardown releases it, every setup acquires it
}
void ring_mapped() noexcept {
    __tsan_acquire(&ring_lifetimes);
}
void ring_unmapping() noexcept {
    __tsan_release(&ring_lifetimes);
}
#else
void ring_mapped() noexcept {}
void ring_unmapping() noexcept {}
#endif

namespace {

// Linux 6.12 (io_uring: add support for batch wait timeout); liburing 2.3's header predates
// it, and names the field of io_uring_getevents_arg that carries the wait "pad".
constexpr unsigned feat_min_timeout = 1U << 15; // IORING_FEAT_MIN_TIMEOUT
// Linux 6.10 (io_uring/net: add support for bundles), also after liburing 2.3's header.
constexpr unsigned feat_recvsend_bundle = 1U << 14; // IORING_FEAT_RECVSEND_BUNDLE

// Whether a multishot receive takes a total byte limit: an older kernel refuses the SQE
// with EINVAL at submission; a newer one arms it (no data is there) until we cancel it.
bool probe_recv_limit(io_uring& ring) noexcept {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        return false;
    }
    // One SQE at a time: the ring may have a single entry.
    constexpr std::uint64_t probe_data = 1;
    bool supported = false;
    if (io_uring_sqe* recv = io_uring_get_sqe(&ring)) {
        io_uring_prep_recv(recv, pair[0], nullptr, 0, 0);
        recv->flags |= IOSQE_BUFFER_SELECT;
        recv->buf_group = 0xFFFF; // chosen at receive time, so it need not exist
        recv->ioprio |= IORING_RECV_MULTISHOT | IORING_RECVSEND_POLL_FIRST;
        set_recv_total_limit(*recv, 1);
        io_uring_sqe_set_data64(recv, probe_data);
        if (io_uring_submit(&ring) == 1) {
            io_uring_sqe* cancel = io_uring_get_sqe(&ring); // the SQ was just emptied
            io_uring_prep_cancel64(cancel, probe_data, 0);
            io_uring_sqe_set_data64(cancel, probe_data + 1);
            io_uring_submit(&ring);
            // Both CQEs come: the receive's final one (EINVAL, or ECANCELED from our
            // cancel) and the cancel's own.
            for (int seen = 0; seen < 2;) {
                io_uring_cqe* cqe = nullptr;
                if (io_uring_wait_cqe(&ring, &cqe) != 0) {
                    break;
                }
                if (cqe->user_data == probe_data && (cqe->flags & IORING_CQE_F_MORE) == 0) {
                    supported = cqe->res == -ECANCELED;
                    ++seen;
                } else if (cqe->user_data == probe_data + 1) {
                    ++seen;
                }
                io_uring_cqe_seen(&ring, cqe);
            }
        }
    }
    ::close(pair[0]);
    ::close(pair[1]);
    return supported;
}

// The opcodes the library submits, with the kernel that added the last of them (5.11).
constexpr int required_opcodes[] = {
    IORING_OP_ACCEPT,       IORING_OP_CONNECT,  IORING_OP_RECV,
    IORING_OP_SEND,         IORING_OP_CLOSE,    IORING_OP_TIMEOUT,
    IORING_OP_ASYNC_CANCEL, IORING_OP_POLL_ADD, IORING_OP_SHUTDOWN,
};

ring_features probe_features(const io_uring_probe& probe, const io_context_options& options) {
    ring_features features;
    // The probe lists opcodes, not flags: IORING_OP_SOCKET arrived in the same release
    // (5.19) as IORING_ACCEPT_MULTISHOT, so it stands for it.
    features.multishot_accept =
        options.multishot_accept && io_uring_opcode_supported(&probe, IORING_OP_SOCKET);
    // Likewise IORING_REGISTER_PBUF_RING came with 5.19, and IORING_RECV_MULTISHOT with
    // IORING_OP_SEND_ZC in 6.0. A buffer_ring that still fails to register says so itself.
    features.buffer_rings =
        options.buffer_rings && io_uring_opcode_supported(&probe, IORING_OP_SOCKET);
    features.multishot_recv = features.buffer_rings && options.multishot_recv &&
                              io_uring_opcode_supported(&probe, IORING_OP_SEND_ZC);
    // The send retry on MSG_WAITALL came with the io_uring networking rework of 5.18/5.19;
    // IORING_OP_SOCKET (5.19) stands for it, so kernels older than that send plainly.
    features.send_waitall =
        options.send_waitall && io_uring_opcode_supported(&probe, IORING_OP_SOCKET);
    features.msg_ring = options.msg_ring && io_uring_opcode_supported(&probe, IORING_OP_MSG_RING);
    return features;
}

} // namespace

int init_ring(io_uring& ring, const io_context_options& options, ring_features& features) {
    io_uring_params params{};
    params.cq_entries = options.cq_entries != 0 ? options.cq_entries : options.sq_entries * 16;
    // CQSIZE: a CQ larger than the SQ. SUBMIT_ALL: one bad SQE does not stop the batch.
    // COOP_TASKRUN: no interrupting IPIs, we enter the kernel every turn anyway.
    // SINGLE_ISSUER + DEFER_TASKRUN: completions are processed only when this thread
    // asks for them, which is what a single-threaded loop does.
    const unsigned wanted[] = {
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_CQSIZE,
    };
    int result = -EINVAL;
    for (unsigned flags : wanted) {
        params.flags = flags;
        result = io_uring_queue_init_params(options.sq_entries, &ring, &params);
        if (result != -EINVAL) {
            break; // success, or a failure that other flags will not fix
        }
    }
    if (result < 0) {
        return result;
    }
    ring_mapped();
    if ((params.features & IORING_FEAT_NODROP) == 0) {
        // Before 5.5 an overflowing CQ silently loses completions: that would break the
        // exactly-once invariant, so refuse to run.
        ring_unmapping();
        io_uring_queue_exit(&ring);
        return -ENOSYS;
    }
    io_uring_probe* probe = io_uring_get_probe_ring(&ring);
    if (probe == nullptr) {
        ring_unmapping();
        io_uring_queue_exit(&ring);
        return -ENOSYS; // IORING_REGISTER_PROBE arrived in 5.6
    }
    for (int opcode : required_opcodes) {
        if (!io_uring_opcode_supported(probe, opcode)) {
            io_uring_free_probe(probe);
            ring_unmapping();
            io_uring_queue_exit(&ring);
            return -ENOSYS;
        }
    }
    features = probe_features(*probe, options);
    io_uring_free_probe(probe);
    features.batch_wait =
        options.batch_wait.count() > 0 && (params.features & feat_min_timeout) != 0;
    features.recv_bundle = options.recv_bundle && features.multishot_recv &&
                           (params.features & feat_recvsend_bundle) != 0;
    if (features.multishot_recv && options.recv_limit) {
        features.recv_limit = probe_recv_limit(ring);
    }
    // Tried rather than probed: the call says whether the kernel has it (EINVAL before
    // 5.18) and liburing then enters through the registered index by itself. A refusal
    // only costs the optimisation. ~io_context unregisters it.
    if (options.register_ring_fd) {
        features.registered_ring_fd = io_uring_register_ring_fd(&ring) == 1;
    }
    return 0;
}

namespace {

// With no overall timeout the kernel ends the whole wait when min_wait_usec expires, events
// or not, so an idle loop would wake every min_wait_usec. With one (a day, far beyond any
// wait we mean), it waits on for a single completion instead: that is the plain sleep we
// want when nothing came in the batch window. On expiry it says ETIME, which the loop
// treats as an empty wake-up.
constexpr __kernel_timespec a_day{.tv_sec = 24 * 60 * 60, .tv_nsec = 0};

} // namespace

#if defined(UCORO_HAVE_SUBMIT_AND_WAIT_MIN_TIMEOUT)

int submit_and_wait_batch(io_uring& ring, unsigned wait_nr, unsigned min_wait_usec,
                          bool /*registered_ring_fd: liburing enters through it by itself*/) {
    const unsigned to_submit = io_uring_sq_ready(&ring);
    __kernel_timespec day = a_day;
    io_uring_cqe* first = nullptr; // left in the CQ: the loop reaps every CQE itself
    const int result =
        io_uring_submit_and_wait_min_timeout(&ring, &first, wait_nr, &day, min_wait_usec, nullptr);
    // liburing reports success as 0 or as the count, depending on its version: say the
    // count, as the fallback and io_uring_submit_and_wait do.
    return result < 0 ? result : static_cast<int>(to_submit);
}

const char* batch_wait_implementation() noexcept {
    return "io_uring_submit_and_wait_min_timeout (liburing >= 2.8)";
}

#else

int submit_and_wait_batch(io_uring& ring, unsigned wait_nr, unsigned min_wait_usec,
                          bool registered_ring_fd) {
    // What liburing's private __io_uring_flush_sq does for a ring without SQPOLL: publish
    // the SQEs prepared since the last submit. The kernel reads the tail when we enter.
    io_uring_sq& sq = ring.sq;
    const unsigned tail = sq.sqe_tail;
    if (sq.sqe_head != tail) {
        sq.sqe_head = tail;
        __atomic_store_n(sq.ktail, tail, __ATOMIC_RELEASE);
    }
    const unsigned to_submit = tail - __atomic_load_n(sq.khead, __ATOMIC_ACQUIRE);
    __kernel_timespec day = a_day;
    io_uring_getevents_arg arg{};
    arg.pad = min_wait_usec; // min_wait_usec since 6.12
    arg.ts = reinterpret_cast<std::uintptr_t>(&day);
    unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
    int fd = ring.ring_fd;
    if (registered_ring_fd) {
        flags |= IORING_ENTER_REGISTERED_RING;
        fd = ring.enter_ring_fd;
    }
    return io_uring_enter2(static_cast<unsigned>(fd), to_submit, wait_nr, flags,
                           reinterpret_cast<sigset_t*>(&arg), sizeof(arg));
}

const char* batch_wait_implementation() noexcept {
    return "hand-written SQ flush and io_uring_enter2 (liburing < 2.8)";
}

#endif

} // namespace ucoro::detail

namespace ucoro {

std::string describe_io_uring_error(int error) {
    switch (error) {
    case EPERM:
        return "io_uring is not permitted (EPERM): it is blocked by a seccomp filter (e.g. a "
               "container's default profile) or by the sysctl kernel.io_uring_disabled; allow "
               "io_uring_setup or set kernel.io_uring_disabled=0";
    case ENOMEM:
        return "io_uring ring could not be allocated (ENOMEM): the locked-memory limit is too "
               "low on this kernel; raise it with 'ulimit -l' (RLIMIT_MEMLOCK) or use a kernel "
               ">= 5.12";
    case ENOSYS:
        return "io_uring is not available (ENOSYS): the kernel is too old or built without "
               "io_uring; ucoro needs Linux >= 5.11 with CONFIG_IO_URING";
    default:
        return fmt::format("io_uring could not be set up: {} (errno {}); check the kernel log",
                           std::system_category().message(error), error);
    }
}

} // namespace ucoro

namespace ucoro::detail {

io_uring& native_ring(io_context& context) noexcept {
    return context.m_ring;
}

} // namespace ucoro::detail
