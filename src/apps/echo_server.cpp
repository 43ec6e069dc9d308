#include "echo_server.hpp"

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

#include <fmt/core.h>

#include "command_line.hpp"
#include "ucoro/signal_set.hpp"
#include "ucoro/sleep.hpp"

namespace ucoro::apps {

namespace {

constexpr std::string_view usage =
    "usage: ucoro-echo-server [-q] [-v] [--simple] [--disable FEATURE[,FEATURE...]] HOST PORT";

// The optional kernel features and fast-path techniques --disable can force off, so that
// each fallback runs (and is tested) on a kernel that has them all.
constexpr std::string_view disable_features =
    "multishot-accept, multishot-recv, buffer-rings, register-ring-fd, gather-send";

// Applies one comma-separated --disable list; false on a name it does not know.
bool apply_disable_list(std::string_view list, io_context_options& options, bool& gather_send,
                        std::string_view& bad) {
    while (true) {
        const std::size_t comma = list.find(',');
        const std::string_view name = list.substr(0, comma);
        if (name == "multishot-accept") {
            options.multishot_accept = false;
        } else if (name == "multishot-recv") {
            options.multishot_recv = false;
        } else if (name == "buffer-rings") {
            options.buffer_rings = false;
        } else if (name == "register-ring-fd") {
            options.register_ring_fd = false;
        } else if (name == "gather-send") {
            gather_send = false;
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

// Whether the fast path echoes the buffers waiting in a stream with one gather send (the
// default) or with one send each (--disable gather-send). Set once, by echo_server_main,
// before any connection starts: a program setting, not per connection.
bool g_gather_send = true;

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

task<void> watch_signals(io_context& context, signal_set& signals) {
    auto [error, signal_number] = co_await signals.wait();
    if (!error) {
        fmt::print("caught {}, closing connections\n",
                   signal_number == SIGINT ? "SIGINT" : "SIGTERM");
    }
    context.stop(); // cancels accept and every recv/send in flight; they unwind and close
}

// The teaching path: recv into a buffer in this coroutine's frame, send_all it back.
task<std::error_code> echo_simple(net::socket& connection) {
    // The lesson reads 1 KiB at a time; a larger buffer means fewer round trips through
    // the ring for large messages. It lives in this coroutine's frame.
    std::array<std::byte, 16 * 1024> buffer;
    while (true) {
        auto [recv_error, received] = co_await connection.recv(buffer);
        if (recv_error || received == 0) {
            co_return recv_error; // received == 0: the peer closed its side
        }
        // send() may take less than asked; send_all() resubmits until every byte is out.
        auto [send_error, sent] = co_await connection.send_all(std::span(buffer).first(received));
        if (send_error) {
            co_return send_error;
        }
    }
}

// What a gather send of up to 16 buffers needs while it is in flight: the buffers, their
// iovec array and the sendmsg awaiter (about 1 KiB). It is lent to a connection only for
// the time of one batch and is not in the connection's frame: kept there, it would cost
// each idle connection that 1 KiB (measured: 2.0 -> 3.1 KiB of RSS per idle connection at
// 5,000), as much as the rest of the connection.
struct gather_slot {
    // 16: the stream's default queue limit, so one batch takes all that can be waiting.
    static constexpr std::size_t capacity = 16;
    std::array<buffer_ring::buffer, capacity> held;
    std::array<iovec, capacity> pieces{};
    std::size_t count = 0;
    bool ended = false; // the stream ended after these buffers
    std::error_code end_error;
    std::optional<net::send_all_gather_operation> send;
    gather_slot* next_free = nullptr;
};

// The slots of this thread's connections. At most `limit` exist; when all are lent out a
// connection sends its buffers one by one, as without batching. Slots are made on first
// need and reused, so a steady stream allocates nothing.
class gather_pool {
public:
    static constexpr std::size_t limit = 64;

    gather_slot* acquire() {
        if (m_free == nullptr) {
            if (m_slots.size() == limit) {
                return nullptr;
            }
            m_slots.push_back(std::make_unique<gather_slot>());
            return m_slots.back().get();
        }
        return std::exchange(m_free, m_free->next_free);
    }

    // Every buffer goes back to its ring here, after the send has completed (or the
    // coroutine is destroyed, which the context does only once nothing is in flight).
    void release(gather_slot* slot) noexcept {
        slot->send.reset();
        for (std::size_t i = 0; i < slot->count; ++i) {
            slot->held[i].reset();
        }
        slot->count = 0;
        slot->ended = false;
        slot->end_error.clear();
        slot->next_free = std::exchange(m_free, slot);
    }

private:
    std::vector<std::unique_ptr<gather_slot>> m_slots;
    gather_slot* m_free = nullptr;
};

// One per thread, as the io_context.
gather_pool& this_thread_gather_pool() {
    static thread_local gather_pool pool;
    return pool;
}

// A slot lent for one batch (or none), returned however the coroutine leaves, including
// its destruction. One pointer: every byte here is in each connection's frame.
class gather_lease {
public:
    explicit gather_lease(gather_slot* slot) noexcept : m_slot(slot) {}
    gather_lease(const gather_lease&) = delete;
    gather_lease& operator=(const gather_lease&) = delete;
    ~gather_lease() {
        if (m_slot != nullptr) {
            this_thread_gather_pool().release(m_slot);
        }
    }
    gather_slot* get() const noexcept { return m_slot; }

private:
    gather_slot* m_slot;
};

// Moves `first` and the buffers already waiting in `stream` into `slot`, until the stream
// has none or the slot is full, noting whether the stream ended. Not a coroutine, so its
// temporaries take no room in the connection's frame.
void fill_batch(gather_slot& slot, buffer_ring::buffer first, net::recv_stream& stream) {
    slot.held[slot.count++] = std::move(first);
    while (slot.count < gather_slot::capacity) {
        auto waiting = stream.try_next();
        if (!waiting) {
            return;
        }
        if (waiting->error || waiting->value.empty()) {
            slot.ended = true; // echo what came before the end, then stop
            slot.end_error = waiting->error;
            return;
        }
        slot.held[slot.count++] = std::move(waiting->value);
    }
}

// Awaits an operation that lives elsewhere (in a slot): GCC 12 copies an lvalue awaiter
// into the frame, and an operation cannot be copied; this keeps one pointer there instead.
struct await_in_place {
    net::send_all_gather_operation* op;
    bool await_ready() const noexcept { return op->await_ready(); }
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> waiter) {
        op->await_suspend(waiter); // with the task's cancellation scope, as a direct await
    }
    io_result<std::size_t> await_resume() const noexcept { return op->await_resume(); }
};

// Prepares the slot's sendmsg over its buffers.
await_in_place prepare_gather(gather_slot& slot, net::socket& connection) {
    for (std::size_t i = 0; i < slot.count; ++i) {
        slot.pieces[i] = {slot.held[i].bytes().data(), slot.held[i].size()};
    }
    // Built in place: an operation cannot move (the kernel may point at it). The conversion
    // returns a prvalue, which initialises the optional's storage directly.
    struct in_place {
        net::socket& connection;
        std::span<iovec> pieces;
        operator net::send_all_gather_operation() const noexcept {
            return connection.send_all_gather(pieces);
        }
    };
    return {&slot.send.emplace(in_place{connection, std::span(slot.pieces).first(slot.count)})};
}

// The fast path: one multishot receive into the shared ring; an idle connection holds no
// buffer. Each buffer goes back to the ring once its echo has been sent. Buffers that
// arrived while an echo was being sent wait in the stream; they go back together, in one
// gather send (one request, one completion) instead of one send each.
task<std::error_code> echo_ring(net::socket& connection, buffer_ring& ring, bool gather) {
    auto stream = connection.recv_multishot(ring);
    while (true) {
        auto [recv_error, buffer] = co_await stream.next();
        if (recv_error || buffer.empty()) {
            co_return recv_error; // an empty buffer: the peer closed its side
        }
        const gather_lease lease(gather && stream.ready() > 0 ? this_thread_gather_pool().acquire()
                                                              : nullptr);
        if (lease.get() == nullptr) {
            auto [send_error, sent] = co_await connection.send_all(buffer.bytes());
            if (send_error) {
                co_return send_error;
            }
            continue; // `buffer` goes back to the ring as it goes out of scope
        }
        fill_batch(*lease.get(), std::move(buffer), stream);
        // The awaiter lives in the slot: the frame keeps only a pointer to it.
        auto [send_error, sent] = co_await prepare_gather(*lease.get(), connection);
        if (send_error) {
            co_return send_error;
        }
        if (lease.get()->ended) {
            co_return lease.get()->end_error;
        }
    }
}

} // namespace

task<void> echo_connection(net::socket connection, bool quiet, echo_server_stats& stats,
                           buffer_ring* ring) {
    const net::address peer = connection.peer_address();
    if (!quiet) {
        fmt::print("accepted connection from {}\n", peer);
    }
    const std::error_code failure = ring != nullptr
                                        ? co_await echo_ring(connection, *ring, g_gather_send)
                                        : co_await echo_simple(connection);
    (void)co_await connection.close();
    ++stats.closed;
    if (!quiet) {
        if (failure && !is_canceled(failure)) {
            fmt::print("closing connection to {} ({})\n", peer, failure.message());
        } else {
            fmt::print("closing connection to {}\n", peer);
        }
    }
}

namespace {

task<void> accept_loop(io_context& context, net::listener& listener, bool quiet,
                       echo_server_stats& stats, buffer_ring* ring) {
    // One multishot request accepts connection after connection (one plain accept each on
    // kernels before 5.19); an error ends it, and the next next() arms a new one.
    auto connections = listener.accept_multishot();
    bool backing_off = false;
    while (!context.stop_requested()) {
        auto [error, connection] = co_await connections.next();
        if (!error) {
            backing_off = false;
            ++stats.accepted;
            connection.set_no_delay(); // echo replies are small and should leave at once
            context.spawn(echo_connection(std::move(connection), quiet, stats, ring));
            continue;
        }
        if (is_canceled(error)) {
            break;
        }
        if (is_transient_accept_error(error)) {
            continue;
        }
        if (is_resource_accept_error(error)) {
            if (!backing_off) {
                fmt::print(stderr,
                           "ucoro-echo-server: accept: {}; pausing new connections briefly "
                           "(raise the limit with 'ulimit -n')\n",
                           error.message());
                backing_off = true;
            }
            (void)co_await sleep_for(context, std::chrono::milliseconds(100));
            continue;
        }
        fmt::print(stderr, "ucoro-echo-server: accept on {} failed: {}\n", listener.local_address(),
                   error.message());
        stats.failed = true;
        context.stop();
        break;
    }
}

} // namespace

task<void> accept_connections(io_context& context, net::listener& listener, bool quiet,
                              echo_server_stats& stats, buffer_ring* ring) {
    try {
        co_await accept_loop(context, listener, quiet, stats, ring);
    } catch (const std::exception& e) {
        // Without its accept loop the server would sit there serving nobody and later exit
        // 0: a failure of the loop itself (the ring broke, out of memory) ends the server.
        fmt::print(stderr, "ucoro-echo-server: the accept loop failed: {}; stopping\n", e.what());
        stats.failed = true;
        context.stop();
    }
}

int echo_server_main(int argc, char** argv) {
    const program_info program{"ucoro-echo-server", usage};
    bool quiet = false;
    bool verbose = false;
    bool simple = false;
    io_context_options options;
    g_gather_send = true; // a previous call in this process may have switched it off
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
                       "  --simple  receive with recv into each connection's own buffer instead\n"
                       "            of a multishot receive into a shared buffer ring\n"
                       "  --disable FEATURE[,FEATURE...]\n"
                       "            force features off, to run their fallbacks: {}\n"
                       "example: ucoro-echo-server 127.0.0.1 65432\n",
                       usage, disable_features);
            return 0;
        }
        if (arg == "-q" || arg == "--quiet") {
            quiet = true;
        } else if (arg == "-v" || arg == "--verbose") {
            verbose = true;
        } else if (arg == "--simple") {
            simple = true;
        } else if (arg == "--disable") {
            std::string_view bad;
            if (i + 1 >= argc) {
                return usage_error(program,
                                   fmt::format("--disable needs one of: {}", disable_features));
            }
            if (!apply_disable_list(argv[++i], options, g_gather_send, bad)) {
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
    if (count != 2) {
        return usage_error(program);
    }
    int exit_code = 0;
    const auto local = parse_host_port(program, positional[0], positional[1], exit_code);
    if (!local) {
        return exit_code;
    }

    std::setvbuf(stdout, nullptr, _IOLBF, 0); // one line per event, even into a pipe
    raise_open_file_limit();
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
        fmt::print("listening on {}\n", listener->local_address());

        // The fast path needs provided-buffer rings (Linux 5.19); without them the server
        // runs the simple path, and says so under -v.
        std::optional<buffer_ring> ring;
        std::string path = "simple (recv into each connection's buffer, --simple)";
        if (!simple) {
            try {
                // 256 x 16 KiB rather than the library's 1024 x 4 KiB: the same 4 MiB, but a
                // 16 KiB message arrives in one buffer and is echoed by one send.
                // docs/fast-path-experiments.md measured it: 1.7x the throughput for
                // 100 x 16 KiB, the same CPU per message for 1,000 x 64 B at 40k msg/s, and
                // no more memory per idle connection.
                ring.emplace(*context, buffer_ring_options{.count = 256, .buffer_size = 16 * 1024});
                path = fmt::format(
                    "buffer ring ({} x {} B, {} receive)", ring->count(), ring->buffer_size(),
                    context->features().multishot_recv ? "multishot" : "single-shot");
            } catch (const std::system_error& e) {
                path = fmt::format("simple, because the buffer ring is unavailable: {}", e.what());
            }
        }
        if (verbose) {
            fmt::print("receive path: {}\n", path);
            const auto& features = context->features();
            fmt::print("features: multishot accept {}, registered ring fd {}, gather send {}\n",
                       features.multishot_accept ? "on" : "off",
                       features.registered_ring_fd ? "on" : "off",
                       ring && g_gather_send ? "on" : "off");
        }

        echo_server_stats stats;
        context->spawn(watch_signals(*context, signals));
        context->spawn(
            accept_connections(*context, *listener, quiet, stats, ring ? &*ring : nullptr));
        context->run();
        if (verbose) {
            const auto& loop = context->stats();
            fmt::print("io_uring_enter calls: {}, completions: {}, CQ overflows: {}, ENOBUFS "
                       "re-arms: {}\n",
                       loop.submit_calls, loop.completions, loop.cq_overflows,
                       ring ? ring->enobufs_rearms() : 0);
        }
        return stats.failed ? exit_failure : 0;
    } catch (const std::system_error& e) {
        fmt::print(stderr, "{}: {}\n", program.name, e.what());
        return exit_failure;
    }
}

} // namespace ucoro::apps
