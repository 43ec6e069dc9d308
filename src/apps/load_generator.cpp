#include "load_generator.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <coroutine>
#include <cstring>
#include <deque>
#include <exception>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include <fmt/core.h>

#include "ucoro/net/connect.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"

namespace ucoro::apps {

byte_pattern::byte_pattern() : m_table(2 * period) {
    // Any cheap sequence with no short period does; this is a 32-bit xorshift.
    std::uint32_t x = 2463534242u;
    for (std::size_t i = 0; i < period; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        m_table[i] = m_table[i + period] = static_cast<std::byte>(x >> 24);
    }
}

namespace {

std::size_t phase_of(unsigned id, std::uint64_t offset) {
    // 7919 is prime, so neighbouring connections start far apart in the table.
    return static_cast<std::size_t>((std::uint64_t{id} * 7919 + offset) % byte_pattern::period);
}

} // namespace

std::span<const std::byte> byte_pattern::bytes(unsigned id, std::uint64_t offset,
                                               std::size_t length) const {
    return std::span(m_table).subspan(phase_of(id, offset), std::min(length, period));
}

std::optional<std::uint64_t>
byte_pattern::first_mismatch(unsigned id, std::uint64_t offset,
                             std::span<const std::byte> received) const {
    std::size_t checked = 0;
    while (checked < received.size()) {
        const auto expected = bytes(id, offset + checked, received.size() - checked);
        const auto got = received.subspan(checked, expected.size());
        if (std::memcmp(expected.data(), got.data(), got.size()) != 0) {
            const auto at = std::mismatch(got.begin(), got.end(), expected.begin()).first;
            return offset + checked + static_cast<std::uint64_t>(at - got.begin());
        }
        checked += got.size();
    }
    return std::nullopt;
}

namespace {

using clock = std::chrono::steady_clock;

// ---- what /proc and the clocks say --------------------------------------------------------

struct cpu_times {
    std::uint64_t user_ns = 0;
    std::uint64_t system_ns = 0;
};

/// utime and stime of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks).
std::optional<cpu_times> read_cpu_times(pid_t pid) {
    std::ifstream file(fmt::format("/proc/{}/stat", pid));
    std::string text;
    if (!std::getline(file, text)) {
        return std::nullopt;
    }
    // The command name may hold spaces; the fields after it start at the last ')'.
    const std::size_t paren = text.rfind(')');
    if (paren == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream fields(text.substr(paren + 2));
    std::string skip;
    for (int i = 3; i < 14; ++i) {
        fields >> skip;
    }
    std::uint64_t user_ticks = 0;
    std::uint64_t system_ticks = 0;
    if (!(fields >> user_ticks >> system_ticks)) {
        return std::nullopt;
    }
    const auto ns_per_tick = std::uint64_t{1'000'000'000} / std::uint64_t(::sysconf(_SC_CLK_TCK));
    return cpu_times{user_ticks * ns_per_tick, system_ticks * ns_per_tick};
}

/// A process's CPU time so far from its CPU-time clock: every thread's, dead ones included,
/// in nanoseconds. nullopt if the clock cannot be read (another user's process).
std::optional<std::uint64_t> read_process_cpu_ns(pid_t pid) {
    clockid_t clock_id{};
    timespec t{};
    if (::clock_getcpuclockid(pid, &clock_id) != 0 || ::clock_gettime(clock_id, &t) != 0) {
        return std::nullopt;
    }
    return std::uint64_t(t.tv_sec) * 1'000'000'000 + std::uint64_t(t.tv_nsec);
}

/// The one CPU a process may run on, or nullopt if it may run on several.
std::optional<int> pinned_cpu(pid_t pid) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(pid, sizeof(set), &set) != 0 || CPU_COUNT(&set) != 1) {
        return std::nullopt;
    }
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &set)) {
            return cpu;
        }
    }
    return std::nullopt;
}

/// CPU `cpu`'s counters so far, from its line of /proc/stat (in USER_HZ ticks there; idle
/// time is accounted exactly on a tickless kernel, the rest by tick).
std::optional<core_usage> read_core(int cpu) {
    std::ifstream file("/proc/stat");
    const std::string name = fmt::format("cpu{}", cpu);
    std::string line;
    while (std::getline(file, line)) {
        std::istringstream fields(line);
        std::string label;
        fields >> label;
        if (label != name) {
            continue;
        }
        std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0;
        std::uint64_t softirq = 0, steal = 0;
        if (!(fields >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal)) {
            return std::nullopt;
        }
        const auto ns = std::uint64_t{1'000'000'000} / std::uint64_t(::sysconf(_SC_CLK_TCK));
        return core_usage{cpu,          (user + nice) * ns, system * ns,         irq * ns,
                          softirq * ns, steal * ns,         (idle + iowait) * ns};
    }
    return std::nullopt;
}

core_usage operator-(const core_usage& end, const core_usage& start) {
    return core_usage{end.cpu,
                      end.user_ns - start.user_ns,
                      end.system_ns - start.system_ns,
                      end.irq_ns - start.irq_ns,
                      end.softirq_ns - start.softirq_ns,
                      end.steal_ns - start.steal_ns,
                      end.idle_ns - start.idle_ns};
}

/// Resident set size of a process in KiB, from /proc/PID/status.
std::optional<std::uint64_t> read_rss_kib(pid_t pid) {
    std::ifstream file(fmt::format("/proc/{}/status", pid));
    std::string line;
    while (std::getline(file, line)) {
        if (line.rfind("VmRSS:", 0) == 0) {
            return std::stoull(line.substr(6));
        }
    }
    return std::nullopt;
}

/// The TCP line of /proc/net/sockstat ("TCP: inuse N orphan N tw N alloc N mem N").
std::optional<tcp_sockstat> read_tcp_sockstat() {
    std::ifstream file("/proc/net/sockstat");
    std::string line;
    while (std::getline(file, line)) {
        std::istringstream fields(line);
        std::string label;
        fields >> label;
        if (label != "TCP:") {
            continue;
        }
        tcp_sockstat stat;
        std::string name;
        std::uint64_t value = 0;
        while (fields >> name >> value) {
            if (name == "inuse") {
                stat.inuse = value;
            } else if (name == "orphan") {
                stat.orphan = value;
            } else if (name == "tw") {
                stat.time_wait = value;
            } else if (name == "mem") {
                stat.mem_pages = value;
            }
        }
        return stat;
    }
    return std::nullopt;
}

/// This process's user + system CPU time so far, every thread (io-wq workers too).
std::uint64_t own_cpu_ns() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    auto ns = [](const timeval& t) {
        return std::uint64_t(t.tv_sec) * 1'000'000'000 + std::uint64_t(t.tv_usec) * 1'000;
    };
    return ns(usage.ru_utime) + ns(usage.ru_stime);
}

/// The calling thread's CPU time so far, in nanoseconds (not in ticks).
std::uint64_t thread_cpu_ns() {
    timespec t{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return std::uint64_t(t.tv_sec) * 1'000'000'000 + std::uint64_t(t.tv_nsec);
}

/// How long the calling thread has waited, runnable, for a CPU: the second field of
/// /proc/thread-self/schedstat. On a shared machine this is the time other work took from
/// the load generator; 0 where the kernel has no schedstats.
std::uint64_t runqueue_wait_ns() {
    std::ifstream file("/proc/thread-self/schedstat");
    std::uint64_t running = 0;
    std::uint64_t waiting = 0;
    file >> running >> waiting;
    return waiting;
}

// ---- the run's state ----------------------------------------------------------------------

struct connection {
    unsigned id = 0;
    net::socket sock;
    std::uint64_t bytes_sent = 0;
    std::uint64_t bytes_submitted = 0; // bytes_sent plus the send in flight, whose first
                                       // bytes may be echoed before it completes
    std::uint64_t bytes_received = 0;
    std::uint64_t messages_scheduled = 0; // open loop: handed to the sender by the pacer
    std::uint64_t messages_sent = 0;
    std::uint64_t messages_received = 0;
    // Of the messages not yet echoed, oldest first: when each was due to leave, and (for the
    // first sent_times.size() of them) when it was handed to the kernel.
    std::deque<clock::time_point> due_times;
    std::deque<clock::time_point> sent_times;
    unsigned credits = 0; // messages it may (closed loop) or must (open loop) send now
    bool closed = false;  // the receiver has stopped
    bool settled = false; // failed, or has every echo it asked for
    std::coroutine_handle<> waiting_sender;
};

struct shared_run;

/// Runs once, on the last thread to end its measured interval, before any thread drains:
/// reads what belongs to the whole run (the server's usage, this process's CPU).
struct measurement_end {
    shared_run* run;
    void operator()() noexcept;
};

/// What the load threads share. Each thread writes only its own slot of the vectors; the
/// first thread writes the *_start fields before it reaches the barrier, and measurement_end
/// reads them after every thread has (the barrier orders the two).
struct shared_run {
    shared_run(const load_options& o, unsigned thread_count)
        : options(o), threads(thread_count), messages(thread_count), open(thread_count),
          arrived(thread_count), finish(thread_count, measurement_end{this}) {}

    const load_options& options;
    const unsigned threads;
    const byte_pattern pattern;
    clock::time_point start;
    clock::time_point measure_from;
    clock::time_point end;
    std::atomic<bool> abort{false}; // a thread saw a wrong echo or failed: all stop
    // Each thread's progress, for the progress line the first thread prints.
    std::vector<std::atomic<std::uint64_t>> messages;
    std::vector<std::atomic<unsigned>> open;
    std::vector<unsigned char> arrived; // the thread has reached (or left) the barrier
    std::optional<cpu_times> server_cpu_start;
    std::optional<std::uint64_t> server_process_start;
    std::optional<core_usage> server_core_start;
    std::optional<server_usage> server;
    std::uint64_t process_cpu_start = 0;
    std::uint64_t process_cpu_ns = 0;
    std::optional<tcp_sockstat> sockstat_start;
    std::optional<tcp_sockstat> sockstat_end;
    std::barrier<measurement_end> finish;
};

void measurement_end::operator()() noexcept {
    shared_run& r = *run;
    r.process_cpu_ns = own_cpu_ns() - r.process_cpu_start;
    r.sockstat_end = read_tcp_sockstat();
    if (!r.options.server_pid || !r.server) {
        return;
    }
    try {
        const auto cpu_end = read_cpu_times(*r.options.server_pid);
        const auto rss_end = read_rss_kib(*r.options.server_pid);
        const pid_t pid = *r.options.server_pid;
        if (r.server_cpu_start && cpu_end && rss_end) {
            r.server->user_ns = cpu_end->user_ns - r.server_cpu_start->user_ns;
            r.server->system_ns = cpu_end->system_ns - r.server_cpu_start->system_ns;
            r.server->rss_end_kib = *rss_end;
            const auto process_end = read_process_cpu_ns(pid);
            if (r.server_process_start && process_end) {
                r.server->process_ns = *process_end - *r.server_process_start;
            }
            if (r.server_core_start) {
                if (const auto core_end = read_core(r.server_core_start->cpu)) {
                    r.server->core = *core_end - *r.server_core_start;
                }
            }
            return;
        }
    } catch (...) {
        // below: an unreadable /proc entry means the server went away
    }
    r.server.reset();
}

/// The open loop's schedule for one thread: message k is due at due(k).
struct schedule {
    clock::time_point start;
    double ns_per_message = 0;
    std::uint64_t next = 0; // the first message not yet handed to its connection

    clock::time_point due(std::uint64_t k) const {
        return start +
               std::chrono::nanoseconds(static_cast<std::int64_t>(ns_per_message * double(k)));
    }
};

/// One load thread: its io_context, its share of the connections and of the rate.
struct run_state {
    run_state(io_context& ctx, shared_run& shared, unsigned index, double share, load_report& out,
              std::size_t connection_count)
        : context(ctx), run(shared), options(shared.options), pattern(shared.pattern),
          thread(index), rate(share), report(out), connections(connection_count) {}

    io_context& context;
    shared_run& run;
    const load_options& options;
    const byte_pattern& pattern;
    unsigned thread;
    double rate; // this thread's messages per second; 0: closed loop
    load_report& report;
    std::vector<connection> connections;
    bool measuring = false;
    bool finished = false;
    unsigned open = 0;
    unsigned settled = 0;
    unsigned connecting = 0; // connects not yet completed
    schedule plan;           // open loop only
    sleep_operation* controller_sleep = nullptr;
    std::coroutine_handle<> waiting_pacer;
};

/// Suspends the sender until it has a credit or the receiver has stopped. The receiver and
/// the pacer wake it through the loop (post), never by resuming it on their own stacks.
struct credit_wait {
    connection& c;
    bool await_ready() const noexcept { return c.credits > 0 || c.closed; }
    void await_suspend(std::coroutine_handle<> sender) noexcept { c.waiting_sender = sender; }
    void await_resume() const noexcept {}
};

/// Suspends the pacer until every connection of its thread has connected or failed to.
struct connections_ready {
    run_state& s;
    bool await_ready() const noexcept { return s.connecting == 0; }
    void await_suspend(std::coroutine_handle<> pacer) noexcept { s.waiting_pacer = pacer; }
    void await_resume() const noexcept {}
};

void wake_sender(run_state& s, connection& c) {
    if (c.waiting_sender) {
        s.context.post(std::exchange(c.waiting_sender, nullptr));
    }
}

bool all_settled(const run_state& s) {
    return s.settled == s.connections.size();
}

void settle(run_state& s, connection& c) {
    if (c.settled) {
        return;
    }
    c.settled = true;
    ++s.settled;
    if (all_settled(s) && s.controller_sleep != nullptr) {
        s.controller_sleep->cancel(); // nothing left to wait for: end the run now
    }
}

void connection_error(run_state& s, connection& c, const std::string& what) {
    if (s.finished) {
        return; // the run is over; errors while tearing down are not the server's
    }
    ++s.report.connection_errors;
    if (s.report.first_error.empty()) {
        s.report.first_error = fmt::format("connection {}: {}", c.id, what);
    }
}

/// A wrong echo ends the whole run: this thread at once, the others at their next tick.
void fail_run(run_state& s, std::string why) {
    s.report.mismatch = std::move(why);
    s.run.abort.store(true, std::memory_order_relaxed);
    s.context.stop();
}

std::uint64_t message_limit(const run_state& s) {
    return s.options.messages_per_connection;
}

/// How many messages may be sent in one send: as many as fit in one slice of the pattern.
std::uint64_t max_batch(const run_state& s) {
    return std::max<std::uint64_t>(1, byte_pattern::period / s.options.size);
}

// ---- sending ------------------------------------------------------------------------------

/// Sends `count` messages' worth of the connection's stream. False on error.
task<bool> send_messages(run_state& s, connection& c, std::uint64_t count) {
    std::uint64_t left = count * s.options.size;
    while (left > 0) {
        const auto piece = s.pattern.bytes(c.id, c.bytes_sent, left);
        c.bytes_submitted = c.bytes_sent + piece.size();
        auto [error, sent] = co_await c.sock.send_all(piece);
        c.bytes_sent += sent;
        c.bytes_submitted = c.bytes_sent;
        left -= sent;
        if (error) {
            if (error != std::errc::operation_canceled) {
                connection_error(s, c, fmt::format("send: {}", error.message()));
            }
            co_return false;
        }
    }
    c.messages_sent += count;
    co_return true;
}

/// Stamps the next `count` messages of the connection as sent now; in the open loop also
/// records how late each left and counts those later than late_after.
void note_sent(run_state& s, connection& c, std::uint64_t count) {
    const auto now = clock::now();
    for (std::uint64_t i = 0; i < count; ++i) {
        const auto due = c.due_times[c.sent_times.size()];
        c.sent_times.push_back(now);
        if (s.rate > 0 && s.measuring) {
            const auto lag = std::max(clock::duration::zero(), now - due);
            s.report.send_lag.record(
                static_cast<std::uint64_t>(std::chrono::nanoseconds(lag).count()));
            if (lag > s.options.late_after) {
                ++s.report.late_sends;
            }
        }
    }
}

std::uint64_t remaining_to_send(const run_state& s, const connection& c) {
    const std::uint64_t limit = message_limit(s);
    return limit == 0 ? max_batch(s) : std::min(max_batch(s), limit - c.messages_sent);
}

/// Closed loop: keeps `depth` messages in flight, sending again as echoes come back.
task<void> send_closed_loop(run_state& s, connection& c) {
    c.credits = s.options.depth;
    while (!c.closed && !s.finished) {
        if (message_limit(s) != 0 && c.messages_sent >= message_limit(s)) {
            break;
        }
        co_await credit_wait{c};
        if (c.closed || s.finished) {
            break;
        }
        const std::uint64_t batch = std::min<std::uint64_t>(c.credits, remaining_to_send(s, c));
        c.credits -= static_cast<unsigned>(batch);
        c.due_times.insert(c.due_times.end(), batch, clock::now());
        note_sent(s, c, batch);
        if (const bool sent = co_await send_messages(s, c, batch); !sent) {
            break;
        }
    }
}

/// Open loop: sends what the pacer has made due. Normally that is one message per wake-up;
/// more only when this connection's previous send was still in flight, and then each of
/// them was already late and is counted as such.
task<void> send_open_loop(run_state& s, connection& c) {
    while (!c.closed && !s.finished) {
        co_await credit_wait{c};
        if (c.closed || s.finished) {
            break;
        }
        const std::uint64_t batch = std::min<std::uint64_t>(c.credits, max_batch(s));
        c.credits -= static_cast<unsigned>(batch);
        note_sent(s, c, batch);
        if (const bool sent = co_await send_messages(s, c, batch); !sent) {
            break;
        }
    }
}

/// Hands every message due by `now` to its connection: message k of the thread is due at
/// plan.due(k), on connection k mod n (round robin, so each connection sends every n / rate
/// seconds). Due times are computed, never accumulated from sleeps, so nothing drifts.
void hand_out_due(run_state& s, clock::time_point now) {
    const std::uint64_t limit = message_limit(s);
    for (; s.plan.due(s.plan.next) <= now; ++s.plan.next) {
        connection& c = s.connections[s.plan.next % s.connections.size()];
        if (!c.sock.is_open() || c.closed || (limit != 0 && c.messages_scheduled >= limit)) {
            continue; // failed, or done: its turn passes
        }
        ++c.messages_scheduled;
        c.due_times.push_back(s.plan.due(s.plan.next));
        ++c.credits;
        wake_sender(s, c);
    }
}

/// The open loop's clock, one per thread. Once every connection of the thread has connected
/// (or failed), each turn hands out every message due by now and sleeps on one absolute
/// timer until the next is due: one timer per wake-up, however many connections.
///
/// NOTE: keeping several timers in flight (so that arming one never reprograms the timer
/// hardware, a trap to the hypervisor in a VM) was tried: 5% less CPU, but wake-ups came
/// 2-3 times later and the latencies doubled, so one it is.
task<void> pace(run_state& s) {
    co_await connections_ready{s};
    if (s.connections.empty() || s.finished) {
        co_return;
    }
    s.plan.ns_per_message = 1e9 / s.rate;
    // The threads' schedules interleave: thread t starts t / threads of an interval later.
    s.plan.start = clock::now() + std::chrono::nanoseconds(static_cast<std::int64_t>(
                                      s.plan.ns_per_message * s.thread / s.run.threads));
    while (!s.finished) {
        hand_out_due(s, clock::now());
        // NOTE: a named local, not the call inside the co_await: GCC 12 compiled
        // `co_await sleep_until(s.context, s.plan.due(s.plan.next))` here into a coroutine
        // that ended at its first resumption without running its body.
        const auto next_due = s.plan.due(s.plan.next);
        if (const auto cancelled = co_await sleep_until(s.context, next_due); cancelled) {
            break; // cancelled: the run is over
        }
    }
}

// ---- receiving ----------------------------------------------------------------------------

/// Reads the echoes, checks every byte, records each message's latency and hands the
/// sender its credits back.
task<void> receive(run_state& s, connection& c) {
    const std::size_t in_flight = s.options.size * std::max(1u, s.options.depth);
    std::vector<std::byte> buffer(std::clamp<std::size_t>(in_flight, 4096, 64 * 1024));
    const std::size_t size = s.options.size;
    while (true) {
        auto [error, n] = co_await c.sock.recv(buffer);
        if (error) {
            if (error != std::errc::operation_canceled) {
                connection_error(s, c, fmt::format("recv: {}", error.message()));
            }
            break;
        }
        if (n == 0) {
            // After the run, end of stream is the server's answer to our shutdown.
            connection_error(s, c, "the server closed the connection");
            break;
        }
        const auto received = std::span(buffer).first(n);
        if (c.bytes_received + n > c.bytes_submitted) {
            fail_run(s, fmt::format("connection {}: received {} bytes but only {} were sent", c.id,
                                    c.bytes_received + n, c.bytes_submitted));
            break;
        }
        if (const auto offset = s.pattern.first_mismatch(c.id, c.bytes_received, received)) {
            const auto got = received[*offset - c.bytes_received];
            const auto expected = s.pattern.bytes(c.id, *offset, 1)[0];
            fail_run(
                s, fmt::format(
                       "connection {}: echoed byte at offset {} is 0x{:02x}, expected 0x{:02x}",
                       c.id, *offset, static_cast<unsigned>(got), static_cast<unsigned>(expected)));
            break;
        }
        c.bytes_received += n;
        const std::uint64_t completed = c.bytes_received / size - c.messages_received;
        if (completed == 0) {
            continue;
        }
        const auto now = clock::now();
        for (std::uint64_t i = 0; i < completed; ++i) {
            if (s.measuring) {
                auto ns = [](clock::duration d) {
                    return static_cast<std::uint64_t>(std::chrono::nanoseconds(d).count());
                };
                s.report.latency.record(ns(now - c.due_times.front()));
                s.report.latency_from_send.record(ns(now - c.sent_times.front()));
                ++s.report.messages;
                s.report.bytes += size;
            }
            c.due_times.pop_front();
            c.sent_times.pop_front();
        }
        c.messages_received += completed;
        if (s.rate == 0) {
            c.credits += static_cast<unsigned>(completed);
            wake_sender(s, c);
        }
        if (message_limit(s) != 0 && c.messages_received >= message_limit(s)) {
            settle(s, c); // stays connected, idle, until the run ends
        }
    }
    c.closed = true;
    wake_sender(s, c);
    settle(s, c);
    --s.open;
    if (s.finished && s.open == 0 && s.controller_sleep != nullptr) {
        s.controller_sleep->cancel(); // every connection has drained
    }
}

void connect_done(run_state& s) {
    if (--s.connecting == 0 && s.waiting_pacer) {
        s.context.post(std::exchange(s.waiting_pacer, nullptr));
    }
}

task<void> run_connection(run_state& s, connection& c) {
    auto [error, sock] = co_await net::connect(s.context, s.options.server);
    if (error) {
        if (error != std::errc::operation_canceled) {
            ++s.report.connect_failures;
            if (s.report.first_error.empty()) {
                s.report.first_error =
                    fmt::format("connect to {}: {}", s.options.server, error.message());
            }
        }
        settle(s, c);
        connect_done(s);
        co_return;
    }
    sock.set_no_delay();
    c.sock = std::move(sock);
    ++s.report.connections_established;
    ++s.open;
    connect_done(s);
    s.context.spawn(receive(s, c));
    if (s.rate > 0) {
        co_await send_open_loop(s, c);
    } else {
        co_await send_closed_loop(s, c);
    }
}

// ---- connection churn ---------------------------------------------------------------------

std::uint64_t ns_between(clock::time_point from, clock::time_point to) {
    return static_cast<std::uint64_t>(std::chrono::nanoseconds(to - from).count());
}

/// One churn cycle on a fresh connection: one message out, its echo checked byte for byte,
/// our side shut down, the server's close awaited. False if the cycle failed (counted, or the
/// run failed on a wrong echo).
task<bool> churn_once(run_state& s, connection& c, clock::time_point began) {
    // A new connection's echo starts where its first byte does, whatever the last cycle,
    // failed halfway or not, left unread.
    c.bytes_received = c.bytes_sent;
    const std::uint64_t expected_end = c.bytes_sent + s.options.size;
    const auto sent_at = clock::now();
    if (const bool sent = co_await send_messages(s, c, 1); !sent) {
        co_return false;
    }
    std::vector<std::byte> buffer(std::clamp<std::size_t>(s.options.size, 4096, 64 * 1024));
    clock::time_point echoed_at;
    bool echoed = false;
    while (true) {
        auto [error, n] = co_await c.sock.recv(buffer);
        if (error) {
            if (error != std::errc::operation_canceled) {
                connection_error(s, c, fmt::format("recv: {}", error.message()));
            }
            co_return false;
        }
        if (n == 0) {
            if (!echoed) {
                connection_error(s, c, "the server closed the connection before echoing");
                co_return false;
            }
            break; // the server's answer to our shutdown: the cycle is complete
        }
        const auto received = std::span(buffer).first(n);
        if (c.bytes_received + n > expected_end) {
            fail_run(s, fmt::format("connection {}: received {} bytes but only {} were sent", c.id,
                                    c.bytes_received + n, expected_end));
            co_return false;
        }
        if (const auto offset = s.pattern.first_mismatch(c.id, c.bytes_received, received)) {
            fail_run(s, fmt::format("connection {}: echoed byte at offset {} is 0x{:02x}, expected "
                                    "0x{:02x}",
                                    c.id, *offset,
                                    static_cast<unsigned>(received[*offset - c.bytes_received]),
                                    static_cast<unsigned>(s.pattern.bytes(c.id, *offset, 1)[0])));
            co_return false;
        }
        c.bytes_received += n;
        if (c.bytes_received == expected_end && !echoed) {
            echoed = true;
            echoed_at = clock::now();
            if (const auto shut = co_await c.sock.shutdown(); shut) {
                connection_error(s, c, fmt::format("shutdown: {}", shut.message()));
                co_return false;
            }
        }
    }
    if (s.measuring) {
        const auto now = clock::now();
        s.report.latency.record(ns_between(began, now));
        s.report.latency_from_send.record(ns_between(sent_at, echoed_at));
        ++s.report.messages;
        s.report.bytes += s.options.size;
    }
    co_return true;
}

/// A churn slot: connect, one echo, close, again, until the run ends. A failed connect ends
/// the slot (the server is gone or the machine is out of ports: retrying would only spin); a
/// failed cycle is counted and the slot goes on with a new connection.
task<void> churn_connection(run_state& s, connection& c) {
    bool first = true;
    while (!s.finished && !s.run.abort.load(std::memory_order_relaxed)) {
        const auto began = clock::now();
        auto [error, sock] = co_await net::connect(s.context, s.options.server);
        if (error) {
            if (error != std::errc::operation_canceled && !s.finished) {
                ++s.report.connect_failures;
                if (s.report.first_error.empty()) {
                    s.report.first_error =
                        fmt::format("connect to {}: {}", s.options.server, error.message());
                }
            }
            break;
        }
        if (std::exchange(first, false)) {
            connect_done(s);
        }
        sock.set_no_delay();
        c.sock = std::move(sock);
        ++s.report.connections_established;
        ++s.open;
        (void)co_await churn_once(s, c, began);
        (void)co_await c.sock.close();
        --s.open;
        if (s.finished && s.open == 0 && s.controller_sleep != nullptr) {
            s.controller_sleep->cancel(); // every connection has drained
        }
    }
    if (first) {
        connect_done(s);
    }
    settle(s, c);
}

// ---- the run's clock ----------------------------------------------------------------------

/// Ends the connections politely: stop sending, shut down our side, and read until the
/// server, having echoed the rest, closes. Closing with echoes still unread would make the
/// kernel send a reset, which some servers (the Python peer) take as a fatal error.
task<void> drain(run_state& s) {
    for (connection& c : s.connections) {
        wake_sender(s, c);
        if (c.sock.is_open()) {
            ::shutdown(c.sock.native_handle(), SHUT_WR);
        }
    }
    const auto deadline = clock::now() + std::chrono::seconds(2);
    while (s.open > 0 && !s.context.stop_requested()) {
        if (clock::now() >= deadline) {
            break;
        }
        sleep_operation sleep = sleep_until(s.context, deadline);
        s.controller_sleep = &sleep;
        (void)co_await sleep; // cancelled by the last receiver to finish
        s.controller_sleep = nullptr;
    }
}

/// The sum of every thread's progress, for the progress line.
load_progress progress_of(const shared_run& run, double elapsed, bool measuring) {
    load_progress p{elapsed, measuring, 0, 0};
    for (unsigned t = 0; t < run.threads; ++t) {
        p.messages += run.messages[t].load(std::memory_order_relaxed);
        p.connections_open += run.open[t].load(std::memory_order_relaxed);
    }
    return p;
}

/// Runs one thread's clock: warm-up, measured interval, progress once a second, then meets
/// the other threads at the barrier (where the run's totals are read) and stops the loop.
task<void> control(run_state& s) {
    shared_run& run = s.run;
    const load_options& o = s.options;
    auto next_progress = run.start + std::chrono::seconds(1);
    clock::time_point measured_start;
    std::uint64_t cpu_start = 0;
    std::uint64_t wait_start = 0;
    auto begin_measurement = [&](clock::time_point now) {
        s.measuring = true;
        measured_start = now;
        cpu_start = thread_cpu_ns();
        wait_start = runqueue_wait_ns();
        if (s.thread == 0) {
            run.process_cpu_start = own_cpu_ns();
            if (o.server_pid) {
                run.server_cpu_start = read_cpu_times(*o.server_pid);
                run.server_process_start = read_process_cpu_ns(*o.server_pid);
                if (const auto cpu = pinned_cpu(*o.server_pid)) {
                    run.server_core_start = read_core(*cpu);
                }
            }
        }
    };
    while (true) {
        auto now = clock::now();
        if (!s.measuring && now >= run.measure_from) {
            begin_measurement(now);
        }
        if (now >= run.end || all_settled(s) || s.context.stop_requested() ||
            run.abort.load(std::memory_order_relaxed)) {
            break;
        }
        const auto wake =
            std::min({run.end, next_progress, s.measuring ? run.end : run.measure_from});
        sleep_operation sleep = sleep_until(s.context, wake);
        s.controller_sleep = &sleep;
        (void)co_await sleep; // woken early (cancelled) when every connection has settled
        s.controller_sleep = nullptr;
        now = clock::now();
        if (now >= next_progress) {
            next_progress += std::chrono::seconds(1);
            run.messages[s.thread].store(s.report.messages, std::memory_order_relaxed);
            run.open[s.thread].store(s.open, std::memory_order_relaxed);
            if (s.thread == 0 && o.on_progress != nullptr) {
                o.on_progress(progress_of(run,
                                          std::chrono::duration<double>(now - run.start).count(),
                                          s.measuring),
                              o.progress_data);
            }
        }
    }
    const auto now = clock::now();
    if (!s.measuring) {
        begin_measurement(now); // ended during the warm-up: an empty interval
    }
    const double seconds = std::chrono::duration<double>(now - measured_start).count();
    s.report.seconds = seconds;
    s.report.threads.push_back(
        thread_usage{seconds, thread_cpu_ns() - cpu_start, runqueue_wait_ns() - wait_start});
    s.measuring = false;
    s.finished = true;
    run.arrived[s.thread] = 1;
    run.finish.arrive_and_wait(); // the last thread to arrive reads the server's usage
    co_await drain(s);
    s.context.stop(); // cancels whatever is left: sleeps, and connections that did not drain
}

/// Runs thread `t`'s share of the load on `context` until it is done.
void run_thread(io_context& context, shared_run& run, unsigned t, load_report& report) {
    const load_options& o = run.options;
    const unsigned first = static_cast<unsigned>(std::uint64_t{o.connections} * t / run.threads);
    const unsigned last =
        static_cast<unsigned>(std::uint64_t{o.connections} * (t + 1) / run.threads);
    const double rate = o.rate * double(last - first) / double(o.connections);
    run_state s(context, run, t, rate, report, last - first);
    s.connecting = last - first;
    for (unsigned i = 0; i < s.connections.size(); ++i) {
        s.connections[i].id = first + i;
        context.spawn(o.churn ? churn_connection(s, s.connections[i])
                              : run_connection(s, s.connections[i]));
    }
    if (rate > 0) {
        context.spawn(pace(s));
    }
    context.spawn(control(s));
    context.run();
}

/// Adds one thread's report to the run's.
void merge_into(load_report& total, load_report& part) {
    total.connections_established += part.connections_established;
    total.connect_failures += part.connect_failures;
    total.connection_errors += part.connection_errors;
    if (total.first_error.empty()) {
        total.first_error = std::move(part.first_error);
    }
    if (total.mismatch.empty()) {
        total.mismatch = std::move(part.mismatch);
    }
    total.messages += part.messages;
    total.bytes += part.bytes;
    total.seconds = std::max(total.seconds, part.seconds);
    total.latency.merge(part.latency);
    total.latency_from_send.merge(part.latency_from_send);
    total.send_lag.merge(part.send_lag);
    total.late_sends += part.late_sends;
    total.threads.insert(total.threads.end(), part.threads.begin(), part.threads.end());
}

} // namespace

double load_report::client_busy() const {
    double busiest = 0;
    for (const thread_usage& t : threads) {
        busiest = std::max(busiest, t.busy());
    }
    return busiest;
}

load_report run_load(io_context& context, const load_options& options) {
    const unsigned threads = std::clamp(options.threads, 1u, std::max(1u, options.connections));
    shared_run run(options, threads);
    if (options.server_pid) {
        if (const auto rss = read_rss_kib(*options.server_pid)) {
            run.server.emplace();
            run.server->rss_start_kib = *rss;
        }
    }
    run.sockstat_start = read_tcp_sockstat();
    run.start = clock::now();
    // With a message limit the run is a memory measurement: it counts from the start.
    run.measure_from =
        options.messages_per_connection != 0 ? run.start : run.start + options.warmup;
    run.end = run.measure_from + options.duration;

    std::vector<load_report> reports(threads);
    std::vector<std::exception_ptr> failures(threads);
    // A thread that fails before the barrier leaves it, so that the others are not stuck.
    auto guarded = [&](unsigned t, auto&& body) {
        try {
            body();
        } catch (...) {
            failures[t] = std::current_exception();
            run.abort.store(true, std::memory_order_relaxed);
            if (!run.arrived[t]) {
                run.arrived[t] = 1;
                run.finish.arrive_and_drop();
            }
        }
    };
    std::vector<std::thread> workers;
    for (unsigned t = 1; t < threads; ++t) {
        workers.emplace_back([&, t] {
            guarded(t, [&] {
                io_context own;
                run_thread(own, run, t, reports[t]);
            });
        });
    }
    guarded(0, [&] { run_thread(context, run, 0, reports[0]); });
    for (std::thread& worker : workers) {
        worker.join();
    }
    for (const std::exception_ptr& failure : failures) {
        if (failure) {
            std::rethrow_exception(failure);
        }
    }
    load_report report;
    for (load_report& part : reports) {
        merge_into(report, part);
    }
    report.client_cpu_ns = run.process_cpu_ns;
    report.server = run.server;
    report.sockstat_start = run.sockstat_start;
    report.sockstat_end = run.sockstat_end;
    return report;
}

} // namespace ucoro::apps
