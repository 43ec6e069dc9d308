// ucoro-echo-server's wiring: the options (echo_server_options), then --threads serving
// threads (a thread_group), each with its own loop, listener (SO_REUSEPORT), receive path,
// accept loop (echo_server_accept) and connections (echo_server_connection); the main
// thread keeps the signals and the drain (echo_server_drain), and --metrics.
#include "echo_server.hpp"

#include <cstddef>
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/core.h>

#include "echo_server_drain.hpp"
#include "echo_server_options.hpp"
#include "server_metrics.hpp"
#include "ucoro/signal_set.hpp"
#include "ucoro/thread_group.hpp"

namespace ucoro::apps {

namespace {

std::string_view hint_for_listen_error(const std::error_code& error) {
    if (error == std::errc::address_in_use) {
        return "another process is using that port; stop it or choose another port";
    }
    if (error == std::errc::address_not_available) {
        return "that address is not one of this machine's; try 127.0.0.1 or 0.0.0.0";
    }
    if (error == std::errc::permission_denied) {
        return "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a port >= 1024";
    }
    return "check the address and port";
}

/// A listener that could not be set up, with the address it was for.
struct listen_failure : std::system_error {
    listen_failure(const std::system_error& e, const net::address& where)
        : std::system_error(e), local(where) {}
    net::address local;
};

/// One serving thread's state. Owned by the main thread (so that the counters outlive the
/// thread, for -v, and the deadline list outlives the context, whose destructor may destroy
/// connection frames that point into it); the thread sets it up and uses it, and destroys
/// what must go before its context (listener, ring, accept_wake) in its after_run.
struct serving_thread {
    echo_server_stats stats;
    std::optional<connection_deadlines> deadlines;
    server_controls controls;
    std::optional<net::listener> listener;
    std::optional<buffer_ring> ring;
    std::optional<async_event> accept_wake;
    // Written by setup, then only read (the main thread may read them while the thread
    // runs, and after it tore the objects above down).
    std::string path; // the receive path, for -v
    net::address local;
    buffer_ring* ring_in_use = nullptr;
    bool alive = false; // the I/O objects above exist (read on the thread, for --metrics)
    // Copied in after_run, for -v.
    io_context::statistics loop;
    std::uint64_t enobufs_rearms = 0;
    std::uint64_t share_pauses = 0;
    std::uint64_t private_receives = 0;
    std::uint64_t idle_expired = 0;
    std::uint64_t send_expired = 0;
};

// Thread `index`'s setup: its listener (thread 0 binds first, the others bind the port it
// got, so that port 0 works), its buffer ring, and its accept loop.
void set_up_thread(io_context& context, unsigned index, serving_thread& state,
                   const echo_server_options& options, server_shared& shared,
                   std::shared_future<net::address> bound, std::promise<net::address>* bind_first) {
    net::address local = options.local;
    if (index > 0) {
        local = bound.get(); // rethrows thread 0's failure
    }
    try {
        state.listener.emplace(context, local, SOMAXCONN, /*reuse_port=*/true);
    } catch (const std::system_error& e) {
        if (bind_first != nullptr) {
            bind_first->set_exception(std::make_exception_ptr(listen_failure(e, local)));
        }
        throw listen_failure(e, local);
    }
    state.local = state.listener->local_address();
    if (bind_first != nullptr) {
        bind_first->set_value(state.local);
    }
    // The fast path needs provided-buffer rings (Linux 5.19); without them the server runs
    // the simple path, and says so under -v.
    state.path = "simple (recv into each connection's buffer, --simple)";
    if (!options.simple) {
        try {
            // 128 x 16 KiB rather than the library's 1024 x 4 KiB: a 16 KiB message arrives
            // in one buffer and is echoed by one send (1.7x the throughput for 100 x 16 KiB,
            // docs/fast-path-experiments.md section 3). 128 rather than 256: the same
            // throughput in every configuration of bench/run, and half the 4 MiB that stays
            // resident once every buffer has been used, which 5,000 idle connections share
            // (section 7). Per thread: each ring is its own thread's.
            state.ring.emplace(context,
                               buffer_ring_options{.count = 128, .buffer_size = 16 * 1024});
            state.path = fmt::format(
                "buffer ring ({} x {} B, {} receive, share {} buffers per connection, {})",
                state.ring->count(), state.ring->buffer_size(),
                context.features().multishot_recv ? "multishot" : "single-shot",
                state.ring->stream_queue_limit(),
                context.features().recv_limit ? "receive limit on"
                                              : "receive limit off: paused by cancel");
        } catch (const std::system_error& e) {
            state.path =
                fmt::format("simple, because the buffer ring is unavailable: {}", e.what());
        }
    }
    state.ring_in_use = state.ring ? &*state.ring : nullptr;
    state.deadlines.emplace(context, options.idle_timeout, options.send_timeout);
    state.accept_wake.emplace(context);
    server_controls& controls = state.controls;
    controls.context = &context;
    controls.accept_wake = &*state.accept_wake;
    controls.listener = &*state.listener;
    controls.deadlines = &*state.deadlines;
    controls.max_connections = options.max_connections;
    controls.gather_send = options.gather_send;
    controls.max_batch = options.loop.batch_wait_events;
    controls.shared = &shared;
    controls.index = index;
    shared.remotes[index] = context.remote();
    shared.controls[index] = &controls;
    state.alive = true;
    context.set_batch_wait_events(0); // no connection yet: nothing to batch
    context.spawn(state.deadlines->sweep());
    context.spawn(accept_connections(context, *state.listener, options.quiet, state.stats,
                                     state.ring ? &*state.ring : nullptr, &controls));
}

// Thread `index`'s end: its counters for -v, then what must go before its context.
void tear_down_thread(io_context& context, serving_thread& state) noexcept {
    state.loop = context.stats();
    if (state.ring) {
        state.enobufs_rearms = state.ring->enobufs_rearms();
        state.share_pauses = state.ring->share_pauses();
        state.private_receives = state.ring->private_receives();
    }
    if (state.deadlines) {
        state.idle_expired = state.deadlines->idle_expired();
        state.send_expired = state.deadlines->send_expired();
    }
    state.alive = false;
    state.controls.accept_wake = nullptr;
    state.controls.listener = nullptr;
    state.accept_wake.reset();
    state.ring.reset();
    state.listener.reset();
}

void print_loop_counters(std::string_view prefix, const io_context::statistics& loop,
                         std::uint64_t enobufs_rearms, std::uint64_t share_pauses,
                         std::uint64_t private_receives) {
    // Per enter: how well the loop batches (more SQEs and CQEs per call is cheaper).
    const double enters = loop.submit_calls > 0 ? double(loop.submit_calls) : 1.0;
    fmt::print("{}io_uring_enter calls: {}, SQEs: {} ({:.1f} per enter), CQEs: {} ({:.1f} per "
               "enter), CQ overflows: {}, ENOBUFS re-arms: {}, share pauses: {}, private "
               "receives: {}\n",
               prefix, loop.submit_calls, loop.submissions, double(loop.submissions) / enters,
               loop.completions, double(loop.completions) / enters, loop.cq_overflows,
               enobufs_rearms, share_pauses, private_receives);
}

} // namespace

int echo_server_main(int argc, char** argv) {
    const program_info& program = echo_server_program;
    int exit_code = 0;
    const auto parsed = parse_echo_server_options(argc, argv, exit_code);
    if (!parsed) {
        return exit_code;
    }
    const echo_server_options& options = *parsed;

    std::setvbuf(stdout, nullptr, _IOLBF, 0); // one line per event, even into a pipe
    raise_open_file_limit();
    // Declared before the contexts, so that they outlive them on every path (serving_thread).
    std::vector<serving_thread> states(options.threads);
    server_shared shared;
    shared.max_connections = options.max_connections;
    shared.remotes.resize(options.threads);
    shared.controls.resize(options.threads);
    std::size_t scrapers = 0; // scrape connections being answered (serve_metrics)
    // The main thread's loop: the signals, the drain, --metrics. Made first, so that a
    // machine without io_uring gets its one line before any thread starts.
    const auto context = open_context(program, options.loop);
    if (!context) {
        return exit_failure;
    }
    try {
        // Before any thread exists, so that every thread inherits the blocked signals and
        // only this loop's signalfd receives them.
        signal_set signals(*context, {SIGINT, SIGTERM});
        std::optional<net::listener> metrics_listener;
        if (options.metrics_local) {
            try {
                metrics_listener.emplace(*context, *options.metrics_local);
            } catch (const std::system_error& e) {
                fmt::print(stderr, "{}: cannot listen for --metrics on {}: {} ({})\n", program.name,
                           *options.metrics_local, e.code().message(),
                           hint_for_listen_error(e.code()));
                return exit_failure;
            }
        }

        async_event first_ended(*context);
        async_event all_ended(*context);
        serving_threads threads;
        // The threads' end notes run on this thread, in run() or, on an early return, in
        // ~io_context after the locals they touch are gone: they check this first.
        const auto notes_open = std::make_shared<bool>(true);
        struct close_notes {
            std::shared_ptr<bool> open;
            ~close_notes() { *open = false; }
        } notes_guard{notes_open};
        threads.shared = &shared;
        threads.first_ended = &first_ended;
        threads.all_ended = &all_ended;
        const remote_context main_remote = context->remote();
        std::promise<net::address> bind_first;
        const std::shared_future<net::address> bound = bind_first.get_future().share();
        thread_group_options group_options;
        group_options.threads = options.threads;
        group_options.context = options.loop;
        const thread_group::setup_function after_run = [&](io_context& thread_context,
                                                           unsigned index) {
            tear_down_thread(thread_context, states[index]);
            // Tells the main loop; refused only once the main loop is gone.
            (void)main_remote.post(
                [&threads, &first_ended, &all_ended, notes_open, count = options.threads] {
                    if (!*notes_open) {
                        return;
                    }
                    first_ended.set();
                    if (++threads.ended == count) {
                        all_ended.set();
                    }
                });
        };
        std::optional<thread_group> group;
        try {
            group.emplace(
                group_options,
                [&](io_context& thread_context, unsigned index) {
                    try {
                        set_up_thread(thread_context, index, states[index], options, shared, bound,
                                      index == 0 ? &bind_first : nullptr);
                    } catch (...) {
                        tear_down_thread(thread_context, states[index]);
                        throw;
                    }
                },
                &after_run);
        } catch (const listen_failure& e) {
            fmt::print(stderr, "{}: cannot listen on {}: {} ({})\n", program.name, e.local,
                       e.code().message(), hint_for_listen_error(e.code()));
            return exit_failure;
        }
        threads.group = &*group;
        // Announced once everything is bound: a port in use for --metrics exits before this.
        fmt::print("listening on {}\n", states[0].local);
        if (metrics_listener) {
            fmt::print("metrics on {}\n", metrics_listener->local_address());
        }
        if (options.verbose) {
            fmt::print("receive path: {}\n", states[0].path);
            const auto& features = context->features();
            fmt::print("features: multishot accept {}, registered ring fd {}, gather send {}, "
                       "batch wait {}\n",
                       features.multishot_accept ? "on" : "off",
                       features.registered_ring_fd ? "on" : "off",
                       states[0].ring_in_use != nullptr && options.gather_send ? "on" : "off",
                       features.batch_wait ? fmt::format("{} us", options.loop.batch_wait.count())
                       : options.loop.batch_wait.count() == 0
                           ? std::string("off")
                           : std::string("off (the kernel lacks IORING_FEAT_MIN_TIMEOUT, 6.12)"));
            fmt::print("threads: {}, each with its own io_uring, buffer ring and listener "
                       "(SO_REUSEPORT)\n",
                       options.threads);
        }
        context->spawn(coordinate_shutdown(*context, signals, threads, options.drain_timeout));
        std::vector<metrics_thread> metrics_threads;
        if (metrics_listener) {
            for (std::size_t i = 0; i < states.size(); ++i) {
                serving_thread& state = states[i];
                metrics_threads.push_back({shared.remotes[i], state.controls.context, &state.alive,
                                           metrics_sources{&state.stats, &state.controls,
                                                           &*state.deadlines, state.ring_in_use}});
            }
            // On the main thread's loop: each scrape asks every serving thread for its
            // counters (a post there and back) and sums them, so the echo threads keep
            // their counters plain.
            context->spawn(serve_metrics(*context, *metrics_listener,
                                         metrics_sources{.threads = &metrics_threads}, {},
                                         scrapers));
        }
        context->run();
        try {
            group->join();
        } catch (const std::exception& e) {
            fmt::print(stderr, "{}: {}\n", program.name, e.what());
            return exit_failure;
        }
        bool failed = threads.failed;
        for (const serving_thread& state : states) {
            failed = failed || state.stats.failed;
        }
        if (options.verbose) {
            io_context::statistics total;
            echo_server_stats sum;
            std::uint64_t rearms = 0, pauses = 0, privates = 0, idle = 0, send = 0;
            for (std::size_t i = 0; i < states.size(); ++i) {
                const serving_thread& state = states[i];
                if (states.size() > 1) {
                    print_loop_counters(fmt::format("thread {}: ", i), state.loop,
                                        state.enobufs_rearms, state.share_pauses,
                                        state.private_receives);
                    fmt::print("thread {}: connections: {} accepted, {} closed, {} idle timeouts, "
                               "{} send timeouts\n",
                               i, state.stats.accepted, state.stats.closed, state.idle_expired,
                               state.send_expired);
                }
                total.submit_calls += state.loop.submit_calls;
                total.submissions += state.loop.submissions;
                total.completions += state.loop.completions;
                total.cq_overflows += state.loop.cq_overflows;
                sum.accepted += state.stats.accepted;
                sum.closed += state.stats.closed;
                rearms += state.enobufs_rearms;
                pauses += state.share_pauses;
                privates += state.private_receives;
                idle += state.idle_expired;
                send += state.send_expired;
            }
            print_loop_counters("", total, rearms, pauses, privates);
            fmt::print("connections: {} accepted, {} closed, {} idle timeouts, {} send "
                       "timeouts\n",
                       sum.accepted, sum.closed, idle, send);
        }
        return failed ? exit_failure : 0;
    } catch (const std::system_error& e) {
        fmt::print(stderr, "{}: {}\n", program.name, e.what());
        return exit_failure;
    }
}

} // namespace ucoro::apps
