#include "bench_cli.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "command_line.hpp"

namespace ucoro::apps {

namespace {

constexpr std::string_view usage = "usage: ucoro-bench [OPTIONS] HOST PORT   (--help for the list)";

std::chrono::nanoseconds seconds(double s) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

struct progress_line {
    std::uint64_t last_messages = 0;
    double last_elapsed = 0;
};

void print_progress(const load_progress& p, void* data) {
    auto& line = *static_cast<progress_line*>(data);
    const double interval = p.elapsed_seconds - line.last_elapsed;
    const double rate = interval > 0 ? double(p.messages - line.last_messages) / interval : 0.0;
    fmt::print(stderr, "\r{:6.1f} s  {:<9} {:>6} connections open  {:>12.0f} msg/s   ",
               p.elapsed_seconds, p.measuring ? "measuring" : "warm-up", p.connections_open,
               p.measuring ? rate : 0.0);
    line.last_messages = p.messages;
    line.last_elapsed = p.elapsed_seconds;
}

std::string format_ns(std::uint64_t ns) {
    if (ns < 10'000) {
        return fmt::format("{} ns", ns);
    }
    if (ns < 10'000'000) {
        return fmt::format("{:.1f} us", double(ns) / 1e3);
    }
    return fmt::format("{:.1f} ms", double(ns) / 1e6);
}

std::string busy_per_thread(const load_report& r, std::string_view separator) {
    std::string text;
    for (const thread_usage& t : r.threads) {
        text += fmt::format("{}{:.4f}", text.empty() ? "" : separator, t.busy());
    }
    return text;
}

double runqueue_wait(const load_report& r) {
    double worst = 0;
    for (const thread_usage& t : r.threads) {
        worst = std::max(worst, t.runqueue_wait());
    }
    return worst;
}

void print_summary(const load_options& o, const load_report& r) {
    fmt::print("ucoro-bench {}: {} connections x {} B, {}, {} thread(s), {:.2f} s measured\n",
               o.server, o.connections, o.size,
               o.churn      ? std::string("churn: connect, echo once, close, again")
               : o.rate > 0 ? fmt::format("open loop at {:.0f} msg/s", o.rate)
                            : fmt::format("closed loop, depth {}", o.depth),
               r.threads.size(), r.seconds);
    if (o.churn) {
        fmt::print("  churn        {} connections completed, {:.0f} connections/s; latency from "
                   "the connect to the server's close\n",
                   r.messages, r.messages_per_second());
    }
    fmt::print("  connections  {} established, {} failed to connect, {} errors\n",
               r.connections_established, r.connect_failures, r.connection_errors);
    fmt::print("  throughput   {} messages, {:.0f} msg/s, {:.1f} MB/s echoed\n", r.messages,
               r.messages_per_second(), r.seconds > 0 ? double(r.bytes) / r.seconds / 1e6 : 0.0);
    auto percentiles = [](const histogram& h) {
        return fmt::format("p50 {}  p90 {}  p99 {}  p99.9 {}  max {}", format_ns(h.percentile(50)),
                           format_ns(h.percentile(90)), format_ns(h.percentile(99)),
                           format_ns(h.percentile(99.9)), format_ns(h.max()));
    };
    if (o.rate > 0) {
        fmt::print("  latency      {}  (from each message's due time)\n", percentiles(r.latency));
        fmt::print("  from send    {}  (from its actual send)\n", percentiles(r.latency_from_send));
        const histogram& lag = r.send_lag;
        fmt::print("  schedule     sent p50 {} / p99 {} / max {} after the due time; {} of {} "
                   "later than {}{}\n",
                   format_ns(lag.percentile(50)), format_ns(lag.percentile(99)),
                   format_ns(lag.max()), r.late_sends, lag.count(),
                   format_ns(static_cast<std::uint64_t>(o.late_after.count())),
                   r.late_sends > 0 ? ": the generator fell behind its schedule" : "");
    } else {
        fmt::print("  latency      {}  ({})\n", percentiles(r.latency),
                   o.churn ? "from the connect to the server's close" : "from the send");
    }
    fmt::print("  ucoro-bench  {:.0f} ns of its own CPU per message; busiest thread {:.2f} of a "
               "core ({}); waited for a CPU {:.0f}% of the time\n",
               double(r.client_cpu_ns) / std::max(1.0, double(r.messages)), r.client_busy(),
               busy_per_thread(r, ", "), 100 * runqueue_wait(r));
    if (r.server) {
        const double messages = r.messages > 0 ? double(r.messages) : 1.0;
        fmt::print("  server CPU   user {:.0f} ns + system {:.0f} ns = {:.0f} ns per message\n",
                   double(r.server->user_ns) / messages, double(r.server->system_ns) / messages,
                   double(r.server->user_ns + r.server->system_ns) / messages);
        if (r.server->process_ns > 0) {
            fmt::print("  server CPU   {:.0f} ns per message from its CPU-time clock (not ticks)\n",
                       double(r.server->process_ns) / messages);
        }
        if (const auto& core = r.server->core) {
            fmt::print("  server core  CPU {}: user {:.0f} + system {:.0f} + irq {:.0f} + softirq "
                       "{:.0f} ns per message, steal {:.0f}; busy {:.2f} (everything on that "
                       "CPU, from /proc/stat)\n",
                       core->cpu, double(core->user_ns) / messages,
                       double(core->system_ns) / messages, double(core->irq_ns) / messages,
                       double(core->softirq_ns) / messages, double(core->steal_ns) / messages,
                       core->total_ns() > 0 ? double(core->busy_ns()) / double(core->total_ns())
                                            : 0.0);
        }
        fmt::print("  server RSS   {} KiB before, {} KiB at the end\n", r.server->rss_start_kib,
                   r.server->rss_end_kib);
    }
    if (r.sockstat_start && r.sockstat_end) {
        fmt::print("  kernel TCP   {} -> {} sockets, {} -> {} pages of buffers, {} -> {} orphans "
                   "(/proc/net/sockstat: every process, both ends of loopback connections)\n",
                   r.sockstat_start->inuse, r.sockstat_end->inuse, r.sockstat_start->mem_pages,
                   r.sockstat_end->mem_pages, r.sockstat_start->orphan, r.sockstat_end->orphan);
    }
}

} // namespace

std::string to_json(const load_options& o, const load_report& r) {
    const histogram& h = r.latency;
    const histogram& from_send = r.latency_from_send;
    const histogram& lag = r.send_lag;
    std::string json =
        fmt::format("{{\"server\": \"{}\", \"connections\": {}, \"size\": {}, \"depth\": {}, "
                    "\"rate\": {}, \"churn\": {}, \"threads\": {}, \"seconds\": {:.6f}, "
                    "\"connections_established\": {}, "
                    "\"connect_failures\": {}, \"connection_errors\": {}, \"messages\": {}, "
                    "\"bytes\": {}, \"messages_per_second\": {:.1f}, \"latency_p50_ns\": {}, "
                    "\"latency_p90_ns\": {}, \"latency_p99_ns\": {}, \"latency_p999_ns\": {}, "
                    "\"latency_max_ns\": {}, \"latency_mean_ns\": {:.1f}, ",
                    o.server, o.connections, o.size, o.depth, o.rate, o.churn, r.threads.size(),
                    r.seconds, r.connections_established, r.connect_failures, r.connection_errors,
                    r.messages, r.bytes, r.messages_per_second(), h.percentile(50),
                    h.percentile(90), h.percentile(99), h.percentile(99.9), h.max(), h.mean());
    json += fmt::format(
        "\"latency_from_send_p50_ns\": {}, \"latency_from_send_p99_ns\": {}, "
        "\"latency_from_send_p999_ns\": {}, \"send_lag_p50_ns\": {}, \"send_lag_p99_ns\": {}, "
        "\"send_lag_max_ns\": {}, \"late_sends\": {}, \"late_after_ns\": {}, ",
        from_send.percentile(50), from_send.percentile(99), from_send.percentile(99.9),
        lag.percentile(50), lag.percentile(99), lag.max(), r.late_sends, o.late_after.count());
    json +=
        fmt::format("\"client_cpu_ns_per_message\": {:.1f}, \"client_cores\": {:.4f}, "
                    "\"client_busy\": {:.4f}, \"client_busy_per_thread\": [{}], "
                    "\"client_runqueue_wait\": {:.4f}",
                    double(r.client_cpu_ns) / std::max(1.0, double(r.messages)), r.client_cores(),
                    r.client_busy(), busy_per_thread(r, ", "), runqueue_wait(r));
    if (r.server) {
        const double messages = r.messages > 0 ? double(r.messages) : 1.0;
        json += fmt::format(
            ", \"server_user_ns_per_message\": {:.1f}, \"server_system_ns_per_message\": {:.1f}, "
            "\"server_cpu_ns_per_message\": {:.1f}, \"server_rss_start_kib\": {}, "
            "\"server_rss_end_kib\": {}",
            double(r.server->user_ns) / messages, double(r.server->system_ns) / messages,
            double(r.server->user_ns + r.server->system_ns) / messages, r.server->rss_start_kib,
            r.server->rss_end_kib);
        if (r.server->process_ns > 0) {
            json += fmt::format(", \"server_process_ns_per_message\": {:.1f}",
                                double(r.server->process_ns) / messages);
        }
        if (const auto& core = r.server->core) {
            json += fmt::format(
                ", \"server_core\": {}, \"server_core_user_ns_per_message\": {:.1f}, "
                "\"server_core_system_ns_per_message\": {:.1f}, "
                "\"server_core_irq_ns_per_message\": {:.1f}, "
                "\"server_core_softirq_ns_per_message\": {:.1f}, "
                "\"server_core_steal_ns_per_message\": {:.1f}, \"server_core_busy\": {:.4f}",
                core->cpu, double(core->user_ns) / messages, double(core->system_ns) / messages,
                double(core->irq_ns) / messages, double(core->softirq_ns) / messages,
                double(core->steal_ns) / messages,
                core->total_ns() > 0 ? double(core->busy_ns()) / double(core->total_ns()) : 0.0);
        }
    }
    if (r.sockstat_start && r.sockstat_end) {
        const tcp_sockstat& a = *r.sockstat_start;
        const tcp_sockstat& b = *r.sockstat_end;
        json += fmt::format(", \"tcp_inuse_start\": {}, \"tcp_inuse_end\": {}, "
                            "\"tcp_orphan_start\": {}, \"tcp_orphan_end\": {}, "
                            "\"tcp_time_wait_start\": {}, \"tcp_time_wait_end\": {}, "
                            "\"tcp_mem_pages_start\": {}, \"tcp_mem_pages_end\": {}",
                            a.inuse, b.inuse, a.orphan, b.orphan, a.time_wait, b.time_wait,
                            a.mem_pages, b.mem_pages);
    }
    json += "}";
    return json;
}

int bench_main(int argc, char** argv) {
    const program_info program{"ucoro-bench", usage};
    CLI::App app{"Load generator for TCP echo servers, built on ucoro. Every echoed byte is "
                 "checked against what its connection sent.",
                 "ucoro-bench"};
    std::string host;
    std::string port;
    load_options o;
    double duration = 5;
    double warmup = 1;
    pid_t server_pid = 0;
    bool json = false;
    app.add_option("HOST", host, "numeric IPv4 or IPv6 address of the echo server")->required();
    app.add_option("PORT", port, "its port")->required();
    app.add_option("-c,--connections", o.connections, "concurrent connections")
        ->capture_default_str()
        ->check(CLI::Range(1u, 100000u));
    app.add_option("-s,--size", o.size, "bytes per message")
        ->capture_default_str()
        ->check(CLI::Range(std::size_t{1}, std::size_t{16} << 20));
    app.add_option("-d,--depth", o.depth, "messages in flight per connection (closed loop)")
        ->capture_default_str()
        ->check(CLI::Range(1u, 4096u));
    app.add_option("--duration", duration, "seconds measured")
        ->capture_default_str()
        ->check(CLI::Range(0.001, 86400.0));
    app.add_option("--warmup", warmup, "seconds run before measuring")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 3600.0));
    app.add_option("--rate", o.rate,
                   "fixed total messages per second (open loop, paced by one timer per thread; "
                   "latency from each message's due time, and from its actual send); 0: "
                   "closed loop")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1e9));
    double late_after_us = 500;
    app.add_option("--late-after", late_after_us,
                   "open loop: a message sent more than this many microseconds after its due "
                   "time counts as late (the generator fell behind; reported, never hidden)")
        ->capture_default_str()
        ->check(CLI::Range(1.0, 1e9));
    app.add_option("-t,--threads", o.threads,
                   "load threads, each with its own io_uring and a share of the connections "
                   "and of the rate; results merged")
        ->capture_default_str()
        ->check(CLI::Range(1u, 256u));
    app.add_option("--messages", o.messages_per_connection,
                   "echoes per connection, then stay connected and idle; the run ends when all "
                   "are done (for server memory per connection)");
    app.add_flag("--churn", o.churn,
                 "connection churn: each connection connects, echoes one message, closes and "
                 "starts over; a message is a whole connection (msg/s are connections/s), "
                 "latency from the connect to the server's close; closed loop only");
    app.add_option("--server-pid", server_pid,
                   "read this server's CPU time and RSS from /proc over the measured interval")
        ->check(CLI::PositiveNumber);
    app.add_flag("--json", json, "print the result as one JSON object instead of the table");
    app.set_version_flag("--version", version_line("ucoro-bench"));
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        fmt::print("{}", app.help());
        return 0;
    } catch (const CLI::CallForVersion& e) {
        fmt::print("{}\n", e.what());
        return 0;
    } catch (const CLI::ParseError& e) {
        return usage_error(program, e.what());
    }
    int exit_code = 0;
    const auto server = parse_host_port(program, host, port, exit_code);
    if (!server) {
        return exit_code;
    }
    if (o.churn && (o.rate > 0 || o.depth != 1 || o.messages_per_connection != 0)) {
        return usage_error(program, "--churn sends one message per connection: it takes no "
                                    "--rate, --depth or --messages");
    }
    o.server = *server;
    o.duration = seconds(duration);
    o.warmup = seconds(warmup);
    o.late_after = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double, std::micro>(late_after_us));
    if (server_pid != 0) {
        if (!std::filesystem::exists(fmt::format("/proc/{}/stat", server_pid))) {
            return usage_error(program,
                               fmt::format("--server-pid {}: no such process", server_pid));
        }
        o.server_pid = server_pid;
    }
    progress_line line;
    if (!json && ::isatty(STDERR_FILENO) == 1) {
        o.on_progress = print_progress;
        o.progress_data = &line;
    }

    raise_open_file_limit();
    const auto context = open_context(program);
    if (!context) {
        return exit_failure;
    }
    const load_report report = run_load(*context, o);
    if (o.on_progress != nullptr) {
        fmt::print(stderr, "\n");
    }
    if (!report.mismatch.empty()) {
        fmt::print(stderr, "{}: wrong echo: {}\n", program.name, report.mismatch);
        return exit_failure;
    }
    if (report.connections_established == 0) {
        fmt::print(stderr, "{}: all {} connections failed ({})\n", program.name, o.connections,
                   report.first_error);
        return exit_failure;
    }
    if (json) {
        fmt::print("{}\n", to_json(o, report));
    } else {
        print_summary(o, report);
    }
    if (!report.first_error.empty()) {
        fmt::print(stderr, "{}: {} connect failures, {} connection errors; first: {}\n",
                   program.name, report.connect_failures, report.connection_errors,
                   report.first_error);
    }
    return 0;
}

} // namespace ucoro::apps
