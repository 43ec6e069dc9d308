// ucoro-bench's engine: many connections sending a verifiable byte pattern to an echo
// server, closed loop (a fixed number of messages in flight) or open loop (a fixed rate),
// on one or more threads, each with its own io_context and its share of the connections.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "histogram.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/address.hpp"

namespace ucoro::apps {

struct load_options {
    net::address server;
    unsigned connections = 1;
    std::size_t size = 64; // bytes per message
    unsigned depth = 1;    // messages in flight per connection (closed loop)
    std::chrono::nanoseconds warmup = std::chrono::seconds(1);
    std::chrono::nanoseconds duration = std::chrono::seconds(5);
    /// Messages per second over all connections; 0 means closed loop. With a rate, each
    /// message's latency runs from the moment it was *meant* to be sent, so a server that
    /// stalls cannot hide the messages it delayed (the coordinated-omission correction wrk2
    /// makes). One pacing coroutine per thread keeps the schedule: it wakes at the next
    /// message's due time (one absolute timer per wake-up, not one per message), hands every
    /// message due by then to its connection, round robin, and sleeps until the next.
    double rate = 0;
    /// A message handed to the kernel more than this after its due time counts as late: the
    /// generator fell behind its schedule, and the report says how often and by how much.
    std::chrono::nanoseconds late_after = std::chrono::microseconds(500);
    /// Threads, each with its own io_context and an equal share of the connections and of
    /// the rate; the results are merged. The calling thread is the first.
    unsigned threads = 1;
    /// Messages per connection, then the connection stays open and idle; 0: no limit. The
    /// run ends as soon as every connection has had its echoes (for memory per connection).
    std::uint64_t messages_per_connection = 0;
    /// Connection churn: each of the `connections` slots connects, sends one message, checks
    /// its echo, shuts its side down, waits for the server to close, closes, and starts over.
    /// A message then is a whole connection: messages per second are connections per second,
    /// and latency runs from the connect to the server's close.
    bool churn = false;
    /// The server's process, to read its CPU time and memory from /proc.
    std::optional<pid_t> server_pid;
    /// Called about once a second with the progress so far.
    void (*on_progress)(const struct load_progress&, void* data) = nullptr;
    void* progress_data = nullptr;
};

struct load_progress {
    double elapsed_seconds = 0;
    bool measuring = false; // false during the warm-up
    std::uint64_t messages = 0;
    unsigned connections_open = 0;
};

/// What one load thread cost, over the measured interval.
struct thread_usage {
    double seconds = 0;                 // wall time measured
    std::uint64_t cpu_ns = 0;           // the thread's CPU time (CLOCK_THREAD_CPUTIME_ID)
    std::uint64_t runqueue_wait_ns = 0; // runnable but waiting for a CPU (schedstat), or 0

    /// The share of one core the thread used: above about 0.7 it is close enough to
    /// saturation that its own queueing shows in the latencies.
    double busy() const { return seconds > 0 ? double(cpu_ns) / 1e9 / seconds : 0; }
    double runqueue_wait() const {
        return seconds > 0 ? double(runqueue_wait_ns) / 1e9 / seconds : 0;
    }
};

/// What /proc said about the server over the measured interval.
/// The counters of one CPU from /proc/stat over the measured interval, in nanoseconds. They
/// hold whatever ran on that CPU: the server, the softirqs of the loopback traffic it
/// received, and any other process the machine put there.
struct core_usage {
    int cpu = -1;
    std::uint64_t user_ns = 0; // user + nice
    std::uint64_t system_ns = 0;
    std::uint64_t irq_ns = 0;
    std::uint64_t softirq_ns = 0;
    std::uint64_t steal_ns = 0; // taken by the hypervisor from this virtual CPU
    std::uint64_t idle_ns = 0;  // idle + iowait

    std::uint64_t busy_ns() const { return user_ns + system_ns + irq_ns + softirq_ns; }
    std::uint64_t total_ns() const { return busy_ns() + steal_ns + idle_ns; }
};

struct server_usage {
    std::uint64_t user_ns = 0;   // from /proc/PID/stat, in clock ticks: the split only
    std::uint64_t system_ns = 0; // (clock ticks, see user_ns)
    /// The process's CPU time read from its CPU-time clock (clock_getcpuclockid): every
    /// thread, in nanoseconds, not sampled by ticks. 0 if the clock could not be read.
    std::uint64_t process_ns = 0;
    std::uint64_t rss_start_kib = 0; // before the connections were opened
    std::uint64_t rss_end_kib = 0;   // at the end, with the connections still open
    /// The server's CPU, when it is pinned to exactly one (taskset -c N).
    std::optional<core_usage> core;
};

/// The TCP line of /proc/net/sockstat: the kernel's TCP sockets and their memory, for the
/// whole network namespace (both ends of a loopback connection: client and server alike).
struct tcp_sockstat {
    std::uint64_t inuse = 0;     // sockets in use (listening and connected)
    std::uint64_t orphan = 0;    // closed by their process, still held by the kernel
    std::uint64_t time_wait = 0; // in TIME_WAIT
    std::uint64_t mem_pages = 0; // buffer memory, in pages (the kernel's tcp_memory_allocated)
};

struct load_report {
    unsigned connections_established = 0;
    unsigned connect_failures = 0;
    unsigned connection_errors = 0; // reset, closed by the server, or failed send/recv
    std::string first_error;        // the first connect or connection error, for the message
    std::uint64_t messages = 0;     // echoes completed within the measured interval
    std::uint64_t bytes = 0;        // echoed bytes checked within the measured interval
    double seconds = 0;             // length of the measured interval
    /// Nanoseconds, one value per message measured, from the time it was due to be sent (in
    /// a closed loop: sent) to the time its last byte came back.
    histogram latency;
    /// The same, from the time its send was handed to the kernel: the server's part alone.
    histogram latency_from_send;
    /// Open loop: how long after its due time each message was handed to the kernel.
    histogram send_lag;
    std::uint64_t late_sends = 0;      // messages whose send_lag exceeded late_after
    std::uint64_t client_cpu_ns = 0;   // this process's user + system CPU over the interval
    std::vector<thread_usage> threads; // one per load thread, the calling thread first
    std::optional<server_usage> server;
    /// /proc/net/sockstat's TCP line before the connections were opened and at the end of
    /// the measured interval, with them still open (for the kernel's memory per connection).
    std::optional<tcp_sockstat> sockstat_start;
    std::optional<tcp_sockstat> sockstat_end;
    /// Set if an echoed byte differed from what was sent: the run stops at once.
    std::string mismatch;

    double messages_per_second() const { return seconds > 0 ? double(messages) / seconds : 0; }
    /// The busiest load thread's share of a core.
    double client_busy() const;
    /// The whole process's CPU (io-wq workers included) in cores.
    double client_cores() const { return seconds > 0 ? double(client_cpu_ns) / 1e9 / seconds : 0; }
};

/// The deterministic bytes each connection sends: connection c's stream is a slice of one
/// table whose length is a prime, starting at a per-connection phase, so a lost, duplicated
/// or reordered chunk lands on different bytes whatever the message size.
class byte_pattern {
public:
    static constexpr std::size_t period = 131071; // 2^17 - 1, prime

    byte_pattern();
    /// The bytes of connection `id`'s stream from `offset`, at most `length` and at most
    /// one period long: contiguous, straight out of the table.
    std::span<const std::byte> bytes(unsigned id, std::uint64_t offset, std::size_t length) const;
    /// The offset of the first byte of `received` that differs from the stream, or nullopt.
    std::optional<std::uint64_t> first_mismatch(unsigned id, std::uint64_t offset,
                                                std::span<const std::byte> received) const;

private:
    std::vector<std::byte> m_table; // two periods, so any slice of one period is contiguous
};

/// Runs the load described by `options` until the duration ends, the run fails, or (with
/// messages_per_connection) every connection has its echoes. The first thread's share runs
/// on `context`, on the calling thread; the other threads open their own io_context.
load_report run_load(io_context& context, const load_options& options);

} // namespace ucoro::apps
