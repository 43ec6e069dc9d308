// io_context: the single-threaded executor that owns one io_uring.
#pragma once

#include <liburing.h>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ucoro/detail/operation.hpp"
#include "ucoro/task.hpp"

namespace ucoro {

namespace detail {
class spawned_promise;
}

/// Sizes of the ring. The completion queue is larger than the submission queue because
/// one turn of the loop may submit a full SQ several times over (see submit()), and every
/// in-flight request may complete at once.
struct io_context_options {
    unsigned sq_entries = 256;
    /// 0 means 16 times sq_entries.
    unsigned cq_entries = 0;
};

/// The event loop: one thread, one io_uring, any number of coroutines.
///
/// Each turn of run() resumes the coroutines that are ready, submits every SQE they
/// prepared and waits for at least one completion with a single io_uring_submit_and_wait,
/// then takes every CQE that is ready and resumes the coroutine each belongs to.
///
/// The invariant everything relies on: every submitted operation completes exactly once
/// (its final CQE is seen) before the memory it refers to is released. stop() and the
/// destructor cancel what is in flight and wait for the completions.
///
/// Not thread-safe: create, use and destroy it on one thread.
class io_context {
public:
    /// Throws std::system_error with the errno of io_uring_queue_init when io_uring is not
    /// available (see describe_io_uring_error()), or ENOSYS when the kernel lacks an
    /// operation ucoro needs.
    explicit io_context(io_context_options options = {});
    ~io_context();
    io_context(const io_context&) = delete;
    io_context& operator=(const io_context&) = delete;

    /// Runs `work` as a detached task that frees its own frame when done. It starts on the
    /// next turn of run(). An exception that escapes it is logged to stderr.
    void spawn(task<void> work);

    /// Runs the loop until no work is left (nothing ready, nothing in flight) or until
    /// stop() has been called and everything in flight has completed.
    void run();

    /// Asks run() to finish: every operation in flight, and every one submitted after
    /// this call, is cancelled; the coroutines see std::errc::operation_canceled and
    /// unwind, and run() returns once the ring is empty. Call it from inside a coroutine
    /// or between runs; run() clears the request when it returns.
    void stop() noexcept { m_stop_requested = true; }
    bool stop_requested() const noexcept { return m_stop_requested; }

    /// Runs `work` on this context until it finishes and returns its value (or rethrows
    /// its exception). Other spawned work runs meanwhile.
    template <typename T>
    T block_on(task<T> work);

    /// Asks the kernel to cancel one in-flight operation (IORING_OP_ASYNC_CANCEL). It
    /// still completes, with operation_canceled or with its own result if it won the race.
    void cancel(detail::operation& op);

    /// Starts an operation: takes an SQE, lets `op` fill it and tracks `op` until its
    /// final completion. If the SQ is full it is flushed first: no request is dropped.
    void submit(detail::operation& op);

    /// Queues a coroutine to be resumed on the next turn of the loop.
    void post(std::coroutine_handle<> handle) { m_ready.push_back(handle); }

    /// How many operations the kernel still owns.
    std::size_t in_flight() const noexcept { return m_in_flight; }

    /// Counters, for tests and benchmarks: submit syscalls made, CQEs seen, overflows.
    struct statistics {
        std::uint64_t submit_calls = 0;
        std::uint64_t completions = 0;
        std::uint64_t cq_overflows = 0;
    };
    const statistics& stats() const noexcept { return m_stats; }

private:
    friend class detail::spawned_promise;

    struct completion {
        std::uint64_t user_data;
        int result;
        std::uint32_t flags;
    };

    void run_loop(const bool* done);
    io_uring_sqe* acquire_sqe();
    void submit_pending(unsigned wait_for);
    void reap();
    void dispatch(bool resume);
    void cancel_all_in_flight();
    void link(detail::operation& op) noexcept;
    void unlink(detail::operation& op) noexcept;
    bool drain_on_destruction() noexcept;

    io_uring m_ring{};
    bool m_stop_requested = false;
    bool m_running = false;
    std::size_t m_in_flight = 0;
    detail::operation* m_in_flight_head = nullptr;
    std::deque<std::coroutine_handle<>> m_ready;
    std::vector<completion> m_completions;             // reaped from the CQ, not yet dispatched
    detail::spawned_promise* m_spawned_head = nullptr; // detached tasks still alive
    statistics m_stats;
};

/// Turns the errno from a failed io_uring setup into one line naming the likely cause and
/// what to do about it (EPERM: seccomp or kernel.io_uring_disabled; ENOMEM: the memlock
/// limit; ENOSYS: an old kernel).
std::string describe_io_uring_error(int error);

namespace detail {

template <typename T>
struct block_on_state {
    bool done = false;
    std::exception_ptr failure;
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> value;
};

template <typename T>
task<void> run_to_state(task<T> work, block_on_state<T>& state) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(work);
            state.value.emplace(true);
        } else {
            state.value.emplace(co_await std::move(work));
        }
    } catch (...) {
        state.failure = std::current_exception();
    }
    state.done = true;
}

} // namespace detail

template <typename T>
T io_context::block_on(task<T> work) {
    detail::block_on_state<T> state;
    spawn(detail::run_to_state(std::move(work), state));
    run_loop(&state.done);
    if (!state.done) {
        // The task waits on something that is not in the ring and never will be; its
        // frame is freed by ~io_context, and it never touches `state` again.
        throw std::logic_error("io_context::block_on: the loop ran out of work before the "
                               "task finished");
    }
    if (state.failure) {
        std::rethrow_exception(state.failure);
    }
    if constexpr (!std::is_void_v<T>) {
        return std::move(*state.value);
    }
}

} // namespace ucoro
