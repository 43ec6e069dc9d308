// Microbenchmarks of ucoro's runtime with Google Benchmark: what one task, one spawn, one
// trip through the ring and one loopback echo cost. docs/benchmarks.md puts the figures
// beside those other runtimes publish. Run from a release build:
//   build/release/bin/ucoro-micro --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include <liburing.h>

#include <array>
#include <coroutine>
#include <cstddef>

#include "ucoro/io_context.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/operation.hpp"
#include "ucoro/task.hpp"

namespace {

using ucoro::io_context;
using ucoro::task;

task<int> answer() {
    co_return 42;
}

// Creating a task (one frame allocation), starting it by co_await (symmetric transfer in)
// and finishing it (transfer back out, frame freed).
task<void> create_and_await(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(co_await answer());
    }
}

void task_create_await(benchmark::State& state) {
    io_context context;
    context.block_on(create_and_await(state));
}
BENCHMARK(task_create_await);

// Yielding to the loop and being resumed from its ready queue: the closest ucoro has to
// a plain coroutine switch (no kernel involved).
struct yield_to_loop {
    io_context& context;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> self) { context.post(self); }
    void await_resume() const noexcept {}
};

task<void> yields(io_context& context, benchmark::State& state) {
    for (auto _ : state) {
        co_await yield_to_loop{context};
    }
}

void yield_through_loop(benchmark::State& state) {
    io_context context;
    context.block_on(yields(context, state));
}
BENCHMARK(yield_through_loop);

int spawned_runs = 0;
task<void> count_run() {
    ++spawned_runs;
    co_return;
}

// spawn(): the detached task's frame and its bookkeeping, one turn through the ready queue,
// and freeing it; run() drains the queue every 1,024 spawns.
void spawn(benchmark::State& state) {
    io_context context;
    std::size_t pending = 0;
    for (auto _ : state) {
        context.spawn(count_run());
        if (++pending == 1024) {
            context.run();
            pending = 0;
        }
    }
    context.run();
    benchmark::DoNotOptimize(spawned_runs);
}
BENCHMARK(spawn);

// IORING_OP_NOP: the loop's own cost for one request (SQE, io_uring_enter, CQE, resume)
// with nothing for the kernel to do. ucoro has no NOP of its own, so the benchmark defines
// one on the contract every operation uses (operation.hpp).
class nop_operation final : public ucoro::io_operation {
public:
    explicit nop_operation(io_context& context) noexcept : io_operation(context) {}
    void prepare(io_uring_sqe& sqe) noexcept override { io_uring_prep_nop(&sqe); }
    int await_resume() const noexcept { return result(); }
};

task<void> nop_round_trips(io_context& context, benchmark::State& state) {
    for (auto _ : state) {
        nop_operation nop(context);
        benchmark::DoNotOptimize(co_await nop);
    }
}

void nop_round_trip(benchmark::State& state) {
    io_context context;
    context.block_on(nop_round_trips(context, state));
}
BENCHMARK(nop_round_trip);

// One 64-byte echo over loopback TCP: send on the client, recv + send on the server,
// recv on the client, all four through one ring on one thread.
task<void> echo_server(ucoro::net::listener& listener) {
    auto [error, connection] = co_await listener.accept();
    if (error) {
        co_return;
    }
    std::array<std::byte, 64> buffer;
    while (true) {
        auto [recv_error, n] = co_await connection.recv(buffer);
        if (recv_error || n == 0) {
            break;
        }
        (void)co_await connection.send_all(std::span(buffer).first(n));
    }
}

task<void> echo_client(io_context& context, ucoro::net::address server, benchmark::State& state) {
    auto [error, sock] = co_await ucoro::net::connect(context, server);
    if (error) {
        state.SkipWithError("connect failed");
        co_return;
    }
    sock.set_no_delay();
    std::array<std::byte, 64> message{};
    std::array<std::byte, 64> reply;
    for (auto _ : state) {
        (void)co_await sock.send_all(message);
        std::size_t received = 0;
        while (received < reply.size()) {
            auto [recv_error, n] = co_await sock.recv(std::span(reply).subspan(received));
            if (recv_error || n == 0) {
                state.SkipWithError("echo failed");
                co_return;
            }
            received += n;
        }
    }
    (void)co_await sock.close();
}

void loopback_echo_round_trip(benchmark::State& state) {
    io_context context;
    ucoro::net::listener listener(context, ucoro::net::address::ipv4_loopback());
    context.spawn(echo_server(listener));
    context.block_on(echo_client(context, listener.local_address(), state));
    context.stop();
    context.run();
}
BENCHMARK(loopback_echo_round_trip);

} // namespace

BENCHMARK_MAIN();
