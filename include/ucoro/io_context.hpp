// io_context: the single-threaded executor that owns one io_uring.
#pragma once

#include <liburing.h>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/detail/operation.hpp"
#include "ucoro/detail/ring.hpp"
#include "ucoro/remote_context.hpp"
#include "ucoro/task.hpp"
#include "ucoro/task_handle.hpp"

namespace ucoro {

namespace detail {
struct context_access;
class spawned_promise;
class fault_injector;
void set_fault_injector(io_context&, fault_injector*) noexcept;
io_uring& native_ring(io_context&) noexcept;
} // namespace detail

/// Sizes of the ring, and switches for the optional kernel features. The completion queue
/// is larger than the submission queue because one turn of the loop may submit a full SQ
/// several times over (see submit()), and every in-flight request may complete at once.
struct io_context_options {
    unsigned sq_entries = 256;
    /// 0 means 16 times sq_entries.
    unsigned cq_entries = 0;
    /// Use multishot accept where the kernel has it (5.19); false forces the fallback.
    bool multishot_accept = true;
    /// Allow provided-buffer rings (buffer_ring.hpp, 5.19); false makes them unavailable.
    bool buffer_rings = true;
    /// Use multishot receive where the kernel has it (6.0); false makes each receive into a
    /// buffer ring a single-shot request, re-armed after every completion.
    bool multishot_recv = true;
    /// Register the ring's own descriptor with the kernel (io_uring_register_ring_fd, 5.18)
    /// where it can be, so that each io_uring_enter skips the file-table lookup and
    /// reference count of the ring's fd; false forces the plain descriptor.
    bool register_ring_fd = true;
    /// Pass MSG_WAITALL on send_all and send_all_gather, so that the kernel retries a short
    /// send itself (waiting for socket buffer space) instead of posting a short completion
    /// that ucoro resubmits (ring_features::send_waitall). Off by default: measured without
    /// a gain on the echo server, where short sends are rare (docs/fast-path-experiments.md,
    /// section 4); a program that sends into full socket buffers may opt in.
    bool send_waitall = false;
    /// Receive streams ask for bundles (IORING_RECVSEND_BUNDLE, Linux 6.10;
    /// ring_features::recv_bundle): one completion may carry several consecutive ring
    /// buffers, which the stream hands out one by one as usual. Off by default: measured
    /// without a gain on the echo server (docs/fast-path-experiments.md, section 9).
    bool recv_bundle = false;
    /// Give each multishot receive a total byte limit, the rest of its stream's share of
    /// the ring (ring_features::recv_limit, Linux 6.16), so that the kernel itself stops it
    /// there; false forces the fallback, a cancel once the share is reached.
    bool recv_limit = true;
    /// Batching for a loop that sleeps (nothing ready, waiting for completions): for up to
    /// this long (at most 1 s) after it falls asleep, it wakes only for a whole batch of
    /// batch_wait_events completions; after that, for the first one, as without it
    /// (IORING_ENTER_EXT_ARG's min_wait_usec, Linux 6.12; ring_features::batch_wait). One
    /// wake-up then serves several completions: less CPU per message when many sources
    /// trickle in, at up to this much added latency per sleep. A loop with coroutines ready
    /// does not sleep, and an idle loop still sleeps until something arrives.
    ///
    /// The price: a batch that cannot fill costs the whole window. Completions already in
    /// the queue when the loop falls asleep (a send that finished as it was submitted) count
    /// towards the batch but do not end the wait, and a client in a request/response
    /// exchange completes one message per round trip, so a loop serving fewer sources than
    /// the batch waits out the window on every sleep. Keep batch_wait_events at or below
    /// the number of independent sources (set_batch_wait_events() while running; the echo
    /// server uses its live connections, at most 16). An IORING_OP_TIMEOUT that fires
    /// (sleep_for, sleep_until) ends the wait at once, as the kernel always wakes a waiter
    /// for it; a with_timeout's linked timeout and a cancel do not, and wait for the window
    /// or the batch like any completion. 0, the default, wakes at the first completion; a
    /// kernel without the feature ignores it.
    std::chrono::microseconds batch_wait{0};
    /// The batch that ends a batch_wait early. Below 2 there is nothing to batch and the loop
    /// wakes at the first completion.
    unsigned batch_wait_events = 16;
    /// Wake a context for cross-thread messages (remote_context) with IORING_OP_MSG_RING
    /// where the kernel has it (5.18; ring_features::msg_ring); false forces the eventfd
    /// fallback. Measured in docs/scaling.md.
    bool msg_ring = true;
    /// Where to write the trace (trace.hpp): one line per SQE, CQE and spawned task. Null
    /// means stderr if UCORO_TRACE=1 is in the environment, otherwise no trace.
    std::FILE* trace = nullptr;
};

/// The event loop: one thread, one io_uring, any number of coroutines.
///
/// Each turn of run() resumes the coroutines that are ready, submits every SQE they
/// prepared and waits for at least one completion with a single io_uring_submit_and_wait,
/// then takes every CQE that is ready and resumes the coroutine each belongs to.
///
/// The invariant everything relies on: every submitted operation completes exactly once
/// (its final CQE is seen) before the memory it refers to is released. stop() and the
/// destructor cancel what is in flight and wait for the completions. If the kernel ever
/// loses a completion (it can, when a CQ overflows and it cannot allocate room), the
/// invariant is broken: the context fails loudly instead of waiting forever.
///
/// Not thread-safe: create, use and destroy it on one thread. That thread must be the one
/// that created it, not merely one at a time: the registered ring descriptor
/// (io_context_options::register_ring_fd) is an index into the creating thread's table of
/// registered io_uring descriptors, so run() on another thread would enter another ring or
/// fail with EBADF, and the destructor would unregister a slot of the wrong thread. Other
/// threads reach it only through remote(); thread_group runs one context per thread.
class io_context {
public:
    /// Throws std::system_error with the errno of io_uring_queue_init when io_uring is not
    /// available (see describe_io_uring_error()), or ENOSYS when the kernel lacks an
    /// operation ucoro needs.
    explicit io_context(io_context_options options = {});
    ~io_context();
    io_context(const io_context&) = delete;
    io_context& operator=(const io_context&) = delete;

    /// Runs `work` as a task that frees its own frame when done. It starts on the next turn
    /// of run(). The handle joins or cancels it (task_handle.hpp); ignoring the handle
    /// detaches it. An exception that escapes it goes to the unhandled-exception handler
    /// (see set_unhandled_exception_handler). The task has its own cancellation scope, a
    /// child of the context's, which stop() requests.
    task_handle spawn(task<void> work);

    /// What to do with an exception that escapes a spawned task. The default handler
    /// prints it on stderr; every one is counted in stats().unhandled_exceptions either
    /// way. A handler may call stop(), e.g. when the task was essential. A handler that
    /// throws is reported on stderr and otherwise ignored. An empty function restores the
    /// default.
    using exception_handler = std::function<void(std::exception_ptr)>;
    void set_unhandled_exception_handler(exception_handler handler) {
        m_exception_handler = std::move(handler);
    }

    /// Runs the loop until no work is left (nothing ready, nothing in flight) or until
    /// stop() has been called and everything in flight has completed. Throws
    /// std::system_error if the ring fails (io_uring_enter errors, a lost completion).
    void run();

    /// Asks the loop to finish: every operation in flight, and every one submitted after
    /// this call, is cancelled; the coroutines see std::errc::operation_canceled and
    /// unwind. The request stays until a run() has emptied the context: a block_on whose
    /// task finishes first returns with the request still pending, and the next run()
    /// completes it.
    ///
    /// It is task_handle::cancel applied to everything: it requests the context's root
    /// cancellation scope, to which every spawned task's scope is attached, so multishot
    /// streams and what a task starts later are reached too. What is in flight outside any
    /// scope (an operation awaited by a plain coroutine, a released request) is cancelled by
    /// the loop as well, at its next turn.
    ///
    /// A send blocked on a peer that never reads may not end: once the kernel has moved it
    /// to an io-wq worker, io_uring cannot cancel it (docs/cancellation.md). Shut such a
    /// socket down (shutdown(2)) to end it.
    void stop() noexcept {
        m_stop_requested = true;
        m_root_scope.request();
    }
    bool stop_requested() const noexcept { return m_stop_requested; }

    /// Runs `work` on this context until it finishes and returns its value (or rethrows
    /// its exception). Other spawned work runs meanwhile.
    template <typename T>
    T block_on(task<T> work);

private:
    // The loop's internals: the library's own operations reach them through
    // detail::context_access (io_operation's submit, a close's cancels); a program writes
    // operations on ucoro::io_operation (operation.hpp) and never names these.
    friend struct detail::context_access;

    /// Asks the kernel to cancel one in-flight operation (IORING_OP_ASYNC_CANCEL). It
    /// still completes, with operation_canceled or with its own result if it won the race.
    void cancel(detail::operation& op);

    /// Asks the kernel to cancel every request on `fd` (IORING_ASYNC_CANCEL_FD, 5.19; a
    /// no-op on older kernels). The kernel matches every request in flight against `fd`,
    /// so this costs O(requests in flight): fine once (the echo server's drain ends its
    /// accept with it), too dear once per connection, which is why a close uses
    /// cancel_operations_on() instead.
    void cancel_fd(int fd);

    /// How many operations whose SQE named `fd` are in flight without a cancel in the ring
    /// yet: the SQEs cancel_operations_on(fd) is about to take (reserve_sqes).
    std::size_t cancels_needed_on(int fd) const noexcept;

    /// Cancels (as cancel() does, by user_data) every operation in flight whose SQE named
    /// `fd`, found in a list kept per descriptor: it costs O(operations on `fd`) whatever
    /// else is in flight, and takes no SQE when nothing is armed there. Used by the
    /// awaitable closes, so that nothing stays armed on a descriptor that is about to close.
    /// Operations on a fixed file (IOSQE_FIXED_FILE) are not listed by descriptor. The lists
    /// go by number, not by file: an operation left armed on a descriptor closed outside the
    /// ring (::close, a socket's destructor) stays filed under it, and is cancelled too by
    /// a later close of a new socket that reuses the number.
    void cancel_operations_on(int fd);

    /// Takes over an in-flight operation that its owner has let go of (a multishot request
    /// whose stream was destroyed): cancels it now, or on the next turn if the ring cannot
    /// take the cancel now. The operation frees itself when its final CQE arrives.
    void release(detail::operation& op) noexcept;

    /// Makes sure the next `count` SQEs can be taken without a flush, flushing now if not,
    /// so that SQEs that belong together (a cancel and its close) are queued together or
    /// not at all.
    void reserve_sqes(unsigned count);

    /// Starts an operation: takes an SQE, lets `op` fill it and tracks `op` until its
    /// final completion. If the SQ is full it is flushed first: no request is dropped.
    void submit(detail::operation& op);

    /// Starts two operations as one link (IOSQE_IO_LINK): `second` runs only after `first`,
    /// e.g. a recv and its IORING_OP_LINK_TIMEOUT. Both SQEs are taken together, flushing
    /// the SQ first if it has room for fewer, so a full SQ never splits the link.
    void submit_linked(detail::operation& first, detail::operation& second);

public:
    /// Queues a coroutine to be resumed on the next turn of the loop.
    void post(std::coroutine_handle<> handle) { m_ready.push_back(handle); }

    /// The handle other threads use to post callables to this context (remote_context.hpp).
    /// Call it on the context's own thread; the handles it returns may go anywhere. The
    /// first call sets up the cross-thread inbox (and, on the eventfd path, arms its poll).
    remote_context remote();

    /// While held, run() keeps waiting for cross-thread messages when it has no work of its
    /// own, instead of returning; release() undoes one hold(). stop() ends run() all the
    /// same. Both are for the context's own thread (another thread posts a release).
    void hold();
    void release() noexcept { --m_holds; }

    /// Where the trace goes (trace.hpp), or null when tracing is off.
    std::FILE* trace_output() const noexcept { return m_trace; }

    /// The clock of sleep_until and of the kernel's absolute timeouts (CLOCK_MONOTONIC):
    /// it never jumps when the wall clock is set.
    using clock = std::chrono::steady_clock;
    static clock::time_point now() noexcept { return clock::now(); }

    /// How many operations the kernel still owns.
    std::size_t in_flight() const noexcept { return m_in_flight; }

    /// The optional kernel features in use (probed at construction).
    const detail::ring_features& features() const noexcept { return m_features; }

    /// Changes io_context_options::batch_wait_events while the loop runs. A batch is worth
    /// waiting for only when that many completions can come at once: a connection in a
    /// request/response exchange completes one message per round trip, so a server that
    /// sets this to its number of live connections (capped) never holds one busy client
    /// back by the window. Below 2 the loop wakes at the first completion.
    void set_batch_wait_events(unsigned events) noexcept { m_batch_wait_events = events; }

    /// Counters, for tests, benchmarks and the server's -v report.
    struct statistics {
        std::uint64_t submit_calls = 0;         // io_uring_enter calls the loop made
        std::uint64_t submissions = 0;          // SQEs those calls handed to the kernel
        std::uint64_t completions = 0;          // CQEs seen
        std::uint64_t cq_overflows = 0;         // CQEs that waited in the kernel's overflow
                                                // list because the CQ was full
        std::uint64_t completions_lost = 0;     // CQEs the kernel dropped (fatal)
        std::uint64_t unhandled_exceptions = 0; // exceptions that escaped spawned tasks
    };
    const statistics& stats() const noexcept { return m_stats; }

private:
    friend class detail::spawned_promise;
    friend void detail::set_fault_injector(io_context&, detail::fault_injector*) noexcept;
    // For what registers resources with the ring (buffer_ring), without a public accessor.
    friend io_uring& detail::native_ring(io_context&) noexcept;

    struct reaped {
        std::uint64_t user_data;
        int result;
        std::uint32_t flags;
    };

    void run_loop(const bool* done);
    io_uring_sqe* acquire_sqe();
    void start(detail::operation& op, io_uring_sqe& sqe) noexcept;
    void submit_pending(unsigned wait_for);
    void reap() noexcept;
    void check_lost_completions() noexcept;
    void dispatch(bool resume);
    void cancel_all_in_flight();
    void cancel_released();
    void receive_messages(bool resume);
    void arm_wake_poll();
    void link(detail::operation& op) noexcept;
    void unlink(detail::operation& op) noexcept;
    detail::operation*& in_flight_list(int fd) noexcept;
    template <typename Visit>
    void for_each_in_flight(Visit visit);
    bool drain_on_destruction() noexcept;
    bool settle_synchronously() noexcept;
    void report_unhandled_exception(std::exception_ptr error) noexcept;
    [[noreturn]] void fail(int error, const std::string& what);

    io_uring m_ring{};
    detail::ring_features m_features;
    unsigned m_batch_wait_usec = 0;   // io_context_options::batch_wait, when the kernel has it
    unsigned m_batch_wait_events = 1; // io_context_options::batch_wait_events, or as set
    bool m_stop_requested = false;
    bool m_running = false;
    bool m_releases_pending = false; // a released operation still needs its cancel
    std::size_t m_in_flight = 0;
    // The operations in flight, filed by the descriptor their SQE names (detail::operation's
    // m_fd): a close cancels what is armed on its descriptor without walking the others.
    // Indexed by descriptor, grown on demand to the highest one used; what names none is
    // in m_in_flight_without_fd.
    std::vector<detail::operation*> m_in_flight_by_fd;
    detail::operation* m_in_flight_without_fd = nullptr;
    std::deque<std::coroutine_handle<>> m_ready;
    std::vector<reaped> m_completions;                 // taken from the CQ, not dispatched
    detail::spawned_promise* m_spawned_head = nullptr; // detached tasks still alive
    detail::cancellation_scope m_root_scope;           // every spawned task's scope hangs below it
    exception_handler m_exception_handler;
    detail::fault_injector* m_faults = nullptr;
    std::FILE* m_trace = nullptr; // read once: one predictable branch per SQE and CQE
    unsigned m_dropped_seen = 0;  // the CQ overflow counter when last checked
    std::exception_ptr m_failure; // set once the ring has failed for good
    // Made by the first remote(): the door other threads post through.
    std::shared_ptr<detail::inbox> m_inbox;
    unsigned m_holds = 0; // hold() minus release()
    statistics m_stats;
};

/// Turns the errno from a failed io_uring setup into one line naming the likely cause and
/// what to do about it (EPERM: seccomp or kernel.io_uring_disabled; ENOMEM: the memlock
/// limit; ENOSYS: an old kernel). Defined beside the ring setup, in detail/ring.cpp.
std::string describe_io_uring_error(int error);

namespace detail {

template <typename T>
struct block_on_state {
    bool done = false;
    std::exception_ptr failure;
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> value;
};

// The state is shared, not on block_on's stack: if the loop throws, block_on returns while
// this task is still suspended in the ring, and it may finish in a later run().
template <typename T>
task<void> run_to_state(task<T> work, std::shared_ptr<block_on_state<T>> state) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(work);
            state->value.emplace(true);
        } else {
            state->value.emplace(co_await std::move(work));
        }
    } catch (...) {
        state->failure = std::current_exception();
    }
    state->done = true;
}

} // namespace detail

template <typename T>
T io_context::block_on(task<T> work) {
    auto state = std::make_shared<detail::block_on_state<T>>();
    spawn(detail::run_to_state(std::move(work), state));
    run_loop(&state->done);
    if (!state->done) {
        // The task waits on something that is not in the ring and never will be; its
        // frame is freed by ~io_context.
        throw std::logic_error("io_context::block_on: the loop ran out of work before the "
                               "task finished");
    }
    if (state->failure) {
        std::rethrow_exception(state->failure);
    }
    if constexpr (!std::is_void_v<T>) {
        return std::move(*state->value);
    }
}

} // namespace ucoro
