#include "ucoro/thread_group.hpp"

#include <sched.h>

#include <algorithm>
#include <system_error>
#include <utility>

namespace ucoro {

namespace {

std::vector<int> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (::sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
            if (CPU_ISSET(cpu, &set)) {
                cpus.push_back(cpu);
            }
        }
    }
    return cpus;
}

} // namespace

unsigned thread_group::available_cpus() {
    return std::max<unsigned>(1, static_cast<unsigned>(allowed_cpus().size()));
}

thread_group::thread_group(thread_group_options options, setup_function setup,
                           const setup_function* after_run) {
    const std::vector<int> cpus = allowed_cpus();
    const unsigned count = options.threads != 0
                               ? options.threads
                               : std::max<unsigned>(1, static_cast<unsigned>(cpus.size()));
    m_remotes.resize(count);
    m_contexts.resize(count);
    m_errors.resize(count);
    m_setup_errors.resize(count);
    m_threads.reserve(count);
    // Every thread arrives once its context exists and its setup ran (or failed), so until
    // then `options` and `setup` on this stack are still alive. A thread starts its loop only
    // when all have arrived: from then on m_remotes and m_contexts are never written again,
    // and any thread may stop() the group.
    m_started = std::make_unique<std::latch>(count);
    for (unsigned i = 0; i < count; ++i) {
        const int cpu = options.pin_to_cpus && !cpus.empty() ? cpus[i % cpus.size()] : -1;
        try {
            m_threads.emplace_back([this, i, &options, &setup, cpu, after_run] {
                run_thread(i, options, setup, cpu, after_run);
            });
        } catch (...) {
            // No thread: count down for the ones that will never start, end the others.
            m_started->count_down(count - i);
            m_started->wait();
            stop();
            join();
            throw;
        }
    }
    m_started->wait();
    for (unsigned i = 0; i < count; ++i) {
        if (m_setup_errors[i]) {
            const std::exception_ptr error = m_setup_errors[i];
            stop();
            try {
                join();
            } catch (...) {
                // The first startup failure is the one to report.
            }
            std::rethrow_exception(error);
        }
    }
}

thread_group::~thread_group() {
    if (!m_joined) {
        stop();
        try {
            join();
        } catch (...) {
            // A destructor cannot report it; join() first to see it.
        }
    }
}

void thread_group::run_thread(unsigned index, const thread_group_options& options,
                              const setup_function& setup, int cpu,
                              const setup_function* after_run) noexcept {
    bool arrived = false;
    try {
        if (cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            if (::sched_setaffinity(0, sizeof set, &set) != 0) {
                throw std::system_error(errno, std::system_category(),
                                        "thread_group: pinning a thread to its CPU");
            }
        }
        // Created here, not handed in: its registered ring descriptor belongs to this thread.
        io_context context(options.context);
        context.hold();
        m_remotes[index] = context.remote();
        m_contexts[index] = &context;
        setup(context, index);
        arrived = true;
        m_started->arrive_and_wait(); // from here on `options` and `setup` may be gone
        try {
            context.run();
        } catch (...) {
            m_errors[index] = std::current_exception();
            stop(); // the group's run/join should not wait for the others forever
        }
        if (after_run != nullptr && *after_run) {
            (*after_run)(context, index);
        }
    } catch (...) {
        if (!arrived) {
            m_setup_errors[index] = std::current_exception();
            m_started->count_down();
        } else {
            m_errors[index] = std::current_exception(); // after_run threw
        }
    }
}

void thread_group::finish() {
    if (m_finished.exchange(true)) {
        return; // the holds are released once
    }
    for (std::size_t i = 0; i < m_remotes.size(); ++i) {
        io_context* context = m_contexts[i];
        // False only when that context is already gone: nothing left to release.
        (void)m_remotes[i].post([context] { context->release(); });
    }
}

void thread_group::stop() {
    const bool release = !m_finished.exchange(true);
    for (std::size_t i = 0; i < m_remotes.size(); ++i) {
        io_context* context = m_contexts[i];
        (void)m_remotes[i].post([context, release] {
            context->stop();
            if (release) {
                context->release();
            }
        });
    }
}

void thread_group::join() {
    if (m_joined) {
        return;
    }
    m_joined = true;
    for (std::thread& thread : m_threads) {
        if (thread.joinable()) {
            thread.join();
        }
    }
    for (const std::exception_ptr& error : m_errors) {
        if (error) {
            std::rethrow_exception(error);
        }
    }
}

} // namespace ucoro
