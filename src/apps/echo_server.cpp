// ucoro-echo-server's wiring: the options (echo_server_options), the listeners, the receive
// path, and the loop running the accept loop (echo_server_accept), the connections
// (echo_server_connection) and the drain (echo_server_drain) until it stops.
#include "echo_server.hpp"

#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <fmt/core.h>

#include "echo_server_drain.hpp"
#include "echo_server_options.hpp"
#include "server_metrics.hpp"
#include "ucoro/signal_set.hpp"

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
    // What the connections' frames point into is declared before the context, so that it
    // outlives the context on every path: when run() throws, ~io_context destroys the
    // unfinished connection frames, and their deadline entries must not outlive the list.
    echo_server_stats stats;
    std::optional<connection_deadlines> deadlines;
    server_controls controls;
    std::size_t scrapers = 0; // scrape connections being answered (serve_metrics)
    const auto context = open_context(program, options.loop);
    if (!context) {
        return exit_failure;
    }
    try {
        signal_set signals(*context, {SIGINT, SIGTERM});
        std::optional<net::listener> listener;
        try {
            listener.emplace(*context, options.local);
        } catch (const std::system_error& e) {
            fmt::print(stderr, "{}: cannot listen on {}: {} ({})\n", program.name, options.local,
                       e.code().message(), hint_for_listen_error(e.code()));
            return exit_failure;
        }
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
        // Announced once both are bound: a port in use for --metrics exits before this.
        fmt::print("listening on {}\n", listener->local_address());
        if (metrics_listener) {
            fmt::print("metrics on {}\n", metrics_listener->local_address());
        }

        // The fast path needs provided-buffer rings (Linux 5.19); without them the server
        // runs the simple path, and says so under -v.
        std::optional<buffer_ring> ring;
        std::string path = "simple (recv into each connection's buffer, --simple)";
        if (!options.simple) {
            try {
                // 128 x 16 KiB rather than the library's 1024 x 4 KiB: a 16 KiB message
                // arrives in one buffer and is echoed by one send (1.7x the throughput for
                // 100 x 16 KiB, docs/fast-path-experiments.md section 3). 128 rather than
                // 256: the same throughput in every configuration of bench/run, and half the
                // 4 MiB that stays resident once every buffer has been used, which 5,000 idle
                // connections share (section 7).
                ring.emplace(*context, buffer_ring_options{.count = 128, .buffer_size = 16 * 1024});
                path = fmt::format(
                    "buffer ring ({} x {} B, {} receive, share {} buffers per connection, {})",
                    ring->count(), ring->buffer_size(),
                    context->features().multishot_recv ? "multishot" : "single-shot",
                    ring->stream_queue_limit(),
                    context->features().recv_limit ? "receive limit on"
                                                   : "receive limit off: paused by cancel");
            } catch (const std::system_error& e) {
                path = fmt::format("simple, because the buffer ring is unavailable: {}", e.what());
            }
        }
        if (options.verbose) {
            fmt::print("receive path: {}\n", path);
            const auto& features = context->features();
            fmt::print("features: multishot accept {}, registered ring fd {}, gather send {}, "
                       "batch wait {}\n",
                       features.multishot_accept ? "on" : "off",
                       features.registered_ring_fd ? "on" : "off",
                       ring && options.gather_send ? "on" : "off",
                       features.batch_wait ? fmt::format("{} us", options.loop.batch_wait.count())
                       : options.loop.batch_wait.count() == 0
                           ? std::string("off")
                           : std::string("off (the kernel lacks IORING_FEAT_MIN_TIMEOUT, 6.12)"));
        }

        deadlines.emplace(*context, options.idle_timeout, options.send_timeout);
        // In this block, so that it goes before the context it posts to, even when run()
        // throws with the accept loop still waiting on it.
        async_event accept_wake(*context);
        controls.context = &*context;
        controls.accept_wake = &accept_wake;
        controls.deadlines = &*deadlines;
        controls.max_connections = options.max_connections;
        controls.gather_send = options.gather_send;
        controls.max_batch = options.loop.batch_wait_events;
        context->set_batch_wait_events(0); // no connection yet: nothing to batch
        context->spawn(
            watch_signals(*context, signals, *listener, controls, options.drain_timeout));
        context->spawn(deadlines->sweep());
        context->spawn(accept_connections(*context, *listener, options.quiet, stats,
                                          ring ? &*ring : nullptr, &controls));
        if (metrics_listener) {
            // On the echo's loop: a scrape costs the echo one turn of the loop, and the
            // counters need no synchronization.
            context->spawn(serve_metrics(
                *context, *metrics_listener,
                metrics_sources{&stats, &controls, &*deadlines, ring ? &*ring : nullptr}, {},
                scrapers));
        }
        context->run();
        if (options.verbose) {
            const auto& loop = context->stats();
            // Per enter: how well the loop batches (more SQEs and CQEs per call is cheaper).
            const double enters = loop.submit_calls > 0 ? double(loop.submit_calls) : 1.0;
            fmt::print("io_uring_enter calls: {}, SQEs: {} ({:.1f} per enter), CQEs: {} ({:.1f} "
                       "per enter), CQ overflows: {}, ENOBUFS re-arms: {}, share pauses: {}, "
                       "private receives: {}\n",
                       loop.submit_calls, loop.submissions, double(loop.submissions) / enters,
                       loop.completions, double(loop.completions) / enters, loop.cq_overflows,
                       ring ? ring->enobufs_rearms() : 0, ring ? ring->share_pauses() : 0,
                       ring ? ring->private_receives() : 0);
            fmt::print("connections: {} accepted, {} closed, {} idle timeouts, {} send "
                       "timeouts\n",
                       stats.accepted, stats.closed, deadlines->idle_expired(),
                       deadlines->send_expired());
        }
        return stats.failed ? exit_failure : 0;
    } catch (const std::system_error& e) {
        fmt::print(stderr, "{}: {}\n", program.name, e.what());
        return exit_failure;
    }
}

} // namespace ucoro::apps
