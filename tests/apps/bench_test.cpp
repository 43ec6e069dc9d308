// ucoro-bench end to end: against ucoro-echo-server at several message sizes and depths, and
// against stand-in servers that corrupt a byte or stall, which it must catch.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "support/bench.hpp"
#include "support/process.hpp"
#include "support/unique_fd.hpp"

namespace {

using Catch::Matchers::Contains;
using ucoro_test::completed_run;
using ucoro_test::json_number;
using ucoro_test::run_bench;
using ucoro_test::start_server;

/// A one-connection echo server on a thread of the test, with blocking sockets, that
/// misbehaves on purpose: it can flip the byte at one stream offset, or pause once.
class stand_in_server {
public:
    struct behaviour {
        std::uint64_t corrupt_offset = UINT64_MAX; // flip this byte's bits
        std::uint64_t stall_after = UINT64_MAX;    // pause once past this many bytes
        std::chrono::milliseconds stall = std::chrono::milliseconds(0);
        // The first this many connections: read the first bytes, then close without echoing
        // (having read them: closing with unread bytes would send a reset instead of the end
        // of stream under test).
        unsigned unanswered = 0;
    };

    explicit stand_in_server(behaviour b)
        : m_listener(ucoro_test::bind_loopback(true)),
          m_port(ucoro_test::local_port(m_listener.get())), m_thread([this, b] { serve(b); }) {}
    ~stand_in_server() {
        // The client has exited by now, so its connections are at end of stream; shutting the
        // listener down ends the accept that waits for another.
        ::shutdown(m_listener.get(), SHUT_RDWR);
        m_thread.join();
    }
    std::uint16_t port() const { return m_port; }

private:
    /// Serves one connection after another (ucoro-bench --churn opens many in turn).
    void serve(behaviour b) {
        std::vector<unsigned char> buffer(64 * 1024);
        for (unsigned index = 0;; ++index) {
            ucoro_test::unique_fd connection(
                ::accept4(m_listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!connection) {
                return;
            }
            if (index < b.unanswered) {
                (void)::recv(connection.get(), buffer.data(), buffer.size(), 0);
                continue;
            }
            echo(connection.get(), b, buffer);
        }
    }

    static void echo(int connection, behaviour b, std::vector<unsigned char>& buffer) {
        std::uint64_t offset = 0;
        bool stalled = false;
        while (true) {
            const ssize_t n = ::recv(connection, buffer.data(), buffer.size(), 0);
            if (n <= 0) {
                return;
            }
            if (b.corrupt_offset >= offset && b.corrupt_offset < offset + std::uint64_t(n)) {
                buffer[b.corrupt_offset - offset] ^= 0xff;
            }
            offset += std::uint64_t(n);
            if (!stalled && offset > b.stall_after) {
                stalled = true;
                std::this_thread::sleep_for(b.stall); // the misbehaviour under test
            }
            for (ssize_t sent = 0; sent < n;) {
                const ssize_t m =
                    ::send(connection, buffer.data() + sent, std::size_t(n - sent), MSG_NOSIGNAL);
                if (m <= 0) {
                    return;
                }
                sent += m;
            }
        }
    }

    ucoro_test::unique_fd m_listener;
    std::uint16_t m_port;
    std::thread m_thread;
};

double require_number(const completed_run& run, std::string_view key) {
    const auto value = json_number(run.out, key);
    INFO("ucoro-bench stdout: " << run.out << "\nstderr: " << run.err << "\nkey: " << key);
    REQUIRE(value);
    return *value;
}

} // namespace

TEST_CASE("ucoro-bench gets every byte back from ucoro-echo-server at several sizes and depths",
          "[bench]") {
    auto server = start_server({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    struct shape {
        int size;
        int depth;
    };
    // From one byte to messages larger than the pattern's period and the server's buffer.
    for (const shape s : {shape{1, 1}, shape{64, 8}, shape{1000, 3}, shape{16384, 2},
                          shape{65536, 4}, shape{200000, 1}}) {
        const completed_run run = run_bench(server.port, {"-c", "3", "-s", std::to_string(s.size),
                                                          "-d", std::to_string(s.depth), "--warmup",
                                                          "0", "--duration", "0.3", "--json"});
        INFO("size " << s.size << " depth " << s.depth << "\nstdout: " << run.out
                     << "\nstderr: " << run.err);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 0);
        CHECK(run.err.empty());
        CHECK(require_number(run, "messages") > 0);
        CHECK(require_number(run, "bytes") == require_number(run, "messages") * s.size);
        CHECK(require_number(run, "connections_established") == 3);
        CHECK(require_number(run, "connection_errors") == 0);
    }
}

TEST_CASE("ucoro-bench exits 1 naming the connection and offset of a corrupted byte", "[bench]") {
    stand_in_server server({.corrupt_offset = 1000});
    const completed_run run =
        run_bench(server.port(), {"-c", "1", "-s", "100", "--warmup", "0", "--duration", "30"});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    CHECK_THAT(run.err, Contains("connection 0: echoed byte at offset 1000 is"));
}

TEST_CASE("a server that stalls shows in the open-loop tail, which a closed loop hides",
          "[bench]") {
    using namespace std::chrono_literals;
    const auto stall = 500ms;
    SECTION("open loop: every message meant to leave during the stall is late") {
        // 2,000 msg/s: the stall delays about 1,000 of the 3,000 messages measured, by up to
        // 500 ms, because latency counts from the intended send time.
        stand_in_server server({.stall_after = 200 * 64, .stall = stall});
        const completed_run run =
            run_bench(server.port(), {"-c", "1", "-s", "64", "--rate", "2000", "--warmup", "0",
                                      "--duration", "1.5", "--json"});
        INFO("stdout: " << run.out << "\nstderr: " << run.err);
        REQUIRE(run.status.exited);
        REQUIRE(run.status.code == 0);
        CHECK(require_number(run, "latency_p90_ns") >= 200e6);
        CHECK(require_number(run, "latency_max_ns") >= 450e6);
    }
    SECTION("closed loop: the one message in flight is late, the percentiles are not") {
        stand_in_server server({.stall_after = 200 * 64, .stall = stall});
        const completed_run run = run_bench(
            server.port(), {"-c", "1", "-s", "64", "--warmup", "0", "--duration", "1.5", "--json"});
        INFO("stdout: " << run.out << "\nstderr: " << run.err);
        REQUIRE(run.status.exited);
        REQUIRE(run.status.code == 0);
        REQUIRE(require_number(run, "messages") >= 1000); // so one late message is < 0.1%
        CHECK(require_number(run, "latency_max_ns") >= 450e6);
        CHECK(require_number(run, "latency_p99_ns") < 100e6);
    }
}

TEST_CASE("ucoro-bench --json prints one object with every documented field", "[bench]") {
    const auto python = ucoro_test::find_on_path("python3");
    if (!python) {
        WARN("SKIPPED: python3 is not on PATH, needed to parse the JSON");
        return;
    }
    auto server = start_server({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    const completed_run run =
        run_bench(server.port, {"-c", "4", "--warmup", "0", "--duration", "0.3", "--server-pid",
                                std::to_string(server.process->pid()), "--json"});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.exited);
    REQUIRE(run.status.code == 0);
    // Parsed by a real JSON parser; the field list is the one docs/benchmarks.md documents.
    const completed_run check = ucoro_test::run_program(
        {*python, "-c",
         "import json, sys\n"
         "d = json.loads(sys.argv[1])\n"
         "fields = ['server', 'connections', 'size', 'depth', 'rate', 'churn', 'threads',\n"
         "  'seconds',\n"
         "  'connections_established', 'connect_failures', 'connection_errors', 'messages',\n"
         "  'bytes', 'messages_per_second', 'latency_p50_ns', 'latency_p90_ns',\n"
         "  'latency_p99_ns', 'latency_p999_ns', 'latency_max_ns', 'latency_mean_ns',\n"
         "  'latency_from_send_p50_ns', 'latency_from_send_p99_ns', 'latency_from_send_p999_ns',\n"
         "  'send_lag_p50_ns', 'send_lag_p99_ns', 'send_lag_max_ns', 'late_sends',\n"
         "  'late_after_ns', 'client_cpu_ns_per_message', 'client_cores', 'client_busy',\n"
         "  'client_busy_per_thread', 'client_runqueue_wait',\n"
         "  'server_user_ns_per_message', 'server_system_ns_per_message',\n"
         "  'server_cpu_ns_per_message', 'server_rss_start_kib', 'server_rss_end_kib',\n"
         "  'server_process_ns_per_message']\n"
         "# Only when the server is pinned to one CPU (the next test):\n"
         "core = ['server_core', 'server_core_user_ns_per_message',\n"
         "  'server_core_system_ns_per_message', 'server_core_irq_ns_per_message',\n"
         "  'server_core_softirq_ns_per_message', 'server_core_steal_ns_per_message',\n"
         "  'server_core_busy']\n"
         "missing = [f for f in fields if f not in d]\n"
         "# /proc/net/sockstat's TCP line, where it can be read:\n"
         "tcp = [f'tcp_{n}_{e}' for n in ('inuse', 'orphan', 'time_wait', 'mem_pages')\n"
         "  for e in ('start', 'end')]\n"
         "extra = [f for f in d if f not in fields + core + tcp]\n"
         "ok = all(f in d for f in tcp) or not any(f in d for f in tcp)\n"
         "print('missing', missing, 'extra', extra)\n"
         "ok = ok and not missing and not extra and d['messages'] > 0 and d['connections'] == 4\n"
         "ok = ok and d['latency_p50_ns'] <= d['latency_p99_ns'] <= d['latency_max_ns']\n"
         "ok = ok and d['server_rss_end_kib'] > 0 and d['server_cpu_ns_per_message'] >= 0\n"
         "ok = ok and d['threads'] == 1 and len(d['client_busy_per_thread']) == 1\n"
         "ok = ok and 0 < d['client_busy'] <= 1.0 and d['client_busy'] == "
         "max(d['client_busy_per_thread'])\n"
         "sys.exit(0 if ok else 1)\n",
         run.out});
    INFO("python: " << check.out << check.err);
    CHECK(check.status.exited);
    CHECK(check.status.code == 0);
}

TEST_CASE("ucoro-bench reads a pinned server's CPU from its clock and its core's counters",
          "[bench]") {
    const auto taskset = ucoro_test::find_on_path("taskset");
    if (!taskset) {
        WARN("SKIPPED: taskset (util-linux) is not on PATH, needed to pin the server");
        return;
    }
    // taskset execs the server: the pid is the server's, pinned to CPU 0.
    auto server = start_server({*taskset, "-c", "0", UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    // Saturated, so the server's core is busy most of the second: /proc/stat counts all but
    // idle time by the kernel's ticks, and on a tickless kernel the short bursts of a light
    // load (5,000 messages of 10 us each) can fall between ticks and count as nothing: a CI
    // run saw a busy share of 0 that way.
    const completed_run run =
        run_bench(server.port, {"-c", "4", "--warmup", "0", "--duration", "1", "--server-pid",
                                std::to_string(server.process->pid()), "--json"});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.code == 0);
    CHECK(require_number(run, "server_core") == 0);
    CHECK(require_number(run, "server_process_ns_per_message") > 0);
    const double busy = require_number(run, "server_core_busy");
    CHECK(busy > 0);
    CHECK(busy <= 1.0);
    const completed_run table =
        run_bench(server.port, {"-c", "4", "--rate", "2000", "--warmup", "0", "--duration", "0.3",
                                "--server-pid", std::to_string(server.process->pid())});
    CHECK_THAT(table.out, Contains("from its CPU-time clock") && Contains("server core  CPU 0"));
}

TEST_CASE("ucoro-bench --messages holds idle connections open and reports server memory",
          "[bench]") {
    auto server = start_server({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    const completed_run run =
        run_bench(server.port, {"-c", "50", "-s", "65536", "--messages", "1", "--duration", "30",
                                "--server-pid", std::to_string(server.process->pid()), "--json"});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.exited);
    REQUIRE(run.status.code == 0);
    CHECK(require_number(run, "messages") == 50);
    // It ended when the 50 echoes were in, not after the 30 s duration.
    CHECK(require_number(run, "seconds") < 20);
    CHECK(require_number(run, "server_rss_end_kib") > 0);
    // The kernel's count holds both ends of the 50 idle connections and the listener (and
    // whatever else the machine runs, which only adds).
    CHECK(require_number(run, "tcp_inuse_end") >= 2 * 50 + 1);
}

TEST_CASE("ucoro-bench reports refused connections and exits 1 when none succeed", "[bench]") {
    // Bound but not listening: connecting is refused.
    const ucoro_test::unique_fd reserved = ucoro_test::bind_loopback(false);
    const completed_run run = run_bench(ucoro_test::local_port(reserved.get()),
                                        {"-c", "2", "--warmup", "0", "--duration", "5"});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    CHECK_THAT(run.err, Contains("all 2 connections failed") && Contains("refused"));
}

TEST_CASE("ucoro-bench rejects bad options with the usage line and exit 2", "[bench]") {
    for (const std::vector<std::string>& args : {std::vector<std::string>{"--bogus"},
                                                 {"-c", "0"},
                                                 {"--rate", "-5"},
                                                 {"-s", "x"},
                                                 {"--threads", "0"},
                                                 {"--late-after", "0"},
                                                 {"--churn", "--rate", "100"},
                                                 {"--churn", "-d", "2"}}) {
        const completed_run run = run_bench(1, args);
        INFO("args[0] " << args[0] << "\nstderr: " << run.err);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 2);
        CHECK_THAT(run.err, Contains("usage: ucoro-bench"));
    }
    const completed_run help = ucoro_test::run_program({UCORO_BENCH, "--help"});
    CHECK(help.status.code == 0);
    CHECK_THAT(help.out, Contains("--rate") && Contains("--server-pid") && Contains("--threads") &&
                             Contains("--late-after") && Contains("--churn"));
    const completed_run version = ucoro_test::run_program({UCORO_BENCH, "--version"});
    CHECK(version.status.code == 0);
    CHECK_THAT(version.out, Contains("ucoro-bench"));
}

TEST_CASE("the open loop sends the requested rate, never early, and says it is on schedule",
          "[bench]") {
    auto server = start_server({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    // 2,000 msg/s over 20 connections for 1 s after a 0.5 s warm-up: 2,000 measured echoes.
    // A generator that sent early or in catch-up bursts would exceed the schedule; one that
    // fell behind would count late sends. Bounds are loose for a machine shared with builds.
    const completed_run run =
        run_bench(server.port, {"-c", "20", "-s", "64", "--rate", "2000", "--warmup", "0.5",
                                "--duration", "1", "--json"});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.exited);
    REQUIRE(run.status.code == 0);
    const double messages = require_number(run, "messages");
    const double seconds = require_number(run, "seconds");
    CHECK(messages <= 2000 * seconds + 20); // the schedule, plus at most one in flight each
    // Lower bounds are for a broken pacer, not for a busy machine (CI runs two test programs
    // at once, under ASan too): half the schedule, and most messages on time.
    CHECK(messages >= 0.5 * 2000 * seconds);
    // Most messages leave within the lateness bound; the count of late ones is reported.
    CHECK(require_number(run, "late_sends") < 0.5 * messages);
    CHECK(require_number(run, "send_lag_p50_ns") < require_number(run, "late_after_ns"));
    // Latency from the due time includes the send lag, so it is never below the one from
    // the actual send.
    CHECK(require_number(run, "latency_p50_ns") >= require_number(run, "latency_from_send_p50_ns"));
}

TEST_CASE("a rate the generator cannot keep is reported as late sends, not hidden", "[bench]") {
    auto server = start_server({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    // Five million messages a second on one connection: far beyond one thread, so almost every
    // message leaves after its due time.
    const completed_run run = run_bench(server.port, {"-c", "1", "-s", "64", "--rate", "5000000",
                                                      "--warmup", "0", "--duration", "0.3"});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.exited);
    REQUIRE(run.status.code == 0);
    CHECK_THAT(run.out, Contains("the generator fell behind its schedule"));
    const completed_run json =
        run_bench(server.port, {"-c", "1", "-s", "64", "--rate", "5000000", "--warmup", "0",
                                "--duration", "0.3", "--late-after", "100", "--json"});
    INFO("json: " << json.out);
    REQUIRE(json.status.code == 0);
    CHECK(require_number(json, "late_sends") > 0.5 * require_number(json, "messages"));
    CHECK(require_number(json, "send_lag_max_ns") > 100e3);
    CHECK(require_number(json, "late_after_ns") == 100e3);
}

TEST_CASE("ucoro-bench prints the share of a core each load thread used", "[bench]") {
    auto server = start_server({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    const completed_run run =
        run_bench(server.port, {"-c", "4", "--rate", "1000", "--warmup", "0", "--duration", "0.3"});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.code == 0);
    CHECK_THAT(run.out, Contains("busiest thread") && Contains("of a core") &&
                            Contains("waited for a CPU") && Contains("from its actual send"));
}

TEST_CASE("ucoro-bench --threads splits the connections and the rate, and merges the results",
          "[bench]") {
    auto server = start_server({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    SECTION("closed loop") {
        const completed_run run =
            run_bench(server.port, {"-c", "5", "-s", "1000", "-d", "2", "--threads", "2",
                                    "--warmup", "0", "--duration", "0.3", "--json"});
        INFO("stdout: " << run.out << "\nstderr: " << run.err);
        REQUIRE(run.status.code == 0);
        CHECK(require_number(run, "threads") == 2);
        CHECK(require_number(run, "connections_established") == 5);
        CHECK(require_number(run, "connection_errors") == 0);
        CHECK(require_number(run, "messages") > 0);
        CHECK(require_number(run, "bytes") == require_number(run, "messages") * 1000);
        CHECK_THAT(run.out, Contains("\"client_busy_per_thread\": [0."));
    }
    SECTION("open loop") {
        const completed_run run =
            run_bench(server.port, {"-c", "6", "--rate", "3000", "--threads", "3", "--warmup",
                                    "0.3", "--duration", "1", "--json"});
        INFO("stdout: " << run.out << "\nstderr: " << run.err);
        REQUIRE(run.status.code == 0);
        CHECK(require_number(run, "threads") == 3);
        const double messages = require_number(run, "messages");
        const double seconds = require_number(run, "seconds");
        // Each thread measures its own window, and "seconds" is their mean: allow 1% and
        // one message per connection over the schedule (a run once counted 3,003 in
        // 0.9988 s), far below what catch-up bursts would add. The lower bound is for a
        // broken pacer, not a busy machine.
        CHECK(messages <= 3000 * seconds * 1.01 + 6);
        CHECK(messages >= 0.5 * 3000 * seconds);
    }
    SECTION("more threads than connections: one connection each") {
        const completed_run run = run_bench(server.port, {"-c", "2", "--threads", "8", "--warmup",
                                                          "0", "--duration", "0.2", "--json"});
        REQUIRE(run.status.code == 0);
        CHECK(require_number(run, "threads") == 2);
    }
}

TEST_CASE("ucoro-bench --churn opens a connection per echo and checks every one", "[bench]") {
    auto server = start_server({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    const completed_run run = run_bench(server.port, {"--churn", "-c", "4", "-s", "100", "--warmup",
                                                      "0", "--duration", "0.5", "--json"});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 0);
    CHECK(run.err.empty());
    CHECK_THAT(run.out, Contains("\"churn\": true"));
    const double completed = require_number(run, "messages");
    CHECK(completed > 4);
    CHECK(require_number(run, "bytes") == completed * 100);
    // Every completed echo had its own connection; the ones cut off at the end add a few.
    CHECK(require_number(run, "connections_established") >= completed);
    CHECK(require_number(run, "connections_established") <= completed + 2 * 4);
    CHECK(require_number(run, "connection_errors") == 0);
    CHECK(require_number(run, "connect_failures") == 0);
}

TEST_CASE("ucoro-bench --churn exits 1 on a corrupted echo", "[bench]") {
    stand_in_server server({.corrupt_offset = 10});
    const completed_run run = run_bench(
        server.port(), {"--churn", "-c", "1", "-s", "64", "--warmup", "0", "--duration", "30"});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    CHECK_THAT(run.err, Contains("connection 0: echoed byte at offset 10 is"));
}

TEST_CASE("ucoro-bench --churn counts and names a connection closed before its echo", "[bench]") {
    // The stand-in reads the first connection's message and closes it without an echo, then
    // echoes every later one: the failed cycle is counted, and the next connection's echo is
    // checked from its own first byte, not from where the failed one stopped.
    stand_in_server server({.unanswered = 1});
    const completed_run run =
        run_bench(server.port(), {"--churn", "-c", "1", "-s", "64", "--warmup", "0", "--duration",
                                  "0.3", "--json"});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 0);
    CHECK(require_number(run, "connection_errors") == 1);
    CHECK(require_number(run, "messages") > 0);
    CHECK_THAT(run.err, Contains("1 connection errors") &&
                            Contains("the server closed the connection before echoing"));
}
