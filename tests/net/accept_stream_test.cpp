// net::accept_stream (multishot accept): connections in order, the plain-accept fallback,
// re-arming after the request ends, stop(), and dropping the stream with its request armed.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include "support/counting.hpp"
#include "support/loopback.hpp"
#include "support/process.hpp"
#include "support/unique_fd.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/accept_stream.hpp"
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
        context->cancel_fd(server.native_handle());
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
    // The stream died armed: its request was adopted and is cancelled by the next run.
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
        stream.reset(); // the context adopts the request; the accepted fd is not leaked
    }());
    // The adopted request's cancel completes, and its final CQE frees it (ASan checks that
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
        // Fill the 2-entry SQ, and make the flush that the adoption's cancel needs fail.
        context->cancel_fd(-1);
        context->cancel_fd(-1);
        faults.armed = true;
        // `connections` dies here: its cancel cannot be queued now. Before the fix nobody
        // retried it, and run() waited forever on the orphaned accept.
    }());
    CHECK_FALSE(faults.armed); // the failure was injected
    context->run();
    CHECK(context->in_flight() == 0);
}
