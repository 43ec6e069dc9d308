#include "echo_server.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <sys/uio.h>
#include <sys/utsname.h>

#include <fmt/core.h>

#include <sys/socket.h>

#include "command_line.hpp"
#include "gather_send.hpp"
#include "server_metrics.hpp"
#include "ucoro/signal_set.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/when_any.hpp"

namespace ucoro::apps {

namespace {

constexpr std::string_view usage =
    "usage: ucoro-echo-server [-q] [-v] [--simple] [--disable FEATURE[,FEATURE...]] "
    "[--idle-timeout SECONDS] [--send-timeout SECONDS] [--max-connections N] "
    "[--drain-timeout SECONDS] [--batch-wait MICROSECONDS] [--metrics HOST:PORT] HOST PORT";

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
// whole window. Measured in docs/fast-path-experiments.md, section 7: at 40k msg/s over 100
// connections, 200 us cut the server's CPU per message by up to a sixth against waking at
// the first completion, where 50 us gained nothing; under saturation a batch is there at
// once.
constexpr std::chrono::microseconds default_batch_wait{200};
constexpr std::chrono::microseconds max_batch_wait{1'000'000};

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

bool is_canceled(const std::error_code& error) {
    return error == std::errc::operation_canceled;
}

// accept(2) errors that concern one connection, not the listener: skip and go on.
bool is_transient_accept_error(const std::error_code& error) {
    return error == std::errc::connection_aborted || error == std::errc::protocol_error ||
           error == std::errc::operation_not_permitted || error == std::errc::interrupted ||
           error == std::errc::network_down || error == std::errc::network_unreachable ||
           error == std::errc::host_unreachable;
}

// Out of descriptors or memory: the listener is fine, but accepting again at once would
// fail again at once. Back off instead of spinning.
bool is_resource_accept_error(const std::error_code& error) {
    return error == std::errc::too_many_files_open ||
           error == std::errc::too_many_files_open_in_system ||
           error == std::errc::no_buffer_space || error == std::errc::not_enough_memory;
}

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

const char* signal_name(int signal_number) {
    return signal_number == SIGINT ? "SIGINT" : "SIGTERM";
}

task<std::error_code> sleep_task(io_context& context, std::chrono::milliseconds duration) {
    co_return co_await sleep_for(context, duration);
}

task<io_result<int>> signal_task(signal_set& signals) {
    co_return co_await signals.wait();
}

// Every stop that may leave connections open goes through here. shutdown(2) first: it ends
// every send stuck on a peer that never reads, which stop() alone cannot (once the kernel
// has handed the send to an io-wq worker, its cancel says ENOENT; docs/cancellation.md), so
// the loop would wait for that send forever. stop() then cancels the rest. Without
// controls there is no list of connections to shut down.
void stop_serving(io_context& context, server_controls* controls) noexcept {
    if (controls != nullptr && controls->deadlines != nullptr) {
        controls->deadlines->shut_down_all();
    }
    context.stop();
}

// The first signal drains: accept no more, half-close every connection's receive side so
// each echoes what it already received, sees end of stream and closes. The last one to
// close stops the loop (server_controls::connection_closed). What is still open after the
// drain timeout, or at a second signal, is shut down and cancelled by stop().
task<void> watch_signals(io_context& context, signal_set& signals, net::listener& listener,
                         server_controls& controls, std::chrono::milliseconds drain_timeout) {
    auto [error, signal_number] = co_await signals.wait();
    if (error) {
        stop_serving(context, &controls);
        co_return;
    }
    const std::size_t live = controls.live;
    fmt::print("caught {}, draining {} connection{} (up to {} ms; again to stop at once)\n",
               signal_name(signal_number), live, live == 1 ? "" : "s", drain_timeout.count());
    controls.draining = true;
    try {
        listener.cancel(); // ends the armed accept; the loop sees draining and stops
    } catch (const std::system_error& e) {
        // The ring cannot take the cancel (io_uring_enter failed flushing a full SQ). Going
        // on without it would leave the accept armed; letting the exception out would leave
        // the signals blocked with nobody reading them, so no signal could stop us. Stop now.
        fmt::print(stderr, "ucoro-echo-server: cannot start the drain ({}); stopping now\n",
                   e.what());
        stop_serving(context, &controls);
        co_return;
    }
    controls.wake_accept_loop();
    controls.deadlines->shut_down_receives();
    if (live == 0) {
        context.stop(); // no connection, so no send that only a shutdown could end
        co_return;
    }
    auto outcome = co_await when_any(sleep_task(context, drain_timeout), signal_task(signals));
    if (context.stop_requested()) {
        co_return; // every connection closed in time
    }
    if (outcome.index == 1) {
        fmt::print("caught a second signal, closing connections now\n");
    } else {
        fmt::print("drain timeout: closing the {} remaining connection{}\n", controls.live,
                   controls.live == 1 ? "" : "s");
    }
    // Each connection then unwinds and closes its socket.
    stop_serving(context, &controls);
}

// The deadlines' bookkeeping around each echo (connection_deadlines.hpp): one store each.
void note_sending(connection_deadlines::entry* deadline) noexcept {
    if (deadline != nullptr) {
        deadline->sending();
    }
}
void note_sent(connection_deadlines::entry* deadline) noexcept {
    if (deadline != nullptr) {
        deadline->sent();
    }
}

// The teaching path: recv into a buffer in this coroutine's frame, send_all it back.
task<std::error_code> echo_simple(net::socket& connection, echo_server_stats& stats,
                                  connection_deadlines::entry* deadline) {
    // The lesson reads 1 KiB at a time; a larger buffer means fewer round trips through
    // the ring for large messages. It lives in this coroutine's frame.
    std::array<std::byte, 16 * 1024> buffer;
    while (true) {
        auto [recv_error, received] = co_await connection.recv(buffer);
        if (recv_error || received == 0) {
            co_return recv_error; // received == 0: the peer closed its side
        }
        ++stats.messages_in;
        stats.bytes_in += received;
        // send() may take less than asked; send_all() resubmits until every byte is out.
        note_sending(deadline);
        auto [send_error, sent] = co_await connection.send_all(std::span(buffer).first(received));
        note_sent(deadline);
        ++stats.messages_out;
        stats.bytes_out += sent;
        if (send_error) {
            co_return send_error;
        }
    }
}

// The fast path: one multishot receive into the shared ring; an idle connection holds no
// buffer. Each buffer goes back to the ring once its echo has been sent. Buffers that
// arrived while an echo was being sent wait in the stream; they go back together, in one
// gather send (one request, one completion) instead of one send each.
task<std::error_code> echo_ring(net::socket& connection, buffer_ring& ring, bool gather,
                                echo_server_stats& stats, connection_deadlines::entry* deadline) {
    auto stream = connection.recv_multishot(ring);
    while (true) {
        auto [recv_error, buffer] = co_await stream.next();
        if (recv_error || buffer.empty()) {
            co_return recv_error; // an empty buffer: the peer closed its side
        }
        const gather_lease lease(gather && stream.ready() > 0 ? this_thread_gather_pool().acquire()
                                                              : nullptr);
        if (lease.get() == nullptr) {
            ++stats.messages_in;
            stats.bytes_in += buffer.size();
            note_sending(deadline);
            auto [send_error, sent] = co_await connection.send_all(buffer.bytes());
            note_sent(deadline);
            ++stats.messages_out;
            stats.bytes_out += sent;
            if (send_error) {
                co_return send_error;
            }
            continue; // `buffer` goes back to the ring as it goes out of scope
        }
        fill_batch(*lease.get(), std::move(buffer), stream);
        stats.messages_in += lease.get()->count;
        for (std::size_t i = 0; i < lease.get()->count; ++i) {
            stats.bytes_in += lease.get()->held[i].size();
        }
        // The awaiter lives in the slot: the frame keeps only a pointer to it.
        note_sending(deadline);
        auto [send_error, sent] = co_await prepare_gather(*lease.get(), connection);
        note_sent(deadline);
        ++stats.messages_out;
        stats.bytes_out += sent;
        if (send_error) {
            co_return send_error;
        }
        if (lease.get()->ended) {
            co_return lease.get()->end_error;
        }
    }
}

} // namespace

void server_controls::wake_accept_loop() noexcept {
    if (accept_wake == nullptr) {
        return;
    }
    try {
        accept_wake->set(); // the loop resumes on the next turn, in its own frame
    } catch (...) {
        // Out of memory for io_context::post: the pause ends by itself, a little later.
    }
}

namespace {

unsigned batch_for(std::size_t live, unsigned max_batch) noexcept {
    return static_cast<unsigned>(std::min<std::size_t>(live, max_batch));
}

} // namespace

void server_controls::connection_opened() noexcept {
    ++live;
    context->set_batch_wait_events(batch_for(live, max_batch));
}

void server_controls::connection_closed() noexcept {
    --live;
    context->set_batch_wait_events(batch_for(live, max_batch));
    if (draining && live == 0) {
        context->stop(); // the drain is complete
        return;
    }
    wake_accept_loop();
}

task<void> echo_connection(net::socket connection, bool quiet, echo_server_stats& stats,
                           buffer_ring* ring, server_controls* controls) {
    // A connection is counted from its accept until connection_closed(), which must run
    // however the coroutine ends, or the count leaks (an exception from a print to a broken
    // stdout, or out of memory): a --max-connections server would stop accepting for good,
    // and a drain would never reach 0. A catch, not a destructor: a frame that ~io_context
    // destroys unfinished must not call into controls, which may be gone by then. Not a
    // wrapper coroutine either: that would be one more frame per idle connection.
    try {
        const net::address peer = connection.peer_address();
        if (!quiet) {
            fmt::print("accepted connection from {}\n", peer);
        }
        std::error_code failure;
        {
            std::optional<connection_deadlines::entry> deadline;
            if (controls != nullptr) {
                deadline.emplace(*controls->deadlines, connection.native_handle());
                if (controls->draining) {
                    // Accepted before the drain began, started after it shut the others down.
                    (void)::shutdown(connection.native_handle(), SHUT_RD);
                }
            }
            connection_deadlines::entry* const timed = deadline ? &*deadline : nullptr;
            // Not a ?: of two co_awaits: GCC 12 miscompiles that in an assignment.
            if (ring != nullptr) {
                failure = co_await echo_ring(
                    connection, *ring, controls == nullptr || controls->gather_send, stats, timed);
            } else {
                failure = co_await echo_simple(connection, stats, timed);
            }
            if (timed != nullptr) {
                timed->closing();
            }
            (void)co_await connection.close();
        }
        ++stats.closed;
        if (!quiet) {
            if (failure && !is_canceled(failure)) {
                fmt::print("closing connection to {} ({})\n", peer, failure.message());
            } else {
                fmt::print("closing connection to {}\n", peer);
            }
        }
    } catch (...) {
        if (controls != nullptr) {
            controls->connection_closed();
        }
        throw; // to the context's unhandled-exception handler, as before
    }
    if (controls != nullptr) {
        controls->connection_closed(); // after the line: the next "accepted" comes after it
    }
}

namespace {

task<std::error_code> wait_for(async_event& event) {
    co_return co_await event.wait();
}

// Waits until the accept loop is woken (server_controls::wake_accept_loop: a connection
// closed, or a drain began) or `longest` passes, whichever is first; the other wait is
// cancelled. Without the event, just sleeps.
task<void> pause_accepting(io_context& context, server_controls* controls,
                           std::chrono::milliseconds longest) {
    if (controls == nullptr || controls->accept_wake == nullptr) {
        (void)co_await sleep_for(context, longest);
        co_return;
    }
    (void)co_await when_any(wait_for(*controls->accept_wake), sleep_task(context, longest));
}

task<void> accept_loop(io_context& context, net::listener& listener, bool quiet,
                       echo_server_stats& stats, buffer_ring* ring, server_controls* controls) {
    // One multishot request accepts connection after connection (one plain accept each on
    // kernels before 5.19); an error ends it, and the next next() arms a new one.
    auto connections = listener.accept_multishot();
    // With --max-connections, one plain accept at a time, armed only below the limit: a
    // multishot accept takes every connection waiting in the backlog at once, so it could
    // not stop at the limit, and the surplus would hold descriptors in this process
    // instead of waiting in the kernel's backlog.
    const std::size_t limit = controls != nullptr ? controls->max_connections : 0;
    bool backing_off = false;
    bool at_limit = false;
    while (!context.stop_requested() && (controls == nullptr || !controls->draining)) {
        if (controls != nullptr && controls->accept_wake != nullptr) {
            // Lowered before we look (at the limit, at an accept's error), so that a
            // connection closing from here on, even before a pause begins, ends that pause.
            controls->accept_wake->reset();
        }
        if (limit != 0 && controls->live >= limit) {
            if (!at_limit && !quiet) {
                fmt::print("{} connections: not accepting until one closes\n", limit);
            }
            at_limit = true;
            // The timeout is a safety net; a closing connection ends the pause.
            co_await pause_accepting(context, controls, std::chrono::seconds(1));
            continue;
        }
        at_limit = false;
        io_result<net::socket> accepted;
        if (limit != 0) {
            accepted = co_await listener.accept();
        } else {
            accepted = co_await connections.next();
        }
        auto& [error, connection] = accepted;
        if (!error) {
            if (backing_off) {
                // Ends the episode, so that the log pairs every pause with its end.
                fmt::print(stderr, "ucoro-echo-server: accepting new connections again\n");
                backing_off = false;
            }
            ++stats.accepted;
            if (controls != nullptr) {
                controls->connection_opened();
            }
            connection.set_no_delay(); // echo replies are small and should leave at once
            try {
                context.spawn(echo_connection(std::move(connection), quiet, stats, ring, controls));
            } catch (...) {
                // Never started (out of memory for the frame): it will not count itself out.
                if (controls != nullptr) {
                    controls->connection_closed();
                }
                throw;
            }
            continue;
        }
        if (is_canceled(error)) {
            break; // the context stops, or a drain began
        }
        if (is_transient_accept_error(error)) {
            continue;
        }
        if (is_resource_accept_error(error)) {
            // One line per episode: the episode ends at the next successful accept.
            if (!backing_off) {
                fmt::print(stderr,
                           "ucoro-echo-server: accept: {}; pausing new connections until one "
                           "closes (raise the limit with 'ulimit -n')\n",
                           error.message());
                backing_off = true;
                ++stats.accept_pauses;
            }
            // Retrying at once would fail at once: wait for a connection to close and free
            // a descriptor, or 100 ms for one freed elsewhere. The multishot accept ended
            // with the error; next() arms a new one.
            co_await pause_accepting(context, controls, std::chrono::milliseconds(100));
            continue;
        }
        fmt::print(stderr, "ucoro-echo-server: accept on {} failed: {}\n", listener.local_address(),
                   error.message());
        stats.failed = true;
        stop_serving(context, controls);
        break;
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

task<void> accept_connections(io_context& context, net::listener& listener, bool quiet,
                              echo_server_stats& stats, buffer_ring* ring,
                              server_controls* controls) {
    try {
        co_await accept_loop(context, listener, quiet, stats, ring, controls);
    } catch (const std::exception& e) {
        // Without its accept loop the server would sit there serving nobody and later exit
        // 0: a failure of the loop itself (the ring broke, out of memory) ends the server.
        fmt::print(stderr, "ucoro-echo-server: the accept loop failed: {}; stopping\n", e.what());
        stats.failed = true;
        stop_serving(context, controls);
    }
}

int echo_server_main(int argc, char** argv) {
    const program_info program{"ucoro-echo-server", usage};
    bool quiet = false;
    bool verbose = false;
    bool version = false;
    bool simple = false;
    std::chrono::milliseconds idle_timeout{0};
    std::chrono::milliseconds send_timeout = default_send_timeout;
    std::chrono::milliseconds drain_timeout = default_drain_timeout;
    std::size_t max_connections = 0;
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
                       "SECONDS is a positive number, fractions allowed (0.5), at most 86400.\n"
                       "example: ucoro-echo-server --idle-timeout 30 127.0.0.1 65432\n",
                       usage, disable_features, default_send_timeout.count() / 1000.0,
                       default_drain_timeout.count() / 1000.0, default_batch_wait.count());
            return 0;
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
                   arg == "--max-connections") {
            if (i + 1 >= argc) {
                return usage_error(program, fmt::format("{} needs a value", arg));
            }
            const std::string_view value = argv[++i];
            if (arg == "--max-connections") {
                const auto limit = parse_count(value);
                if (!limit) {
                    return usage_error(
                        program,
                        fmt::format("{} must be a whole number from 1 to 10000000, not '{}'", arg,
                                    value));
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
                return usage_error(
                    program,
                    fmt::format("{} must be a number of seconds above 0 and at most 86400, not "
                                "'{}'",
                                arg, value));
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
                return usage_error(program, fmt::format("--batch-wait must be a whole number of "
                                                        "microseconds from 0 to {}, not '{}'",
                                                        max_batch_wait.count(), value));
            }
            options.batch_wait = std::chrono::microseconds(*micros);
        } else if (arg == "--metrics") {
            if (i + 1 >= argc) {
                return usage_error(program, "--metrics needs HOST:PORT");
            }
            metrics_endpoint = argv[++i];
        } else if (arg == "--disable") {
            std::string_view bad;
            if (i + 1 >= argc) {
                return usage_error(program,
                                   fmt::format("--disable needs one of: {}", disable_features));
            }
            if (!apply_disable_list(argv[++i], options, gather_send, batch_wait, bad)) {
                return usage_error(program, fmt::format("unknown feature '{}' for --disable "
                                                        "(known: {})",
                                                        bad, disable_features));
            }
        } else if (arg.size() > 1 && arg[0] == '-') {
            return usage_error(program, fmt::format("unknown option '{}'", arg));
        } else if (count < 2) {
            positional[count++] = arg;
        } else {
            return usage_error(program, fmt::format("unexpected argument '{}'", arg));
        }
    }
    if (!batch_wait) {
        options.batch_wait = std::chrono::microseconds{0};
    }
    if (version) {
        return print_version(program, verbose, options);
    }
    if (count != 2) {
        return usage_error(program);
    }
    int exit_code = 0;
    const auto local = parse_host_port(program, positional[0], positional[1], exit_code);
    if (!local) {
        return exit_code;
    }
    std::optional<net::address> metrics_local;
    if (!metrics_endpoint.empty()) {
        metrics_local = parse_endpoint(program, "--metrics", metrics_endpoint, exit_code);
        if (!metrics_local) {
            return exit_code;
        }
    }

    std::setvbuf(stdout, nullptr, _IOLBF, 0); // one line per event, even into a pipe
    raise_open_file_limit();
    // What the connections' frames point into is declared before the context, so that it
    // outlives the context on every path: when run() throws, ~io_context destroys the
    // unfinished connection frames, and their deadline entries must not outlive the list.
    echo_server_stats stats;
    std::optional<connection_deadlines> deadlines;
    server_controls controls;
    std::size_t scrapers = 0; // scrape connections being answered (serve_metrics)
    const auto context = open_context(program, options);
    if (!context) {
        return exit_failure;
    }
    try {
        signal_set signals(*context, {SIGINT, SIGTERM});
        std::optional<net::listener> listener;
        try {
            listener.emplace(*context, *local);
        } catch (const std::system_error& e) {
            fmt::print(stderr, "{}: cannot listen on {}: {} ({})\n", program.name, *local,
                       e.code().message(), hint_for_listen_error(e.code()));
            return exit_failure;
        }
        std::optional<net::listener> metrics_listener;
        if (metrics_local) {
            try {
                metrics_listener.emplace(*context, *metrics_local);
            } catch (const std::system_error& e) {
                fmt::print(stderr, "{}: cannot listen for --metrics on {}: {} ({})\n", program.name,
                           *metrics_local, e.code().message(), hint_for_listen_error(e.code()));
                return exit_failure;
            }
        }
        // Announced once both are bound: a port in use for --metrics exits before this.
        fmt::print("listening on {}\n", listener->local_address());
        if (metrics_listener) {
            fmt::print("metrics on {}\n", metrics_listener->local_address());
        }

        // The fast path needs provided-buffer rings (Linux 5.19); without them the server
        // runs the simple path, and says so under -v.
        std::optional<buffer_ring> ring;
        std::string path = "simple (recv into each connection's buffer, --simple)";
        if (!simple) {
            try {
                // 128 x 16 KiB rather than the library's 1024 x 4 KiB: a 16 KiB message
                // arrives in one buffer and is echoed by one send (1.7x the throughput for
                // 100 x 16 KiB, docs/fast-path-experiments.md section 3). 128 rather than
                // 256: the same throughput in every configuration of bench/run, and half the
                // 4 MiB that stays resident once every buffer has been used, which 5,000 idle
                // connections share (section 7).
                ring.emplace(*context, buffer_ring_options{.count = 128, .buffer_size = 16 * 1024});
                path = fmt::format(
                    "buffer ring ({} x {} B, {} receive, share {} buffers per connection, {})",
                    ring->count(), ring->buffer_size(),
                    context->features().multishot_recv ? "multishot" : "single-shot",
                    ring->stream_queue_limit(),
                    context->features().recv_limit ? "receive limit on"
                                                   : "receive limit off: paused by cancel");
            } catch (const std::system_error& e) {
                path = fmt::format("simple, because the buffer ring is unavailable: {}", e.what());
            }
        }
        if (verbose) {
            fmt::print("receive path: {}\n", path);
            const auto& features = context->features();
            fmt::print("features: multishot accept {}, registered ring fd {}, gather send {}, "
                       "batch wait {}\n",
                       features.multishot_accept ? "on" : "off",
                       features.registered_ring_fd ? "on" : "off",
                       ring && gather_send ? "on" : "off",
                       features.batch_wait ? fmt::format("{} us", options.batch_wait.count())
                       : options.batch_wait.count() == 0
                           ? std::string("off")
                           : std::string("off (the kernel lacks IORING_FEAT_MIN_TIMEOUT, 6.12)"));
        }

        deadlines.emplace(*context, idle_timeout, send_timeout);
        // In this block, so that it goes before the context it posts to, even when run()
        // throws with the accept loop still waiting on it.
        async_event accept_wake(*context);
        controls.context = &*context;
        controls.accept_wake = &accept_wake;
        controls.deadlines = &*deadlines;
        controls.max_connections = max_connections;
        controls.gather_send = gather_send;
        controls.max_batch = options.batch_wait_events;
        context->set_batch_wait_events(0); // no connection yet: nothing to batch
        context->spawn(watch_signals(*context, signals, *listener, controls, drain_timeout));
        context->spawn(deadlines->sweep());
        context->spawn(accept_connections(*context, *listener, quiet, stats,
                                          ring ? &*ring : nullptr, &controls));
        if (metrics_listener) {
            // On the echo's loop: a scrape costs the echo one turn of the loop, and the
            // counters need no synchronization.
            context->spawn(serve_metrics(
                *context, *metrics_listener,
                metrics_sources{&stats, &controls, &*deadlines, ring ? &*ring : nullptr}, {},
                scrapers));
        }
        context->run();
        if (verbose) {
            const auto& loop = context->stats();
            // Per enter: how well the loop batches (more SQEs and CQEs per call is cheaper).
            const double enters = loop.submit_calls > 0 ? double(loop.submit_calls) : 1.0;
            fmt::print("io_uring_enter calls: {}, SQEs: {} ({:.1f} per enter), CQEs: {} ({:.1f} "
                       "per enter), CQ overflows: {}, ENOBUFS re-arms: {}, share pauses: {}, "
                       "private receives: {}\n",
                       loop.submit_calls, loop.submissions, double(loop.submissions) / enters,
                       loop.completions, double(loop.completions) / enters, loop.cq_overflows,
                       ring ? ring->enobufs_rearms() : 0, ring ? ring->share_pauses() : 0,
                       ring ? ring->private_receives() : 0);
            fmt::print("connections: {} accepted, {} closed, {} idle timeouts, {} send "
                       "timeouts\n",
                       stats.accepted, stats.closed, deadlines->idle_expired(),
                       deadlines->send_expired());
        }
        return stats.failed ? exit_failure : 0;
    } catch (const std::system_error& e) {
        fmt::print(stderr, "{}: {}\n", program.name, e.what());
        return exit_failure;
    }
}

} // namespace ucoro::apps
