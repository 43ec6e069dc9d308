// Cross-thread wake-ups, MSG_RING against the eventfd fallback (docs/scaling.md).
//
// ping-pong: two threads of a thread_group, pinned to two CPUs, pass one message back and
// forth: every post finds the other loop asleep, so each is a full wake-up. Prints the
// round trip's median and 99th percentile, and the process's CPU time per round trip.
// burst: a plain thread posts messages as fast as it can to one context, which runs them:
// most posts ride on a wake-up already sent. Prints messages per second and CPU per message.
//
// Usage: ucoro-micro-cross-thread [ROUND_TRIPS] (default 20000; the burst posts 50 times that)
#include <sys/resource.h>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "ucoro/io_context.hpp"
#include "ucoro/thread_group.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double cpu_seconds() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    const auto seconds = [](const timeval& t) {
        return double(t.tv_sec) + double(t.tv_usec) / 1e6;
    };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

struct ping_pong {
    ucoro::thread_group* group = nullptr;
    int rounds_left = 0;
    bool started = false;
    clock_type::time_point sent;
    std::vector<double> round_trips_us;

    // On thread 0: note the round trip that just ended, start the next one.
    void serve() {
        const auto now = clock_type::now();
        if (started) {
            round_trips_us.push_back(std::chrono::duration<double, std::micro>(now - sent).count());
        }
        if (rounds_left-- == 0) {
            group->finish();
            return;
        }
        started = true;
        sent = clock_type::now();
        // Thread 1 only posts back.
        group->context(1).post([this] { group->context(0).post([this] { serve(); }); });
    }
};

void run_ping_pong(bool msg_ring, int rounds) {
    ucoro::thread_group_options options;
    options.threads = 2;
    options.pin_to_cpus = true;
    options.context.msg_ring = msg_ring;
    ping_pong state;
    state.rounds_left = rounds;
    state.round_trips_us.reserve(std::size_t(rounds) + 1);
    const double cpu_before = cpu_seconds();
    const auto wall_before = clock_type::now();
    {
        ucoro::thread_group group(options, [](ucoro::io_context&, unsigned) {});
        state.group = &group;
        group.context(0).post([&state] { state.serve(); });
        group.join();
    }
    const double wall = std::chrono::duration<double>(clock_type::now() - wall_before).count();
    const double cpu = cpu_seconds() - cpu_before;
    auto& samples = state.round_trips_us;
    std::sort(samples.begin(), samples.end());
    const auto at = [&](double q) { return samples[std::size_t(q * double(samples.size() - 1))]; };
    fmt::print("ping-pong {:8}: {} round trips, median {:.1f} us, p99 {:.1f} us, "
               "CPU {:.1f} us per round trip (wall {:.2f} s)\n",
               msg_ring ? "MSG_RING" : "eventfd", samples.size(), at(0.5), at(0.99),
               cpu / double(samples.size()) * 1e6, wall);
}

void run_burst(bool msg_ring, int messages) {
    ucoro::thread_group_options options;
    options.threads = 1;
    options.context.msg_ring = msg_ring;
    std::uint64_t received = 0; // only on the context's thread
    const double cpu_before = cpu_seconds();
    const auto wall_before = clock_type::now();
    {
        ucoro::thread_group group(options, [](ucoro::io_context&, unsigned) {});
        for (int i = 0; i < messages; ++i) {
            group.context(0).post([&received] { ++received; });
        }
        group.finish();
        group.join();
    }
    const double wall = std::chrono::duration<double>(clock_type::now() - wall_before).count();
    const double cpu = cpu_seconds() - cpu_before;
    fmt::print("burst     {:8}: {} messages, {:.2f} M/s, CPU {:.3f} us per message\n",
               msg_ring ? "MSG_RING" : "eventfd", received, double(received) / wall / 1e6,
               cpu / double(received) * 1e6);
}

} // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 20'000;
    if (rounds <= 0) {
        fmt::print(stderr, "usage: ucoro-micro-cross-thread [ROUND_TRIPS > 0]\n");
        return 2;
    }
    ucoro::io_context probe;
    if (!probe.features().msg_ring) {
        fmt::print("IORING_OP_MSG_RING is not available here: the eventfd path only\n");
    }
    for (const bool msg_ring : {true, false}) {
        if (msg_ring && !probe.features().msg_ring) {
            continue;
        }
        run_ping_pong(msg_ring, rounds);
        run_burst(msg_ring, rounds * 50);
    }
    return 0;
}
