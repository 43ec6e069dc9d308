#include "echo_server_options.hpp"

#include <chrono>
#include <cstddef>
#include <string_view>

#include <sys/utsname.h>

#include <fmt/core.h>

#include "ucoro/thread_group.hpp"

namespace ucoro::apps {

namespace {

constexpr std::string_view usage =
    "usage: ucoro-echo-server [-q] [-v] [--simple] [--disable FEATURE[,FEATURE...]] "
    "[--idle-timeout SECONDS] [--send-timeout SECONDS] [--max-connections N] "
    "[--drain-timeout SECONDS] [--batch-wait MICROSECONDS] [--metrics HOST:PORT] "
    "[--threads N] {HOST PORT | unix:PATH}";

// The drain's default: long enough for echoes in flight, short enough for a service manager.
constexpr std::chrono::milliseconds default_drain_timeout{5000};

// On by default: a peer that stops reading holds its share of the receive ring and a send
// the kernel cannot cancel (docs/cancellation.md), so the server resets it rather than
// keep both for ever. 10 s is far beyond any healthy reader's pause on a LAN or the
// internet (TCP itself retransmits for minutes, but a reader that has not taken one echo
// in 10 s is not keeping up), and short enough that such peers do not accumulate.
constexpr std::chrono::milliseconds default_send_timeout{10'000};

// How long a sleeping loop waits for a batch of completions before it takes fewer
// (io_context_options::batch_wait); the batch is one completion per live connection, at
// most 16 (server_controls::connection_opened), since a batch that cannot fill costs the
// whole window. Off by default: the paired runs of docs/benchmarks.md ("The batch wait's
// default") found 200 us a trade, less CPU per message for a higher p50 and p99, and no
// peer makes a message wait for company; an operator who wants the CPU asks for it.
constexpr std::chrono::microseconds default_batch_wait{0};
constexpr std::chrono::microseconds max_batch_wait{1'000'000};
// A bound that catches a typo (--threads 10000) before it starts that many rings.
constexpr std::size_t max_threads = 1024;

// The optional kernel features and fast-path techniques --disable can force off, so that
// each fallback runs (and is tested) on a kernel that has them all.
constexpr std::string_view disable_features =
    "multishot-accept, multishot-recv, recv-limit, buffer-rings, register-ring-fd, gather-send, "
    "batch-wait";

// Applies one comma-separated --disable list; false on a name it does not know.
bool apply_disable_list(std::string_view list, io_context_options& options, bool& gather_send,
                        bool& batch_wait, std::string_view& bad) {
    while (true) {
        const std::size_t comma = list.find(',');
        const std::string_view name = list.substr(0, comma);
        if (name == "multishot-accept") {
            options.multishot_accept = false;
        } else if (name == "multishot-recv") {
            options.multishot_recv = false;
        } else if (name == "recv-limit") {
            options.recv_limit = false;
        } else if (name == "buffer-rings") {
            options.buffer_rings = false;
        } else if (name == "register-ring-fd") {
            options.register_ring_fd = false;
        } else if (name == "gather-send") {
            gather_send = false;
        } else if (name == "batch-wait") {
            batch_wait = false;
        } else {
            bad = name;
            return false;
        }
        if (comma == std::string_view::npos) {
            return true;
        }
        list.remove_prefix(comma + 1);
    }
}

// --version; under -v also the kernel and the io_uring features the server would use with
// these options, as a ring set up here finds them. Exits 1 if no ring can be set up.
int print_version(const program_info& program, bool verbose, const io_context_options& options) {
    fmt::print("{}\n", version_line(program.name));
    if (!verbose) {
        return 0;
    }
    utsname kernel{};
    if (::uname(&kernel) == 0) {
        fmt::print("kernel: {} {}\n", kernel.sysname, kernel.release);
    }
    const auto context = open_context(program, options); // says why on failure
    if (!context) {
        return exit_failure;
    }
    const auto on = [](bool feature) { return feature ? "on" : "off"; };
    const auto& features = context->features();
    fmt::print("io_uring features: multishot accept {}, buffer rings {}, multishot receive {}, "
               "registered ring fd {}, send waitall {}, batch wait {}, receive bundle {}, "
               "receive limit {}\n",
               on(features.multishot_accept), on(features.buffer_rings),
               on(features.multishot_recv), on(features.registered_ring_fd),
               on(features.send_waitall), on(features.batch_wait), on(features.recv_bundle),
               on(features.recv_limit));
    return 0;
}

} // namespace

const program_info echo_server_program{"ucoro-echo-server", usage};

std::optional<echo_server_options> parse_echo_server_options(int argc, char** argv,
                                                             int& exit_code) {
    const program_info& program = echo_server_program;
    // --help, --version and a mistake end the program here, with this code.
    const auto exit_with = [&exit_code](int code) {
        exit_code = code;
        return std::nullopt;
    };
    bool quiet = false;
    bool verbose = false;
    bool version = false;
    bool simple = false;
    std::chrono::milliseconds idle_timeout{0};
    std::chrono::milliseconds send_timeout = default_send_timeout;
    std::chrono::milliseconds drain_timeout = default_drain_timeout;
    std::size_t max_connections = 0;
    std::size_t threads = 0; // 0: one per CPU this process may use
    io_context_options options;
    options.batch_wait = default_batch_wait;
    bool batch_wait = true; // --disable batch-wait, whatever --batch-wait says
    bool gather_send = true;
    std::string_view metrics_endpoint; // --metrics HOST:PORT, empty when off
    std::string_view positional[2];
    int count = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            fmt::print("{}\n"
                       "Echoes back everything each client sends, on any number of concurrent\n"
                       "connections, until the client closes. Ctrl+C or SIGTERM stops it.\n"
                       "HOST PORT is a numeric IPv4 or IPv6 address and a port; in their place,\n"
                       "unix:PATH (or a PATH starting with /) listens on a Unix-domain stream\n"
                       "socket file, removed at exit (a stale one left by a server that is gone\n"
                       "is replaced), and @NAME (or unix:@NAME) on an abstract one.\n"
                       "  -q        do not print a line per connection\n"
                       "  -v        say which receive path is used; print loop counters at exit\n"
                       "  --version print the version and the git commit, and exit; with -v\n"
                       "            also the kernel's io_uring features in use\n"
                       "  --simple  receive with recv into each connection's own buffer instead\n"
                       "            of a multishot receive into a shared buffer ring\n"
                       "  --disable FEATURE[,FEATURE...]\n"
                       "            force features off, to run their fallbacks: {}\n"
                       "  --idle-timeout SECONDS\n"
                       "            close a connection that sends nothing for that long; 0 or\n"
                       "            off: never (default: off)\n"
                       "  --send-timeout SECONDS\n"
                       "            close (reset) a connection whose peer has not read an echo\n"
                       "            for that long, so that a peer that never reads cannot hold\n"
                       "            buffers and a send for ever; 0 or off: never (default: {})\n"
                       "  --max-connections N\n"
                       "            serve at most N connections at once; more wait in the\n"
                       "            kernel's backlog until one closes (default: no limit)\n"
                       "  --drain-timeout SECONDS\n"
                       "            on Ctrl+C or SIGTERM, stop accepting and give connections\n"
                       "            this long to finish echoing what they received; a second\n"
                       "            signal closes them at once (default: {})\n"
                       "  --batch-wait MICROSECONDS\n"
                       "            when idle, sleep until a batch of completions is in (one\n"
                       "            per live connection, at most 16) or this long has passed:\n"
                       "            less CPU per message under light load, at up to this much\n"
                       "            latency; 0 wakes at the first (default: {}; needs Linux\n"
                       "            6.12, ignored before)\n"
                       "  --metrics HOST:PORT\n"
                       "            serve the counters at http://HOST:PORT/metrics in Prometheus'\n"
                       "            text format ([::1]:PORT for IPv6; port 0 picks a free one)\n"
                       "  --threads N\n"
                       "            accept and echo on N threads, each with its own io_uring,\n"
                       "            buffer ring and listening socket (SO_REUSEPORT: the kernel\n"
                       "            spreads connections over them); --max-connections counts\n"
                       "            them all (default: one per CPU this process may run on,\n"
                       "            {} here, as sched_getaffinity reports, so taskset and\n"
                       "            container limits are honoured; 1 is the single-threaded\n"
                       "            server)\n"
                       "SECONDS is a positive number, fractions allowed (0.5), at most 86400.\n"
                       "example: ucoro-echo-server --idle-timeout 30 127.0.0.1 65432\n"
                       "         ucoro-echo-server unix:/run/ucoro-echo.sock\n",
                       usage, disable_features, default_send_timeout.count() / 1000.0,
                       default_drain_timeout.count() / 1000.0, default_batch_wait.count(),
                       thread_group::available_cpus());
            return exit_with(0);
        }
        if (arg == "-q" || arg == "--quiet") {
            quiet = true;
        } else if (arg == "-v" || arg == "--verbose") {
            verbose = true;
        } else if (arg == "--version") {
            version = true; // after the loop, so that -v and --disable apply wherever they are
        } else if (arg == "--simple") {
            simple = true;
        } else if (arg == "--idle-timeout" || arg == "--send-timeout" || arg == "--drain-timeout" ||
                   arg == "--max-connections" || arg == "--threads") {
            if (i + 1 >= argc) {
                return exit_with(usage_error(program, fmt::format("{} needs a value", arg)));
            }
            const std::string_view value = argv[++i];
            if (arg == "--threads") {
                const auto count_of_threads = parse_count(value);
                if (!count_of_threads || *count_of_threads > max_threads) {
                    return exit_with(usage_error(
                        program, fmt::format("--threads must be a whole number from 1 to {}, "
                                             "not '{}'",
                                             max_threads, value)));
                }
                threads = *count_of_threads;
                continue;
            }
            if (arg == "--max-connections") {
                const auto limit = parse_count(value);
                if (!limit) {
                    return exit_with(usage_error(
                        program,
                        fmt::format("{} must be a whole number from 1 to 10000000, not '{}'", arg,
                                    value)));
                }
                max_connections = *limit;
                continue;
            }
            const bool zero =
                !value.empty() && value.find_first_not_of('0') == std::string_view::npos;
            if (arg != "--drain-timeout" && (value == "off" || zero)) {
                (arg == "--idle-timeout" ? idle_timeout : send_timeout) =
                    std::chrono::milliseconds{0};
                continue;
            }
            const auto seconds = parse_seconds(value);
            if (!seconds) {
                return exit_with(usage_error(
                    program,
                    fmt::format("{} must be a number of seconds above 0 and at most 86400, not "
                                "'{}'",
                                arg, value)));
            }
            (arg == "--idle-timeout"   ? idle_timeout
             : arg == "--send-timeout" ? send_timeout
                                       : drain_timeout) = *seconds;
        } else if (arg == "--batch-wait") {
            const std::string_view value = i + 1 < argc ? argv[++i] : std::string_view{};
            const bool zero =
                !value.empty() && value.find_first_not_of('0') == std::string_view::npos;
            const auto micros = zero ? std::optional<std::size_t>(0) : parse_count(value);
            if (!micros || *micros > static_cast<std::size_t>(max_batch_wait.count())) {
                return exit_with(
                    usage_error(program, fmt::format("--batch-wait must be a whole number of "
                                                     "microseconds from 0 to {}, not '{}'",
                                                     max_batch_wait.count(), value)));
            }
            options.batch_wait = std::chrono::microseconds(*micros);
        } else if (arg == "--metrics") {
            if (i + 1 >= argc) {
                return exit_with(usage_error(program, "--metrics needs HOST:PORT"));
            }
            metrics_endpoint = argv[++i];
        } else if (arg == "--disable") {
            std::string_view bad;
            if (i + 1 >= argc) {
                return exit_with(usage_error(
                    program, fmt::format("--disable needs one of: {}", disable_features)));
            }
            if (!apply_disable_list(argv[++i], options, gather_send, batch_wait, bad)) {
                return exit_with(
                    usage_error(program, fmt::format("unknown feature '{}' for --disable "
                                                     "(known: {})",
                                                     bad, disable_features)));
            }
        } else if (arg.size() > 1 && arg[0] == '-') {
            return exit_with(usage_error(program, fmt::format("unknown option '{}'", arg)));
        } else if (count < 2) { // HOST PORT, or one Unix socket name
            positional[count++] = arg;
        } else {
            return exit_with(usage_error(program, fmt::format("unexpected argument '{}'", arg)));
        }
    }
    if (!batch_wait) {
        options.batch_wait = std::chrono::microseconds{0};
    }
    if (version) {
        return exit_with(print_version(program, verbose, options));
    }
    const bool unix_socket = count > 0 && names_unix_socket(positional[0]);
    if (count != (unix_socket ? 1 : 2)) {
        return exit_with(usage_error(program));
    }
    const auto local = unix_socket
                           ? parse_unix_socket(program, positional[0], exit_code)
                           : parse_host_port(program, positional[0], positional[1], exit_code);
    if (!local) {
        return std::nullopt;
    }
    std::optional<net::address> metrics_local;
    if (!metrics_endpoint.empty()) {
        metrics_local = parse_endpoint(program, "--metrics", metrics_endpoint, exit_code);
        if (!metrics_local) {
            return std::nullopt;
        }
    }
    echo_server_options parsed;
    parsed.quiet = quiet;
    parsed.verbose = verbose;
    parsed.simple = simple;
    parsed.gather_send = gather_send;
    parsed.idle_timeout = idle_timeout;
    parsed.send_timeout = send_timeout;
    parsed.drain_timeout = drain_timeout;
    parsed.max_connections = max_connections;
    // SO_REUSEPORT spreads TCP connections only: a unix socket's path binds once, so it is
    // served by one thread.
    if (local->is_unix() && threads > 1) {
        return exit_with(usage_error(program, "--threads above 1 needs HOST PORT: a unix socket "
                                              "is served by one thread"));
    }
    parsed.threads = local->is_unix() ? 1U
                     : threads != 0   ? static_cast<unsigned>(threads)
                                      : thread_group::available_cpus();
    parsed.loop = options;
    parsed.local = *local;
    parsed.metrics_local = metrics_local;
    return parsed;
}

} // namespace ucoro::apps
