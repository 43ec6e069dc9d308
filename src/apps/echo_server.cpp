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
#include "echo_server_threads.hpp"
#include "server_metrics.hpp"
#include "ucoro/signal_set.hpp"
#include "ucoro/thread_group.hpp"

namespace ucoro::apps {

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
        // Before the group: a scrape still queued on a serving thread when an exception skips
        // join() reads it, and ~thread_group joins the threads before this goes.
        std::vector<metrics_thread> metrics_threads;
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
            print_thread_counters(states);
        }
        return failed ? exit_failure : 0;
    } catch (const std::system_error& e) {
        fmt::print(stderr, "{}: {}\n", program.name, e.what());
        return exit_failure;
    }
}

} // namespace ucoro::apps
