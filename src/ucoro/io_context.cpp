#include "ucoro/io_context.hpp"

#include <fmt/core.h>

#include <cerrno>
#include <cstdio>
#include <system_error>

namespace ucoro {

// ---------------------------------------------------------------------------------------
// Detached tasks
// ---------------------------------------------------------------------------------------

namespace detail {

/// The coroutine spawn() wraps around a task<void>. It frees its own frame when it
/// finishes (final_suspend never suspends) and, while alive, sits in the context's list of
/// spawned tasks so that ~io_context can free the ones that never finished.
class spawned_promise {
public:
    spawned_promise(io_context& context, task<void>&) noexcept : m_context(&context) {
        m_next = context.m_spawned_head;
        if (m_next != nullptr) {
            m_next->m_prev = this;
        }
        context.m_spawned_head = this;
    }
    ~spawned_promise() {
        if (m_prev != nullptr) {
            m_prev->m_next = m_next;
        } else {
            m_context->m_spawned_head = m_next;
        }
        if (m_next != nullptr) {
            m_next->m_prev = m_prev;
        }
    }

    std::coroutine_handle<spawned_promise> handle() noexcept {
        return std::coroutine_handle<spawned_promise>::from_promise(*this);
    }
    spawned_promise* next() const noexcept { return m_next; }

    struct spawned {
        using promise_type = spawned_promise;
        std::coroutine_handle<spawned_promise> handle;
    };
    spawned get_return_object() noexcept { return {handle()}; }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept {
        // Nobody awaits a spawned task, so the exception has nowhere to go: say so loudly.
        try {
            try {
                throw;
            } catch (const std::exception& e) {
                fmt::print(stderr, "ucoro: exception escaped a spawned task: {}\n", e.what());
            } catch (...) {
                fmt::print(stderr, "ucoro: exception of unknown type escaped a spawned task\n");
            }
        } catch (...) {
            // Writing to stderr failed: there is nowhere left to report to.
        }
    }

private:
    io_context* m_context;
    spawned_promise* m_prev = nullptr;
    spawned_promise* m_next = nullptr;
};

} // namespace detail
} // namespace ucoro

namespace ucoro {
namespace {

detail::spawned_promise::spawned run_detached(io_context&, task<void> work) {
    co_await std::move(work);
}

// The opcodes the library submits, with the kernel that added the last of them.
constexpr int required_opcodes[] = {
    IORING_OP_ACCEPT,       IORING_OP_CONNECT,  IORING_OP_RECV,
    IORING_OP_SEND,         IORING_OP_CLOSE,    IORING_OP_TIMEOUT,
    IORING_OP_ASYNC_CANCEL, IORING_OP_POLL_ADD, IORING_OP_SHUTDOWN,
};

int init_ring(io_uring& ring, const io_context_options& options) {
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
    if ((params.features & IORING_FEAT_NODROP) == 0) {
        // Before 5.5 an overflowing CQ silently loses completions: that would break the
        // exactly-once invariant, so refuse to run.
        io_uring_queue_exit(&ring);
        return -ENOSYS;
    }
    io_uring_probe* probe = io_uring_get_probe_ring(&ring);
    if (probe == nullptr) {
        io_uring_queue_exit(&ring);
        return -ENOSYS; // IORING_REGISTER_PROBE arrived in 5.6
    }
    for (int opcode : required_opcodes) {
        if (!io_uring_opcode_supported(probe, opcode)) {
            io_uring_free_probe(probe);
            io_uring_queue_exit(&ring);
            return -ENOSYS;
        }
    }
    io_uring_free_probe(probe);
    return 0;
}

} // namespace

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

// ---------------------------------------------------------------------------------------
// Lifetime
// ---------------------------------------------------------------------------------------

io_context::io_context(io_context_options options) {
    // Allocate before the ring exists, so that a throw here leaks no ring.
    m_completions.reserve(options.cq_entries != 0 ? options.cq_entries : options.sq_entries * 16);
    if (const int result = init_ring(m_ring, options); result < 0) {
        throw std::system_error(-result, std::system_category(), describe_io_uring_error(-result));
    }
}

io_context::~io_context() {
    if (drain_on_destruction()) {
        // Every operation has completed, so the kernel refers to no frame any more and
        // the detached tasks that never finished can be freed.
        while (m_spawned_head != nullptr) {
            m_spawned_head->handle().destroy(); // its promise unlinks itself
        }
    }
    io_uring_queue_exit(&m_ring);
}

bool io_context::drain_on_destruction() noexcept {
    // Cancel everything and wait for every final CQE, without resuming anybody: the
    // coroutines are about to be destroyed, not continued.
    try {
        while (m_in_flight > 0) {
            cancel_all_in_flight();
            submit_pending(1);
            reap();
            dispatch(/*resume=*/false);
        }
    } catch (const std::exception& e) {
        // The ring cannot tell us when the kernel is done with the remaining operations, so
        // their frames must never be freed: leaking them is the only safe choice left.
        std::fprintf(stderr,
                     "ucoro: ~io_context could not wait for %zu operations (%s); "
                     "their coroutine frames are leaked\n",
                     m_in_flight, e.what());
        return false;
    }
    m_ready.clear();
    return true;
}

// ---------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------

void io_context::spawn(task<void> work) {
    post(run_detached(*this, std::move(work)).handle);
}

void io_context::run() {
    run_loop(nullptr);
}

void io_context::run_loop(const bool* done) {
    if (m_running) {
        // A nested loop would dispatch the outer loop's completions a second time.
        throw std::logic_error("io_context::run/block_on called from inside the same context");
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
        }
        if (m_in_flight == 0 && m_ready.empty()) {
            break;
        }
        // One syscall: submit everything prepared since the last turn and, if nobody is
        // ready to run, sleep until at least one completion arrives.
        submit_pending(m_ready.empty() && m_completions.empty() ? 1 : 0);
        reap();
        dispatch(/*resume=*/true);
    }
    // Hand the kernel what the last coroutines prepared (a block_on can end mid-turn):
    // an SQE left in the ring would be submitted late, against an fd that may have been
    // closed and reused by then.
    io_uring_submit(&m_ring);
    m_stop_requested = false;
}

void io_context::submit_pending(unsigned wait_for) {
    while (true) {
        ++m_stats.submit_calls;
        // With DEFER_TASKRUN, completions reach the CQ only when we ask for events, so even
        // the non-waiting submit asks, or ready coroutines could starve I/O.
        const int result = wait_for > 0 ? io_uring_submit_and_wait(&m_ring, wait_for)
                                        : io_uring_submit_and_get_events(&m_ring);
        if (result >= 0 || result == -ETIME) {
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
        throw std::system_error(-result, std::system_category(), "io_uring_enter (submit)");
    }
}

void io_context::reap() {
    while (true) {
        unsigned head = 0;
        unsigned count = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&m_ring, head, cqe) {
            m_completions.push_back({cqe->user_data, cqe->res, cqe->flags});
            ++count;
        }
        io_uring_cq_advance(&m_ring, count);
        m_stats.completions += count;
        if (!io_uring_cq_has_overflow(&m_ring)) {
            return;
        }
        // The kernel kept CQEs that did not fit (IORING_FEAT_NODROP): now that the CQ has
        // room, have it flush them to us.
        ++m_stats.cq_overflows;
        io_uring_get_events(&m_ring);
    }
}

void io_context::dispatch(bool resume) {
    // By index: a resumed coroutine may submit, and submit() may reap (and so append).
    for (std::size_t i = 0; i < m_completions.size(); ++i) {
        const completion c = m_completions[i];
        if (c.user_data == 0) {
            continue; // completion of a cancel request: it owns no memory
        }
        auto* op = reinterpret_cast<detail::operation*>(static_cast<std::uintptr_t>(c.user_data));
        if ((c.flags & IORING_CQE_F_MORE) == 0) {
            unlink(*op); // its final CQE: the kernel is done with op
        }
        if (resume) {
            op->complete(c.result, c.flags);
        } else {
            op->discard(c.result, c.flags);
        }
    }
    m_completions.clear();
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
    io_uring_sqe* sqe = acquire_sqe();
    op.prepare(*sqe);
    io_uring_sqe_set_data(sqe, &op);
    link(op);
}

void io_context::cancel(detail::operation& op) {
    if (op.m_cancel_requested) {
        return;
    }
    op.m_cancel_requested = true;
    io_uring_sqe* sqe = acquire_sqe();
    io_uring_prep_cancel(sqe, &op, 0);
    io_uring_sqe_set_data64(sqe, 0);
}

void io_context::cancel_all_in_flight() {
    for (detail::operation* op = m_in_flight_head; op != nullptr; op = op->m_next) {
        cancel(*op);
    }
}

void io_context::link(detail::operation& op) noexcept {
    op.m_prev = nullptr;
    op.m_next = m_in_flight_head;
    if (m_in_flight_head != nullptr) {
        m_in_flight_head->m_prev = &op;
    }
    m_in_flight_head = &op;
    ++m_in_flight;
}

void io_context::unlink(detail::operation& op) noexcept {
    if (op.m_prev != nullptr) {
        op.m_prev->m_next = op.m_next;
    } else {
        m_in_flight_head = op.m_next;
    }
    if (op.m_next != nullptr) {
        op.m_next->m_prev = op.m_prev;
    }
    op.m_prev = op.m_next = nullptr;
    --m_in_flight;
}

// ---------------------------------------------------------------------------------------
// The awaitable every single-shot operation builds on
// ---------------------------------------------------------------------------------------

namespace detail {

void io_awaitable::await_suspend(std::coroutine_handle<> waiter) {
    m_waiter = waiter;
    clear_cancel_request();
    context().submit(*this);
}

void io_awaitable::complete(int result, std::uint32_t flags) noexcept {
    m_result = result;
    m_flags = flags;
    detail::resume(m_waiter);
}

} // namespace detail
} // namespace ucoro
