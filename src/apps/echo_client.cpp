#include "echo_client.hpp"

#include <array>
#include <charconv>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>

#include "ucoro/io_context.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/socket.hpp"

namespace ucoro::apps {

namespace {

constexpr std::string_view usage = "usage: ucoro-echo-client HOST PORT NUM_CONNECTIONS";
constexpr unsigned max_connections = 10000;

// What each connection sends, as in the lesson's client.
constexpr std::array<std::string_view, 2> messages = {"Message 1 from client.",
                                                      "Message 2 from client."};

struct connection_outcome {
    std::string failure; // empty if every byte matched
};

std::span<const std::byte> bytes_of(std::string_view text) {
    return std::as_bytes(std::span(text.data(), text.size()));
}

task<void> run_connection(io_context& context, net::address server, unsigned id,
                          connection_outcome& outcome) {
    fmt::print("starting connection {} to {}\n", id, server);
    auto [connect_error, sock] = co_await net::connect(context, server);
    if (connect_error) {
        outcome.failure = fmt::format("connect to {} failed: {}", server, connect_error.message());
        co_return;
    }
    std::string expected;
    for (const std::string_view message : messages) {
        fmt::print("sending {:?} to connection {}\n", message, id);
        auto [send_error, sent] = co_await sock.send_all(bytes_of(message));
        if (send_error) {
            outcome.failure =
                fmt::format("send failed after {} bytes: {}", sent, send_error.message());
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
            outcome.failure = fmt::format("receive failed after {} of {} bytes: {}",
                                          received.size(), expected.size(), recv_error.message());
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

std::optional<unsigned> parse_count(std::string_view text) {
    unsigned value = 0;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end || value == 0 || value > max_connections) {
        return std::nullopt;
    }
    return value;
}

} // namespace

int echo_client_main(int argc, char** argv) {
    if (argc == 2 && (std::string_view(argv[1]) == "-h" || std::string_view(argv[1]) == "--help")) {
        fmt::print("{}\n"
                   "Opens NUM_CONNECTIONS connections at once; each sends two messages, reads\n"
                   "the same bytes back and closes. Exits 0 only if every byte matched.\n"
                   "example: ucoro-echo-client 127.0.0.1 65432 2\n",
                   usage);
        return 0;
    }
    if (argc != 4) {
        fmt::print(stderr, "{}\n", usage);
        return 2;
    }
    const auto port = net::address::parse_port(argv[2]);
    if (!port) {
        fmt::print(stderr,
                   "ucoro-echo-client: invalid port '{}': expected a number from 0 to "
                   "65535\n{}\n",
                   argv[2], usage);
        return 2;
    }
    const auto count = parse_count(argv[3]);
    if (!count) {
        fmt::print(stderr,
                   "ucoro-echo-client: invalid NUM_CONNECTIONS '{}': expected a number "
                   "from 1 to {}\n{}\n",
                   argv[3], max_connections, usage);
        return 2;
    }
    const auto server = net::address::parse(argv[1], *port);
    if (!server) {
        fmt::print(stderr,
                   "ucoro-echo-client: bad address '{}': expected a numeric IPv4 or IPv6 "
                   "address such as 127.0.0.1 or ::1\n",
                   argv[1]);
        return 1;
    }

    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::optional<io_context> context;
    try {
        context.emplace();
    } catch (const std::system_error& e) {
        fmt::print(stderr, "ucoro-echo-client: {}\n", describe_io_uring_error(e.code().value()));
        return 1;
    }

    std::vector<connection_outcome> outcomes(*count);
    for (unsigned i = 0; i < *count; ++i) {
        context->spawn(run_connection(*context, *server, i + 1, outcomes[i]));
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
        return 1;
    }
    fmt::print("all {} connections got back every byte they sent\n", *count);
    return 0;
}

} // namespace ucoro::apps
