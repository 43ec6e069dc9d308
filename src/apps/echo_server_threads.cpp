#include "echo_server_threads.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

#include <fmt/core.h>

namespace ucoro::apps {

namespace {

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

void print_thread_counters(const std::vector<serving_thread>& states) {
    io_context::statistics total;
    echo_server_stats sum;
    std::uint64_t rearms = 0, pauses = 0, privates = 0, idle = 0, send = 0;
    for (std::size_t i = 0; i < states.size(); ++i) {
        const serving_thread& state = states[i];
        if (states.size() > 1) {
            print_loop_counters(fmt::format("thread {}: ", i), state.loop, state.enobufs_rearms,
                                state.share_pauses, state.private_receives);
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

} // namespace ucoro::apps
