#include "load_generator.hpp"

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <coroutine>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
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

struct connection {
    unsigned id = 0;
    net::socket sock;
    std::uint64_t bytes_sent = 0;
    std::uint64_t bytes_submitted = 0; // bytes_sent plus the send in flight, whose first
                                       // bytes may be echoed before it completes
    std::uint64_t bytes_received = 0;
    std::uint64_t messages_sent = 0;
    std::uint64_t messages_received = 0;
    std::deque<clock::time_point> start_times; // of the messages in flight, oldest first
    unsigned credits = 0;                      // closed loop: messages it may send now
    bool closed = false;                       // the receiver has stopped
    bool settled = false;                      // failed, or has every echo it asked for
    std::coroutine_handle<> waiting_sender;
};

struct run_state {
    io_context& context;
    const load_options& options;
    const byte_pattern& pattern;
    load_report& report;
    std::vector<connection> connections;
    bool measuring = false;
    bool finished = false;
    unsigned open = 0;
    unsigned settled = 0;
    sleep_operation* controller_sleep = nullptr;
};

/// Suspends the sender until the receiver has returned a credit or stopped. The receiver
/// wakes it through the loop (post), never by resuming it on its own stack.
struct credit_wait {
    connection& c;
    bool await_ready() const noexcept { return c.credits > 0 || c.closed; }
    void await_suspend(std::coroutine_handle<> sender) noexcept { c.waiting_sender = sender; }
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
        s.context.cancel(*s.controller_sleep); // nothing left to wait for: end the run now
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

std::uint64_t message_limit(const run_state& s) {
    return s.options.messages_per_connection;
}

/// How many messages may be sent in one send: as many as fit in one slice of the pattern.
std::uint64_t max_batch(const run_state& s) {
    return std::max<std::uint64_t>(1, byte_pattern::period / s.options.size);
}

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
        c.start_times.insert(c.start_times.end(), batch, clock::now());
        if (!co_await send_messages(s, c, batch)) {
            break;
        }
    }
}

/// Open loop: sends on a fixed schedule whatever the server does, each message stamped
/// with the time it was meant to leave; if the schedule slipped, the late ones go at once.
task<void> send_open_loop(run_state& s, connection& c) {
    const auto interval = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>(double(s.connections.size()) / s.options.rate));
    // Spread the connections over one interval so they do not all send at once.
    auto next = clock::now() + interval * c.id / s.connections.size();
    while (!c.closed && !s.finished) {
        if (message_limit(s) != 0 && c.messages_sent >= message_limit(s)) {
            break;
        }
        const auto now = clock::now();
        if (now < next) {
            if (co_await sleep_for(s.context, next - now)) {
                break; // cancelled: the run is over
            }
            continue;
        }
        const std::uint64_t due = 1 + static_cast<std::uint64_t>((now - next) / interval);
        const std::uint64_t batch = std::min(due, remaining_to_send(s, c));
        for (std::uint64_t i = 0; i < batch; ++i) {
            c.start_times.push_back(next);
            next += interval;
        }
        if (!co_await send_messages(s, c, batch)) {
            break;
        }
    }
}

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
            s.report.mismatch =
                fmt::format("connection {}: received {} bytes but only {} were sent", c.id,
                            c.bytes_received + n, c.bytes_submitted);
            s.context.stop();
            break;
        }
        if (const auto offset = s.pattern.first_mismatch(c.id, c.bytes_received, received)) {
            const auto got = received[*offset - c.bytes_received];
            const auto expected = s.pattern.bytes(c.id, *offset, 1)[0];
            s.report.mismatch = fmt::format(
                "connection {}: echoed byte at offset {} is 0x{:02x}, expected 0x{:02x}", c.id,
                *offset, static_cast<unsigned>(got), static_cast<unsigned>(expected));
            s.context.stop();
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
                s.report.latency.record(static_cast<std::uint64_t>(
                    std::chrono::nanoseconds(now - c.start_times.front()).count()));
                ++s.report.messages;
                s.report.bytes += size;
            }
            c.start_times.pop_front();
        }
        c.messages_received += completed;
        c.credits += static_cast<unsigned>(completed);
        wake_sender(s, c);
        if (message_limit(s) != 0 && c.messages_received >= message_limit(s)) {
            settle(s, c); // stays connected, idle, until the run ends
        }
    }
    c.closed = true;
    wake_sender(s, c);
    settle(s, c);
    --s.open;
    if (s.finished && s.open == 0 && s.controller_sleep != nullptr) {
        s.context.cancel(*s.controller_sleep); // every connection has drained
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
        co_return;
    }
    sock.set_no_delay();
    c.sock = std::move(sock);
    ++s.report.connections_established;
    ++s.open;
    s.context.spawn(receive(s, c));
    if (s.options.rate > 0) {
        co_await send_open_loop(s, c);
    } else {
        co_await send_closed_loop(s, c);
    }
}

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
        const auto now = clock::now();
        if (now >= deadline) {
            break;
        }
        sleep_operation sleep = sleep_for(s.context, deadline - now);
        s.controller_sleep = &sleep;
        (void)co_await sleep; // cancelled by the last receiver to finish
        s.controller_sleep = nullptr;
    }
}

/// This process's user + system CPU time so far.
std::uint64_t own_cpu_ns() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    auto ns = [](const timeval& t) {
        return std::uint64_t(t.tv_sec) * 1'000'000'000 + std::uint64_t(t.tv_usec) * 1'000;
    };
    return ns(usage.ru_utime) + ns(usage.ru_stime);
}

/// Runs the clock: warm-up, measured interval, progress once a second, then stops the run.
task<void> control(run_state& s) {
    const load_options& o = s.options;
    const auto start = clock::now();
    // With a message limit the run is a memory measurement: it counts from the start.
    const auto measure_from = o.messages_per_connection != 0 ? start : start + o.warmup;
    const auto end = measure_from + o.duration;
    auto next_progress = start + std::chrono::seconds(1);
    std::optional<cpu_times> cpu_start;
    clock::time_point measured_start;
    std::uint64_t client_cpu_start = 0;
    auto begin_measurement = [&](clock::time_point now) {
        s.measuring = true;
        measured_start = now;
        client_cpu_start = own_cpu_ns();
        if (o.server_pid) {
            cpu_start = read_cpu_times(*o.server_pid);
        }
    };
    while (true) {
        auto now = clock::now();
        if (!s.measuring && now >= measure_from) {
            begin_measurement(now);
        }
        if (now >= end || all_settled(s) || s.context.stop_requested()) {
            break;
        }
        const auto wake = std::min({end, next_progress, s.measuring ? end : measure_from});
        sleep_operation sleep = sleep_for(s.context, wake - now);
        s.controller_sleep = &sleep;
        (void)co_await sleep; // woken early (cancelled) when every connection has settled
        s.controller_sleep = nullptr;
        now = clock::now();
        if (now >= next_progress) {
            next_progress += std::chrono::seconds(1);
            if (o.on_progress != nullptr) {
                const load_progress progress{std::chrono::duration<double>(now - start).count(),
                                             s.measuring, s.report.messages, s.open};
                o.on_progress(progress, o.progress_data);
            }
        }
    }
    const auto now = clock::now();
    if (!s.measuring) {
        begin_measurement(now); // ended during the warm-up: an empty interval
    }
    s.report.seconds = std::chrono::duration<double>(now - measured_start).count();
    s.report.client_cpu_ns = own_cpu_ns() - client_cpu_start;
    if (o.server_pid) {
        const auto cpu_end = read_cpu_times(*o.server_pid);
        const auto rss_end = read_rss_kib(*o.server_pid);
        if (cpu_start && cpu_end && rss_end && s.report.server) {
            s.report.server->user_ns = cpu_end->user_ns - cpu_start->user_ns;
            s.report.server->system_ns = cpu_end->system_ns - cpu_start->system_ns;
            s.report.server->rss_end_kib = *rss_end;
        } else {
            s.report.server.reset(); // the server went away
        }
    }
    s.measuring = false;
    s.finished = true;
    co_await drain(s);
    s.context.stop(); // cancels whatever is left: sleeps, and connections that did not drain
}

} // namespace

load_report run_load(io_context& context, const load_options& options) {
    const byte_pattern pattern;
    load_report report;
    if (options.server_pid) {
        if (const auto rss = read_rss_kib(*options.server_pid)) {
            report.server = server_usage{0, 0, *rss, 0};
        }
    }
    run_state s{context, options, pattern, report, std::vector<connection>(options.connections)};
    for (unsigned i = 0; i < options.connections; ++i) {
        s.connections[i].id = i;
        context.spawn(run_connection(s, s.connections[i]));
    }
    context.spawn(control(s));
    context.run();
    return report;
}

} // namespace ucoro::apps
