// thread_group: N threads, each running its own io_context; nothing shared between them.
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <latch>
#include <memory>
#include <thread>
#include <vector>

#include "ucoro/io_context.hpp"
#include "ucoro/remote_context.hpp"

namespace ucoro {

struct thread_group_options {
    /// How many threads, each with its own io_context; 0 means one per CPU this process may
    /// run on (thread_group::available_cpus()).
    unsigned threads = 0;
    /// Pin thread i to the i-th of those CPUs (wrapping around when there are more threads).
    bool pin_to_cpus = false;
    /// The options of every thread's context.
    io_context_options context;
};

/// One io_context per thread, shared nothing: the model of Seastar, glommio and monoio. Each
/// thread creates its own context (and so its own ring, which keeps SINGLE_ISSUER and
/// DEFER_TASKRUN, and its registered ring descriptor, which belongs to the creating
/// thread), calls `setup` there to spawn its work, and runs the loop. Inside a thread the
/// single-threaded model holds unchanged; between threads the only way is
/// remote_context::post().
///
/// Lifetime: the group holds every context (io_context::hold), so a thread with nothing to
/// do yet waits for messages instead of returning. finish() lets each run() return once its
/// context is empty (the work drains by itself); stop() also stops every context
/// (io_context::stop: everything in flight is cancelled). join() waits for every thread.
class thread_group {
public:
    using setup_function = std::function<void(io_context& context, unsigned index)>;

    /// Starts the threads and returns once every context exists and its setup has run.
    /// If a context cannot be created or a setup throws, stops the others, joins them and
    /// throws the first such exception. `after_run`, if any, runs on each thread once its
    /// run() has returned (or thrown), before its context is destroyed: the place to take
    /// the thread's counters and to destroy what setup made that must go before the
    /// context (a listener, a buffer_ring). It must outlive the group.
    thread_group(thread_group_options options, setup_function setup,
                 const setup_function* after_run = nullptr);
    /// stop() and join() if join() has not been called; an exception from a thread is lost.
    ~thread_group();
    thread_group(const thread_group&) = delete;
    thread_group& operator=(const thread_group&) = delete;

    unsigned size() const noexcept { return static_cast<unsigned>(m_threads.size()); }
    /// Thread `index`'s context, as seen from any thread.
    const remote_context& context(unsigned index) const { return m_remotes.at(index); }

    /// Lets every context's run() return as soon as it has no work left. Any thread may
    /// call it, more than once.
    void finish();
    /// Asks every context to stop (io_context::stop) and then to finish. Any thread.
    void stop();
    /// Waits for every thread to end, then rethrows the first exception that ended a
    /// thread's run() (the group stops the other threads when one fails). Once.
    void join();

    /// How many CPUs this process may run on (sched_getaffinity): the default thread count,
    /// the one an operator expects (a container or taskset limits it), not the machine's.
    static unsigned available_cpus();

private:
    void run_thread(unsigned index, const thread_group_options& options,
                    const setup_function& setup, int cpu, const setup_function* after_run) noexcept;

    std::vector<std::thread> m_threads;
    std::vector<remote_context> m_remotes;    // written before the constructor returns
    std::vector<io_context*> m_contexts;      // read only by callables run on their thread
    std::vector<std::exception_ptr> m_errors; // each written by its own thread, read by join()
    // A setup's failure, written before its thread arrives at m_started: the constructor reads
    // these, not m_errors, which a thread may write (its run() threw) while it reads.
    std::vector<std::exception_ptr> m_setup_errors;
    std::unique_ptr<std::latch> m_started; // every thread set up: the loops may start
    std::atomic<bool> m_finished{false};
    bool m_joined = false;
};

} // namespace ucoro
