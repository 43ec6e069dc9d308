// net::accept_stream (multishot accept): connections in order, the plain-accept fallback,
// re-arming after the request ends, stop(), and dropping the stream with its request armed.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "support/counting.hpp"
#include "support/fd_limit.hpp"
#include "support/loopback.hpp"
#include "support/process.hpp"
#include "support/unique_fd.hpp"
#include "ucoro/detail/context_access.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/accept_stream.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/poll.hpp"
#include "ucoro/task.hpp"

using ucoro::io_context;
using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;
using ucoro_test::unique_fd;

namespace {

/// Connects a plain blocking socket to `server`; the handshake completes into the backlog.
unique_fd connect_plain(const listener& server) {
    unique_fd fd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    REQUIRE(fd.get() >= 0);
    const address& target = server.local_address();
    REQUIRE(::connect(fd.get(), target.data(), target.size()) == 0);
    return fd;
}

/// Accepts `count` connections from one stream; each peer writes its index first.
task<std::vector<int>> accept_indices(listener& server, int count, bool& all_multishot) {
    auto connections = server.accept_multishot();
    std::vector<int> order;
    for (int i = 0; i < count; ++i) {
        auto [error, connection] = co_await connections.next();
        REQUIRE_FALSE(error);
        CHECK(connection.peer_address().port() != 0);
        unsigned char index = 0;
        auto [recv_error, n] =
            co_await connection.recv(std::as_writable_bytes(std::span(&index, 1)));
        REQUIRE_FALSE(recv_error);
        REQUIRE(n == 1);
        order.push_back(index);
    }
    all_multishot = true;
    co_return order;
}

void run_in_order(io_context& context, listener& server, int count) {
    std::vector<unique_fd> clients;
    for (int i = 0; i < count; ++i) {
        clients.push_back(connect_plain(server));
        const unsigned char index = static_cast<unsigned char>(i);
        REQUIRE(::send(clients.back().get(), &index, 1, 0) == 1);
    }
    bool done = false;
    const auto order = context.block_on(accept_indices(server, count, done));
    CHECK(done);
    REQUIRE(order.size() == static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        CHECK(order[static_cast<std::size_t>(i)] == i);
    }
    context.run(); // a multishot request outlives its stream until its cancel completes
    CHECK(context.in_flight() == 0);
}

} // namespace

TEST_CASE("accept_stream hands out queued connections in the order they arrived") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    if (!context->features().multishot_accept) {
        WARN("SKIPPED: this kernel has no multishot accept (Linux 5.19)");
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    run_in_order(*context, server, 200);
}

TEST_CASE("accept_stream falls back to one plain accept per connection when multishot is off") {
    ucoro::io_context_options options;
    options.multishot_accept = false;
    auto context = ucoro_test::make_context(options);
    if (!context) {
        return;
    }
    CHECK_FALSE(context->features().multishot_accept);
    listener server(*context, address::ipv4_loopback(0));
    run_in_order(*context, server, 50);
}

namespace {

struct stream_outcome {
    std::vector<std::error_code> errors;
    int accepted = 0;
};

task<void> accept_until_error(listener& server, stream_outcome& out, int errors_wanted) {
    auto connections = server.accept_multishot();
    while (static_cast<int>(out.errors.size()) < errors_wanted) {
        auto [error, connection] = co_await connections.next();
        if (error) {
            out.errors.push_back(error);
        } else {
            ++out.accepted;
        }
    }
}

} // namespace

TEST_CASE("stop() ends an armed accept_stream with operation_canceled") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    stream_outcome out;
    context->spawn(accept_until_error(server, out, 1));
    context->spawn([](io_context& c) -> task<void> {
        co_await ucoro_test::next_turn{c};
        c.stop();
    }(*context));
    context->run();
    REQUIRE(out.errors.size() == 1);
    CHECK(out.errors[0] == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("next() after the request ended submits a new one and accepting goes on") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    std::vector<unique_fd> clients;
    stream_outcome out;
    context->block_on([&]() -> task<void> {
        auto connections = server.accept_multishot();
        clients.push_back(connect_plain(server));
        auto first = co_await connections.next();
        REQUIRE_FALSE(first.error);
        // End the kernel's request from outside, as an EMFILE would.
        co_await ucoro_test::next_turn{*context};
        server.cancel();
        auto canceled = co_await connections.next();
        CHECK(canceled.error == std::errc::operation_canceled);
        // The stream re-arms on demand.
        clients.push_back(connect_plain(server));
        auto second = co_await connections.next();
        CHECK_FALSE(second.error);
        CHECK(second.value.is_open());
        out.accepted = 2;
    }());
    CHECK(out.accepted == 2);
    // The stream died armed: its request was released to the context and is cancelled by the next
    // run.
    context->run();
    CHECK(context->in_flight() == 0);
}

TEST_CASE("dropping an armed accept_stream cancels it and closes what it accepts afterwards") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    // Waiting in the backlog: the request accepts it as soon as it is armed.
    const unique_fd client = connect_plain(server);
    std::optional<ucoro::net::accept_stream> stream;
    context->block_on([&]() -> task<void> {
        stream.emplace(server.accept_multishot());
        stream->next().await_suspend(std::noop_coroutine()); // armed, nobody waiting
        co_await ucoro_test::next_turn{*context};
        CHECK(context->in_flight() == 1);
        stream.reset(); // the context takes over the request; the accepted fd is not leaked
    }());
    // The released request's cancel completes, and its final CQE frees it (ASan checks that
    // nothing is freed early or leaked).
    context->run();
    CHECK(context->in_flight() == 0);
    // The connection accepted for nobody was closed: the client reads end of stream.
    char byte = 0;
    CHECK(::recv(client.get(), &byte, 1, 0) == 0);
}

TEST_CASE("a context destroyed with an orphaned accept request frees it") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    context->block_on([&]() -> task<void> {
        auto connections = server.accept_multishot();
        connections.next().await_suspend(std::noop_coroutine());
        co_await ucoro_test::next_turn{*context};
        // `connections` dies here, armed: its request is orphaned, its cancel queued.
    }());
    CHECK(context->in_flight() == 1);
    context.reset(); // drains: the final CQE deletes the request
}

namespace {

/// Arms `stream` without waiting on it, then waits for `event` and drops the stream: if a
/// connection's CQE is in the same batch as the poll's, it reaches an orphaned request.
task<void> drop_stream_on_event(io_context& context, listener& server,
                                std::optional<ucoro::net::accept_stream>& stream, int event) {
    stream.emplace(server.accept_multishot());
    stream->next().await_suspend(std::noop_coroutine());
    auto [error, revents] = co_await ucoro::poll(context, event, POLLIN);
    CHECK_FALSE(error);
    stream.reset();
}

} // namespace

TEST_CASE("a connection accepted after its stream was dropped is closed, not leaked") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    unique_fd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    REQUIRE(event.get() >= 0);
    std::optional<ucoro::net::accept_stream> stream;
    context->spawn(drop_stream_on_event(*context, server, stream, event.get()));
    context->block_on(ucoro_test::next_turn_of(*context)); // the accept and the poll are armed
    // Both wake-ups are queued in this order, so their CQEs arrive in one batch, the poll's
    // first: the stream is dropped before the connection's CQE is dispatched.
    const std::uint64_t one = 1;
    REQUIRE(::write(event.get(), &one, sizeof(one)) == sizeof(one));
    const unique_fd client = connect_plain(server);
    context->run();
    CHECK_FALSE(stream.has_value());
    CHECK(context->in_flight() == 0);
    REQUIRE(ucoro_test::wait_readable(client.get()));
    char byte = 0;
    CHECK(::recv(client.get(), &byte, 1, 0) == 0); // closed by the orphaned request
}

namespace {

class fail_next_enter final : public ucoro::detail::fault_injector {
public:
    int before_enter() noexcept override { return std::exchange(armed, false) ? -ENOMEM : 0; }
    bool armed = false;
};

} // namespace

TEST_CASE("a stream dropped when its cancel cannot be queued is still cancelled, run() returns") {
    auto context = ucoro_test::make_context(ucoro::io_context_options{2, 16});
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    fail_next_enter faults;
    ucoro::detail::set_fault_injector(*context, &faults);
    context->block_on([&]() -> task<void> {
        auto connections = server.accept_multishot();
        connections.next().await_suspend(std::noop_coroutine());
        co_await ucoro_test::next_turn{*context}; // armed in the kernel
        // Fill the 2-entry SQ, and make the flush that the release's cancel needs fail.
        ucoro::detail::context_access::cancel_fd(*context, -1);
        ucoro::detail::context_access::cancel_fd(*context, -1);
        faults.armed = true;
        // `connections` dies here: its cancel cannot be queued now. Before the fix nobody
        // retried it, and run() waited forever on the orphaned accept.
    }());
    CHECK_FALSE(faults.armed); // the failure was injected
    context->run();
    CHECK(context->in_flight() == 0);
}

namespace {

constexpr std::size_t thousand = 1000;

struct thousand_run {
    std::set<std::string> accepted_peers;   // as the accept stream reported them
    std::set<std::string> client_addresses; // each client's own local address
    std::size_t echoed = 0;                 // clients that got their 4 bytes back intact
    std::size_t server_errors = 0;
    std::size_t client_errors = 0;
};

/// The server's side of one connection: echoes the 4 bytes its client sends, then closes.
task<void> echo_four(ucoro::net::socket connection, thousand_run& run) {
    std::array<std::byte, 4> bytes{};
    std::size_t got = 0;
    while (got < bytes.size()) {
        auto [error, n] = co_await connection.recv(std::span(bytes).subspan(got));
        if (error || n == 0) {
            ++run.server_errors;
            co_return;
        }
        got += n;
    }
    auto [send_error, sent] = co_await connection.send_all(bytes);
    if (send_error) {
        ++run.server_errors;
    }
    (void)co_await connection.close();
}

/// One multishot stream accepts all thousand; each connection gets its own echo task.
task<void> accept_thousand(io_context& context, listener& server, thousand_run& run) {
    auto connections = server.accept_multishot();
    for (std::size_t i = 0; i < thousand; ++i) {
        auto [error, connection] = co_await connections.next();
        if (error) {
            ++run.server_errors;
            continue;
        }
        run.accepted_peers.insert(connection.peer_address().to_string());
        context.spawn(echo_four(std::move(connection), run));
    }
}

task<void> client(io_context& context, const address& target, std::uint32_t index,
                  thousand_run& run) {
    auto [error, connection] = co_await ucoro::net::connect(context, target);
    if (error) {
        ++run.client_errors;
        co_return;
    }
    run.client_addresses.insert(connection.local_address().to_string());
    std::array<std::byte, 4> message{};
    std::memcpy(message.data(), &index, sizeof index);
    auto [send_error, sent] = co_await connection.send_all(message);
    if (send_error) {
        ++run.client_errors;
        co_return;
    }
    // The server closes after its echo: read to end of stream, so a duplicate would show.
    const auto received = co_await ucoro_test::read_until_end(connection, 4, 8);
    if (received.end_of_stream && received.bytes.size() == message.size() &&
        std::equal(message.begin(), message.end(), received.bytes.begin())) {
        ++run.echoed;
    } else {
        ++run.client_errors;
    }
    (void)co_await connection.close();
}

} // namespace

TEST_CASE("one multishot accept takes 1,000 connections, each echoed and each peer matched") {
    if (!ucoro_test::ensure_fd_limit(2 * thousand + 256)) {
        WARN("SKIPPED: RLIMIT_NOFILE is too low for " << thousand << " connections");
        return;
    }
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    if (!context->features().multishot_accept) {
        WARN("SKIPPED: this kernel has no multishot accept (Linux 5.19)");
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    thousand_run run;
    const std::uint64_t submits_before = context->stats().submit_calls;
    context->spawn(accept_thousand(*context, server, run));
    for (std::uint32_t i = 0; i < thousand; ++i) {
        context->spawn(client(*context, server.local_address(), i, run));
    }
    context->run();

    CHECK(run.server_errors == 0);
    CHECK(run.client_errors == 0);
    CHECK(run.echoed == thousand);
    CHECK(run.accepted_peers.size() == thousand);
    CHECK(run.accepted_peers == run.client_addresses);
    CHECK(context->in_flight() == 0);
    INFO("io_uring_enter calls: " << context->stats().submit_calls - submits_before);
}
