// What one `co_await sock.close()` costs while many other connections are live in the same
// context, each with a receive armed in the kernel (as in a server). A close must cost the
// same with 1,000 or 10,000 of them: the storm of closes after a load test used to take
// seconds because each close walked every request in flight (docs/cancellation.md, "Closing
// a socket"). Run from a release build:
//   build/release/bin/ucoro-micro-close
//
// The live connections are both ends of Unix socket pairs (no accept, no connect: the
// kernel's cost of cancelling does not depend on the socket's family), each end with one
// recv armed. Each iteration times the closes of a fresh batch, one co_await at a time,
// built outside the timed region; items_per_second is closes per second.
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "ucoro/io_context.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

namespace {

using ucoro::io_context;
using ucoro::task;
using ucoro::net::socket;

constexpr std::size_t batch = 100;

// Each live descriptor, and each in a batch, needs a slot under RLIMIT_NOFILE.
bool raise_fd_limit(rlim_t wanted) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return false;
    }
    if (limit.rlim_cur >= wanted) {
        return true;
    }
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) {
        return false;
    }
    limit.rlim_cur = wanted;
    return ::setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

struct next_turn {
    io_context& context;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> waiter) { context.post(waiter); }
    void await_resume() const noexcept {}
};

// Spawned tasks start on the next turn and their SQEs reach the kernel at the end of it:
// after two turns every recv started before is armed.
task<void> until_armed(io_context& context) {
    co_await next_turn{context};
    co_await next_turn{context};
}

task<void> recv_until_closed(socket& connection, std::size_t& finished) {
    std::array<std::byte, 16> buffer{};
    (void)co_await connection.recv(buffer);
    ++finished;
}

// Two connected sockets of this context; false if the descriptors ran out.
bool make_pair(io_context& context, std::deque<socket>& into) {
    int fds[2] = {-1, -1};
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        return false;
    }
    into.emplace_back(context, fds[0], ucoro::net::address());
    into.emplace_back(context, fds[1], ucoro::net::address());
    return true;
}

// `armed`: each socket of the batch has its own recv armed when it is closed, so the close
// cancels one request; otherwise nothing is armed on it (a connection whose receive already
// saw end of stream, the common case).
// The live connections outlive the benchmark's coroutine: their recvs are cancelled (by
// stop()) only after it has returned, and they refer to these.
struct live_connections {
    std::deque<socket> sockets; // a deque: the recvs hold references into it
    std::size_t finished = 0;
};

task<void> close_batches(io_context& context, benchmark::State& state, live_connections& others,
                         bool armed) {
    const auto live = static_cast<std::size_t>(state.range(0));
    std::deque<socket>& background = others.sockets;
    for (std::size_t i = 0; i < live / 2; ++i) {
        if (!make_pair(context, background)) {
            state.SkipWithError("socketpair failed");
            co_return;
        }
    }
    for (socket& connection : background) {
        context.spawn(recv_until_closed(connection, others.finished));
    }
    co_await until_armed(context);

    for (auto _ : state) {
        std::deque<socket> pairs;
        std::vector<socket*> closing;
        std::size_t batch_finished = 0;
        for (std::size_t i = 0; i < batch; ++i) {
            if (!make_pair(context, pairs)) {
                state.SkipWithError("socketpair failed");
                co_return;
            }
            closing.push_back(&pairs.back()); // the other end stays open until the batch ends
        }
        if (armed) {
            for (socket* connection : closing) {
                context.spawn(recv_until_closed(*connection, batch_finished));
            }
            co_await until_armed(context);
        }
        const auto start = std::chrono::steady_clock::now();
        for (socket* connection : closing) {
            const std::error_code error = co_await connection->close();
            benchmark::DoNotOptimize(error);
        }
        state.SetIterationTime(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        // Bounded: each cancelled recv completes within a turn or two of its close.
        for (int turn = 0; turn < 1000 && armed && batch_finished < batch; ++turn) {
            co_await next_turn{context};
        }
        if (batch_finished != (armed ? batch : 0)) {
            state.SkipWithError("a cancelled recv did not complete");
            co_return;
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
    state.counters["in_flight"] = static_cast<double>(context.in_flight());
}

void run(benchmark::State& state, bool armed) {
    const auto live = static_cast<rlim_t>(state.range(0));
    if (!raise_fd_limit(live + 2 * batch + 64)) {
        state.SkipWithError("RLIMIT_NOFILE's hard limit is too low");
        return;
    }
    io_context context;
    live_connections others;
    context.block_on(close_batches(context, state, others, armed));
    context.stop(); // cancels the live connections' recvs, before `others` closes them
    context.run();
}

void close_idle_socket(benchmark::State& state) {
    run(state, false);
}
void close_socket_with_armed_recv(benchmark::State& state) {
    run(state, true);
}

BENCHMARK(close_idle_socket)->Arg(1000)->Arg(2000)->Arg(5000)->Arg(10000)->UseManualTime();
BENCHMARK(close_socket_with_armed_recv)
    ->Arg(1000)
    ->Arg(2000)
    ->Arg(5000)
    ->Arg(10000)
    ->UseManualTime();

} // namespace

BENCHMARK_MAIN();
