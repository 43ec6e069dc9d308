#include "ucoro/io_context.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <system_error>

#include <poll.h>

#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/detail/spawn.hpp"
#include "ucoro/trace.hpp"

namespace ucoro {

namespace {

// The descriptor whose in-flight list an SQE's operation joins, or -1 for none that a close
// would have to cancel: no descriptor, an index into the registered files, the close
// itself, or an opcode whose fd field holds something else (a domain, a buffer count).
int descriptor_of(const io_uring_sqe& sqe) noexcept {
    if (sqe.fd < 0 || (sqe.flags & IOSQE_FIXED_FILE) != 0) {
        return -1;
    }
    switch (sqe.opcode) {
    case IORING_OP_CLOSE:
    case IORING_OP_SOCKET:
    case IORING_OP_PROVIDE_BUFFERS:
    case IORING_OP_REMOVE_BUFFERS:
        return -1;
    default:
        return sqe.fd;
    }
}

// An io-wq worker blocked in an interruptible wait (an open of a FIFO) that a cancel signals
// returns the kernel's internal -ERESTARTSYS family (512 to 516, include/linux/errno.h),
// which no CQE should carry and no std::errc names: report the cancel that caused it, or
// EINTR for a signal of another origin.
int without_restart_code(int result, bool cancel_requested) noexcept {
    constexpr int restart_first = 512; // ERESTARTSYS
    constexpr int restart_last = 516;  // ERESTART_RESTARTBLOCK
    if (result > -restart_first || result < -restart_last) {
        return result;
    }
    return cancel_requested ? -ECANCELED : -EINTR;
}

} // namespace

// ---------------------------------------------------------------------------------------
// Lifetime
// ---------------------------------------------------------------------------------------

io_context::io_context(io_context_options options) {
    // Allocate before the ring exists, so that a throw here leaks no ring.
    m_completions.reserve(options.cq_entries != 0 ? options.cq_entries : options.sq_entries * 16);
    if (const int result = detail::init_ring(m_ring, options, m_features); result < 0) {
        throw std::system_error(-result, std::system_category(), describe_io_uring_error(-result));
    }
    m_dropped_seen = *m_ring.cq.koverflow;
    if (m_features.batch_wait) {
        // At most a second: a window is a latency budget, not a sleep.
        m_batch_wait_usec = static_cast<unsigned>(
            std::min<std::chrono::microseconds::rep>(options.batch_wait.count(), 1'000'000));
    }
    m_batch_wait_events = options.batch_wait_events;
    m_trace = options.trace != nullptr ? options.trace : trace::output_from_environment();
}

io_context::~io_context() {
    // Nothing may start now: a buffer given back by a frame destroyed below must not re-arm
    // its stream (receive streams do not arm in a stopping context).
    m_stop_requested = true;
    if (m_inbox) {
        // Posts from now on are refused (remote_context::post returns false); what was
        // accepted runs here, once, as promised, in a stopped context.
        detail::inbox::run_all(m_inbox->close(), [this](std::exception_ptr error) {
            report_unhandled_exception(error);
        });
    }
    if (drain_on_destruction()) {
        // Every operation has completed, so the kernel refers to no frame any more and
        // the detached tasks that never finished can be freed.
        while (m_spawned_head != nullptr) {
            m_spawned_head->handle().destroy(); // its promise unlinks itself
        }
    }
    if (m_features.registered_ring_fd) {
        // Explicitly, not trusting queue_exit to: a registration left behind would keep
        // the ring alive in this thread until it exits.
        (void)io_uring_unregister_ring_fd(&m_ring);
    }
    detail::ring_unmapping();
    io_uring_queue_exit(&m_ring);
}

bool io_context::drain_on_destruction() noexcept {
    // Cancel everything and wait for every final CQE, without resuming anybody: the
    // coroutines are about to be destroyed, not continued. For a bounded time: a request
    // the kernel cannot cancel (a send that an io-wq worker is blocked in, to a peer that
    // never reads) may never complete, and a destructor must return. What is left after
    // the bound goes to settle_synchronously(), and what that cannot settle is leaked.
    constexpr auto drain_limit = std::chrono::seconds(2);
    const clock::time_point give_up = now() + drain_limit; // CLOCK_MONOTONIC
    try {
        while (m_in_flight > 0 && !m_failure) {
            const auto left =
                std::chrono::duration_cast<std::chrono::nanoseconds>(give_up - now()).count();
            if (left <= 0) {
                break;
            }
            cancel_all_in_flight(); // only what has no cancel in the ring yet
            submit_pending(0);      // hands the cancels over; takes what has completed
            if (io_uring_cq_ready(&m_ring) == 0) {
                // Waits for one completion, but not past the bound. -ETIME and -EINTR only
                // mean: look again.
                __kernel_timespec wait{left / 1'000'000'000, left % 1'000'000'000};
                io_uring_cqe* cqe = nullptr;
                (void)io_uring_wait_cqe_timeout(&m_ring, &cqe, &wait);
            }
            reap();
            dispatch(/*resume=*/false);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ucoro: ~io_context: the ring failed while draining: %s\n", e.what());
    }
    if (m_in_flight > 0 && !settle_synchronously()) {
        // The ring cannot tell us when the kernel is done with the remaining operations, so
        // their frames must never be freed: leaking them is the only safe choice left.
        std::fprintf(stderr,
                     "ucoro: ~io_context could not wait for %zu operations; their coroutine "
                     "frames are leaked\n",
                     m_in_flight);
        return false;
    }
    m_ready.clear();
    return true;
}

bool io_context::settle_synchronously() noexcept {
    // A lost completion (or a broken io_uring_enter) means waiting for CQEs may never end.
    // IORING_REGISTER_SYNC_CANCEL (6.0) cancels every request and returns only once the
    // kernel has finished with all of them; after that no request refers to our memory,
    // whatever its CQE's fate.
    io_uring_sync_cancel_reg cancel{};
    cancel.flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL;
    cancel.timeout.tv_sec = 5;
    const int result = io_uring_register_sync_cancel(&m_ring, &cancel);
    if (result < 0 && result != -ENOENT) {
        return false;
    }
    // Under DEFER_TASKRUN the cancelled requests' CQEs are posted by task work that runs
    // only when this thread asks for events: fetch them, or they would look lost.
    (void)io_uring_get_events(&m_ring);
    reap();
    dispatch(/*resume=*/false);
    // Whatever is still listed had its final CQE lost; the kernel holds nothing now.
    const auto abandon_all = [this](detail::operation*& head) {
        while (head != nullptr) {
            detail::operation& op = *head;
            unlink(op); // advances head
            op.abandon();
        }
    };
    abandon_all(m_in_flight_without_fd);
    for (detail::operation*& head : m_in_flight_by_fd) {
        abandon_all(head);
    }
    return true;
}

// ---------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------

void io_context::run() {
    run_loop(nullptr);
}

void io_context::run_loop(const bool* done) {
    if (m_running) {
        // A nested loop would dispatch the outer loop's completions a second time.
        throw std::logic_error("io_context::run/block_on called from inside the same context");
    }
    if (m_failure) {
        std::rethrow_exception(m_failure);
    }
    m_running = true;
    struct running_guard {
        bool& running;
        ~running_guard() { running = false; }
    } guard{m_running};
    while (true) {
        // Resume what is ready. A coroutine may post more; those wait for the next turn
        // so that I/O completions are not starved.
        for (std::size_t n = m_ready.size(); n > 0 && !(done && *done); --n) {
            const auto handle = m_ready.front();
            m_ready.pop_front();
            detail::resume(handle);
        }
        if (done != nullptr && *done) {
            break;
        }
        if (m_stop_requested) {
            cancel_all_in_flight(); // also catches requests made after stop()
        } else if (m_releases_pending) {
            cancel_released();
        }
        if (m_in_flight == 0 && m_ready.empty() && (m_holds == 0 || m_stop_requested)) {
            // The stop, if any, is complete: nothing is left. Tasks spawned from now on are
            // not cancelled (the scopes of earlier ones stay requested).
            m_stop_requested = false;
            m_root_scope.reset();
            break;
        }
        // One syscall: submit everything prepared since the last turn and, if nobody is
        // ready to run, sleep until at least one completion arrives.
        submit_pending(m_ready.empty() && m_completions.empty() ? 1 : 0);
        reap();
        if (m_failure) {
            std::rethrow_exception(m_failure);
        }
        dispatch(/*resume=*/true);
    }
    // Hand the kernel what the last coroutines prepared (a block_on can end mid-turn):
    // an SQE left in the ring would be submitted late, against an fd that may have been
    // closed and reused by then.
    if (io_uring_sq_ready(&m_ring) > 0) {
        submit_pending(0);
    }
}

void io_context::submit_pending(unsigned wait_for) {
    while (true) {
        ++m_stats.submit_calls;
        // With DEFER_TASKRUN, completions reach the CQ only when we ask for events, so even
        // the non-waiting submit asks, or ready coroutines could starve I/O.
        int result = 0;
        if (m_faults != nullptr) [[unlikely]] {
            result = m_faults->before_enter();
        }
        if (result == 0) {
            if (wait_for == 0) {
                result = io_uring_submit_and_get_events(&m_ring);
            } else if (m_features.batch_wait && m_batch_wait_events > wait_for) {
                result = detail::submit_and_wait_batch(
                    m_ring, m_batch_wait_events, m_batch_wait_usec, m_features.registered_ring_fd);
            } else {
                result = io_uring_submit_and_wait(&m_ring, wait_for);
            }
        }
        if (result >= 0 || result == -ETIME) {
            m_stats.submissions += result > 0 ? static_cast<unsigned>(result) : 0U;
            return;
        }
        if (result == -EINTR) {
            continue;
        }
        if (result == -EBUSY || result == -EAGAIN) {
            // The kernel holds completions we have not taken (CQ overflow backlog): make
            // room by reaping them, then try again. Those must be dispatched before we may
            // sleep: they could be the last completions there will ever be.
            reap();
            wait_for = 0;
            continue;
        }
        if (result == -EBADR) {
            // 6.x reports once that it dropped a CQE (CQ overflow with no memory to keep it).
            check_lost_completions();
            if (!m_failure) {
                fail(EBADR, "io_uring dropped a completion (CQ overflow without memory)");
            }
            std::rethrow_exception(m_failure);
        }
        // Both liburing calls above end in io_uring_enter.
        throw std::system_error(-result, std::system_category(), "io_uring_enter");
    }
}

void io_context::reap() noexcept {
    while (true) {
        unsigned head = 0;
        unsigned count = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&m_ring, head, cqe) {
            reaped c{cqe->user_data, cqe->res, cqe->flags};
            ++count;
            if (m_faults != nullptr) [[unlikely]] {
                if (m_faults->on_completion(c.user_data, c.result, c.flags) ==
                    detail::fault_injector::verdict::drop) {
                    // What the kernel does when it drops a CQE: count it in the ring.
                    io_uring_smp_store_release(m_ring.cq.koverflow, *m_ring.cq.koverflow + 1);
                    continue;
                }
            }
            // Room for a full CQ was reserved up front; a larger burst (overflow flushes)
            // may allocate, and running out of memory here cannot be reported safely.
            m_completions.push_back(c);
        }
        io_uring_cq_advance(&m_ring, count);
        m_stats.completions += count;
        check_lost_completions();
        if (!io_uring_cq_has_overflow(&m_ring)) {
            return;
        }
        // The kernel kept CQEs that did not fit (IORING_FEAT_NODROP): now that the CQ has
        // room, have it flush them to us. What arrives next waited in that backlog.
        io_uring_get_events(&m_ring);
        m_stats.cq_overflows += io_uring_cq_ready(&m_ring);
    }
}

void io_context::check_lost_completions() noexcept {
    // The kernel counts here the CQEs it had to drop (IORING_FEAT_NODROP keeps them unless
    // it cannot allocate). Each lost CQE may be the final one of an operation that will
    // then never leave the in-flight list: run() would wait forever.
    const unsigned dropped = io_uring_smp_load_acquire(m_ring.cq.koverflow);
    if (dropped == m_dropped_seen) [[likely]] {
        return;
    }
    // This allocates (the message, the exception) in a noexcept path: out of memory here
    // terminates, which is no worse than the broken guarantee it reports.
    const unsigned lost = dropped - m_dropped_seen;
    m_dropped_seen = dropped;
    m_stats.completions_lost += lost;
    const std::string what =
        fmt::format("io_uring dropped {} completion(s) (CQ overflow without memory to keep "
                    "them); the exactly-once guarantee is broken, stopping this context",
                    lost);
    std::fprintf(stderr, "ucoro: %s\n", what.c_str());
    if (!m_failure) {
        m_failure = std::make_exception_ptr(
            std::system_error(std::make_error_code(std::errc::state_not_recoverable), what));
    }
}

void io_context::fail(int error, const std::string& what) {
    m_failure = std::make_exception_ptr(std::system_error(error, std::system_category(), what));
    std::rethrow_exception(m_failure);
}

void io_context::dispatch(bool resume) {
    // By index: a resumed coroutine may submit, and submit() may reap (and so append).
    for (std::size_t i = 0; i < m_completions.size(); ++i) {
        const reaped c = m_completions[i];
        auto* op = reinterpret_cast<detail::operation*>(static_cast<std::uintptr_t>(c.user_data));
        trace::cqe(m_trace, op, c.result, c.flags);
        if (c.user_data <= detail::wake_user_data) [[unlikely]] {
            // 0: completion of a cancel request, which owns no memory. 1: another thread
            // posted to the inbox.
            if (c.user_data == detail::wake_user_data) {
                receive_messages(resume);
            }
            continue;
        }
        if ((c.flags & IORING_CQE_F_MORE) == 0) {
            unlink(*op); // its final CQE: the kernel is done with op
        }
        const int result = without_restart_code(c.result, op->m_cancel_requested);
        if (resume) {
            op->complete(result, c.flags);
        } else {
            op->discard(result, c.flags);
        }
    }
    m_completions.clear();
}

// ---------------------------------------------------------------------------------------
// Messages from other threads
// ---------------------------------------------------------------------------------------

remote_context io_context::remote() {
    if (!m_inbox) {
        const auto method =
            m_features.msg_ring ? detail::wake_method::msg_ring : detail::wake_method::eventfd;
        m_inbox = std::make_shared<detail::inbox>(m_ring.ring_fd, method);
        if (method == detail::wake_method::eventfd) {
            arm_wake_poll();
        }
    }
    if (m_inbox->method() == detail::wake_method::msg_ring) {
        detail::prepare_sender(); // this thread is likely to post to others too
    }
    return remote_context(m_inbox);
}

void io_context::hold() {
    (void)remote(); // a held loop waits for the inbox's wake-up, so there must be one
    ++m_holds;
}

void io_context::arm_wake_poll() {
    // Not an operation: it refers to no memory, so it needs no tracking, keeps no run()
    // alive, and ~io_context may leave it to the ring's teardown.
    io_uring_sqe* sqe = acquire_sqe();
    io_uring_prep_poll_add(sqe, m_inbox->eventfd(), POLLIN);
    io_uring_sqe_set_data64(sqe, detail::wake_user_data);
    trace::sqe(m_trace, *sqe, nullptr);
}

void io_context::receive_messages(bool resume) {
    if (!resume) {
        return; // the destructor's drain: it runs what is queued itself, after closing
    }
    if (m_inbox->method() == detail::wake_method::eventfd) {
        // Clear the counter before taking the messages, so a post after take_all() fires
        // the (re-armed) poll again.
        m_inbox->consume_eventfd();
        arm_wake_poll();
    }
    detail::inbox::run_all(m_inbox->take_all(),
                           [this](std::exception_ptr error) { report_unhandled_exception(error); });
}

// ---------------------------------------------------------------------------------------
// Failures of detached work
// ---------------------------------------------------------------------------------------

void io_context::report_unhandled_exception(std::exception_ptr error) noexcept {
    ++m_stats.unhandled_exceptions;
    try {
        if (m_exception_handler) {
            m_exception_handler(error);
            return;
        }
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            fmt::print(stderr, "ucoro: exception escaped a spawned task: {}\n", e.what());
        } catch (...) {
            fmt::print(stderr, "ucoro: exception of unknown type escaped a spawned task\n");
        }
    } catch (...) {
        std::fputs("ucoro: the unhandled-exception handler itself threw\n", stderr);
    }
}

// ---------------------------------------------------------------------------------------
// Submission and cancellation
// ---------------------------------------------------------------------------------------

io_uring_sqe* io_context::acquire_sqe() {
    while (true) {
        if (io_uring_sqe* sqe = io_uring_get_sqe(&m_ring)) {
            return sqe;
        }
        // The SQ is full: hand what is there to the kernel and carry on.
        submit_pending(0);
    }
}

void io_context::submit(detail::operation& op) {
    start(op, *acquire_sqe());
}

void io_context::submit_linked(detail::operation& first, detail::operation& second) {
    // Flushing between the two SQEs would hand the kernel a link with its tail missing.
    reserve_sqes(2);
    io_uring_sqe* head = io_uring_get_sqe(&m_ring);
    io_uring_sqe* tail = io_uring_get_sqe(&m_ring);
    start(first, *head);
    head->flags |= IOSQE_IO_LINK;
    start(second, *tail);
}

void io_context::start(detail::operation& op, io_uring_sqe& sqe) noexcept {
    op.prepare(sqe);
    io_uring_sqe_set_data(&sqe, &op);
    if (m_faults != nullptr) [[unlikely]] {
        m_faults->on_submit(sqe);
    }
    trace::sqe(m_trace, sqe, &op);
    op.m_cancel_requested = false; // a new submission: no cancel is aimed at it yet
    op.m_released = false;
    op.m_fd = descriptor_of(sqe);
    link(op);
}

void io_context::cancel(detail::operation& op) {
    if (op.m_cancel_requested) {
        return; // a cancel for this submission is already in the ring
    }
    // Take the SQE first: if that throws, no cancel exists, and the flag must say so or
    // every later cancel (stop(), the destructor's drain) would skip this operation.
    io_uring_sqe* sqe = acquire_sqe();
    io_uring_prep_cancel(sqe, &op, 0);
    io_uring_sqe_set_data64(sqe, 0);
    trace::sqe(m_trace, *sqe, nullptr);
    op.m_cancel_requested = true;
}

void io_context::cancel_fd(int fd) {
    io_uring_sqe* sqe = acquire_sqe();
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, 0);
    trace::sqe(m_trace, *sqe, nullptr);
}

std::size_t io_context::cancels_needed_on(int fd) const noexcept {
    std::size_t count = 0;
    if (fd >= 0 && static_cast<std::size_t>(fd) < m_in_flight_by_fd.size()) {
        for (const detail::operation* op = m_in_flight_by_fd[static_cast<std::size_t>(fd)];
             op != nullptr; op = op->m_next) {
            count += op->m_cancel_requested ? 0 : 1;
        }
    }
    return count;
}

void io_context::cancel_operations_on(int fd) {
    if (fd < 0 || static_cast<std::size_t>(fd) >= m_in_flight_by_fd.size()) {
        return; // never used by an operation of this context
    }
    // cancel() may flush the SQ, which reaps but never dispatches: the list stays as it is.
    for (detail::operation* op = m_in_flight_by_fd[static_cast<std::size_t>(fd)]; op != nullptr;
         op = op->m_next) {
        op->m_descriptor_closed = true; // even one whose cancel is in already (a pause)
        cancel(*op);
    }
}

void io_context::release(detail::operation& op) noexcept {
    op.m_released = true;
    try {
        cancel(op);
    } catch (...) {
        // The SQ is full and the flush failed: the loop retries at its next turn, so an
        // released request cannot keep run() alive forever.
        m_releases_pending = true;
    }
}

// `visit` must not unlink: what it may do (cancel, flush the SQ, reap) never dispatches.
// O(in flight + highest descriptor used), for the rare walks (stop, the destructor).
template <typename Visit>
void io_context::for_each_in_flight(Visit visit) {
    for (detail::operation* op = m_in_flight_without_fd; op != nullptr; op = op->m_next) {
        visit(*op);
    }
    for (detail::operation* head : m_in_flight_by_fd) {
        for (detail::operation* op = head; op != nullptr; op = op->m_next) {
            visit(*op);
        }
    }
}

void io_context::cancel_released() {
    m_releases_pending = false;
    for_each_in_flight([this](detail::operation& op) {
        if (op.m_released) {
            cancel(op);
        }
    });
}

void io_context::reserve_sqes(unsigned count) {
    // More than the whole SQ can never be free at once: take what can be (the rest of such
    // a batch is flushed as it is queued).
    count = std::min(count, *m_ring.sq.kring_entries);
    while (io_uring_sq_space_left(&m_ring) < count) {
        submit_pending(0);
    }
}

void io_context::cancel_all_in_flight() {
    for_each_in_flight([this](detail::operation& op) { cancel(op); });
}

detail::operation*& io_context::in_flight_list(int fd) noexcept {
    if (fd < 0) {
        return m_in_flight_without_fd;
    }
    const auto index = static_cast<std::size_t>(fd);
    if (index >= m_in_flight_by_fd.size()) {
        // The first operation on a number above the highest so far: the table grows
        // (geometrically) to the highest descriptor the process uses, 8 bytes per number,
        // and then no more. Out of memory here terminates (noexcept), as in reap().
        m_in_flight_by_fd.resize(index + 1);
    }
    return m_in_flight_by_fd[index];
}

void io_context::link(detail::operation& op) noexcept {
    detail::operation*& head = in_flight_list(op.m_fd);
    op.m_prev = nullptr;
    op.m_next = head;
    if (head != nullptr) {
        head->m_prev = &op;
    }
    head = &op;
    ++m_in_flight;
}

void io_context::unlink(detail::operation& op) noexcept {
    if (op.m_prev != nullptr) {
        op.m_prev->m_next = op.m_next;
    } else {
        in_flight_list(op.m_fd) = op.m_next; // listed, so the table already has its slot
    }
    if (op.m_next != nullptr) {
        op.m_next->m_prev = op.m_prev;
    }
    op.m_prev = op.m_next = nullptr;
    --m_in_flight;
}

} // namespace ucoro
