#include "echo_client.hpp"

#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>

#include "command_line.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"

namespace ucoro::apps {

namespace {

constexpr std::string_view usage =
    "usage: ucoro-echo-client [-t SECONDS] {HOST PORT | unix:PATH} NUM_CONNECTIONS";
constexpr unsigned max_connections = 10000;
constexpr unsigned default_timeout_seconds = 10;

// What each connection sends, as in the lesson's client.
constexpr std::array<std::string_view, 2> messages = {"Message 1 from client.",
                                                      "Message 2 from client."};

struct connection_outcome {
    std::string failure; // empty if every byte matched
};

/// What the connections share: how many are still running, and the watchdog that stops
/// them all if the server does not answer in time.
struct client_state {
    unsigned remaining = 0;
    std::chrono::seconds timeout{default_timeout_seconds};
    sleep_operation* watchdog = nullptr; // while the watchdog sleeps
    bool timed_out = false;
};

/// Sleeps for the timeout, then stops every connection (they see operation_canceled).
/// The last connection to finish cancels this sleep, so a healthy run does not wait.
task<void> watchdog(io_context& context, client_state& state) {
    sleep_operation sleep = sleep_for(context, state.timeout);
    state.watchdog = &sleep;
    const std::error_code error = co_await sleep;
    state.watchdog = nullptr;
    if (!error) {
        state.timed_out = true;
        context.stop();
    }
}

void finish_connection(client_state& state) {
    if (--state.remaining == 0 && state.watchdog != nullptr) {
        state.watchdog->cancel();
    }
}

/// Describes an I/O error, naming the timeout when it was the watchdog that cancelled.
std::string describe(const std::error_code& error, const client_state& state) {
    if (state.timed_out && error == std::errc::operation_canceled) {
        return fmt::format("no answer within {} s (is it an echo server?)", state.timeout.count());
    }
    return error.message();
}

std::span<const std::byte> bytes_of(std::string_view text) {
    return std::as_bytes(std::span(text.data(), text.size()));
}

task<void> exchange_messages(io_context& context, net::address server, unsigned id,
                             const client_state& state, connection_outcome& outcome) {
    fmt::print("starting connection {} to {}\n", id, server);
    auto [connect_error, sock] = co_await net::connect(context, server);
    if (connect_error) {
        outcome.failure =
            fmt::format("connect to {} failed: {}", server, describe(connect_error, state));
        co_return;
    }
    std::string expected;
    for (const std::string_view message : messages) {
        fmt::print("sending {:?} to connection {}\n", message, id);
        auto [send_error, sent] = co_await sock.send_all(bytes_of(message));
        if (send_error) {
            outcome.failure =
                fmt::format("send failed after {} bytes: {}", sent, describe(send_error, state));
            co_return;
        }
        expected += message;
    }

    // Read until as many bytes came back as went out; the server may return them in any
    // chunking, so count bytes, not messages.
    std::string received;
    std::array<std::byte, 1024> buffer;
    while (received.size() < expected.size()) {
        auto [recv_error, n] = co_await sock.recv(buffer);
        if (recv_error) {
            outcome.failure =
                fmt::format("receive failed after {} of {} bytes: {}", received.size(),
                            expected.size(), describe(recv_error, state));
            co_return;
        }
        if (n == 0) {
            outcome.failure = fmt::format("server closed the connection after {} of {} bytes",
                                          received.size(), expected.size());
            co_return;
        }
        const std::string_view chunk(reinterpret_cast<const char*>(buffer.data()), n);
        fmt::print("received {:?} from connection {}\n", chunk, id);
        received += chunk;
    }
    if (received != expected) {
        outcome.failure = fmt::format("sent {:?} but received {:?}", expected, received);
    }
    fmt::print("closing connection {}\n", id);
    (void)co_await sock.close();
}

task<void> run_connection(io_context& context, net::address server, unsigned id,
                          client_state& state, connection_outcome& outcome) {
    co_await exchange_messages(context, server, id, state, outcome);
    finish_connection(state);
}

std::optional<unsigned> parse_number(std::string_view text, unsigned low, unsigned high) {
    unsigned value = 0;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end || value < low || value > high) {
        return std::nullopt;
    }
    return value;
}

} // namespace

int echo_client_main(int argc, char** argv) {
    const program_info program{"ucoro-echo-client", usage};
    client_state state;
    std::string_view positional[3];
    int count_positional = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            fmt::print("{}\n"
                       "Opens NUM_CONNECTIONS connections at once; each sends two messages, reads\n"
                       "the same bytes back and closes. Exits 0 only if every byte matched.\n"
                       "HOST PORT is a numeric IPv4 or IPv6 address and a port; in their place,\n"
                       "unix:PATH (or a PATH starting with /) connects to a Unix-domain stream\n"
                       "socket, and @NAME (or unix:@NAME) to an abstract one.\n"
                       "  -t SECONDS   give up on the server after this long (default {})\n"
                       "  --version    print the version and the git commit, and exit\n"
                       "example: ucoro-echo-client 127.0.0.1 65432 2\n"
                       "         ucoro-echo-client unix:/run/ucoro-echo.sock 2\n",
                       usage, default_timeout_seconds);
            return 0;
        }
        if (arg == "--version") {
            fmt::print("{}\n", version_line(program.name));
            return 0;
        }
        if (arg == "-t" && i + 1 < argc) {
            const auto seconds = parse_number(argv[++i], 1, 86400);
            if (!seconds) {
                return usage_error(program, fmt::format("invalid timeout '{}': expected seconds "
                                                        "from 1 to 86400",
                                                        argv[i]));
            }
            state.timeout = std::chrono::seconds(*seconds);
        } else if (arg.size() > 1 && arg[0] == '-') {
            return usage_error(program, fmt::format("unknown option '{}'", arg));
        } else if (count_positional < 3) {
            positional[count_positional++] = arg;
        } else {
            return usage_error(program, fmt::format("unexpected argument '{}'", arg));
        }
    }
    // A Unix socket name stands for HOST and PORT both.
    const bool unix_socket = count_positional > 0 && names_unix_socket(positional[0]);
    const int expected = unix_socket ? 2 : 3;
    if (count_positional != expected) {
        return usage_error(program);
    }
    const std::string_view count_text = positional[expected - 1];
    const auto count = parse_number(count_text, 1, max_connections);
    if (!count) {
        return usage_error(program, fmt::format("invalid NUM_CONNECTIONS '{}': expected a number "
                                                "from 1 to {}",
                                                count_text, max_connections));
    }
    int exit_code = 0;
    const auto server = unix_socket
                            ? parse_unix_socket(program, positional[0], exit_code)
                            : parse_host_port(program, positional[0], positional[1], exit_code);
    if (!server) {
        return exit_code;
    }

    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    raise_open_file_limit();
    const auto context = open_context(program);
    if (!context) {
        return exit_failure;
    }

    std::vector<connection_outcome> outcomes(*count);
    state.remaining = *count;
    context->spawn(watchdog(*context, state));
    for (unsigned i = 0; i < *count; ++i) {
        context->spawn(run_connection(*context, *server, i + 1, state, outcomes[i]));
    }
    context->run();

    unsigned failed = 0;
    for (unsigned i = 0; i < *count; ++i) {
        if (!outcomes[i].failure.empty()) {
            ++failed;
            fmt::print(stderr, "ucoro-echo-client: connection {}: {}\n", i + 1,
                       outcomes[i].failure);
        }
    }
    if (failed > 0) {
        fmt::print(stderr, "ucoro-echo-client: {} of {} connections failed\n", failed, *count);
        return exit_failure;
    }
    fmt::print("all {} connections got back every byte they sent\n", *count);
    return 0;
}

} // namespace ucoro::apps
