// The echo server's stops on a failure shut every live connection down before stop(): a
// send blocked in an io-wq worker ignores the kernel's cancel, so stop() alone could wait
// for it forever (docs/cancellation.md). Such a send cannot be made to order on loopback,
// so these check the shutdown itself: a connection registered with the server's deadlines
// (the list shut_down_all walks) is shut down in both directions when the accept loop
// fails, which a bare stop() would leave open.
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include "echo_server.hpp"
#include "support/context.hpp"
#include "support/counting.hpp"
#include "support/stderr_capture.hpp"
#include "support/stream_pair.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"

namespace {

using namespace std::chrono_literals;

/// True once `peer`'s other end has been shut down both ways: a read sees end of stream
/// at once, and a write fails with EPIPE. Both without blocking.
bool other_end_shut_down(int peer) {
    std::byte byte{};
    const bool end_of_stream = ::recv(peer, &byte, 1, MSG_DONTWAIT) == 0;
    const bool refused =
        ::send(peer, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == -1 && errno == EPIPE;
    return end_of_stream && refused;
}

TEST_CASE("an accept that fails for good shuts the live connections down before it stops",
          "[echo_server][controls]") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    ucoro::net::listener listener(*context, ucoro::net::address::ipv4_loopback(0));
    ucoro::apps::connection_deadlines deadlines(*context, 0ms, 0ms);
    ucoro::apps::server_controls controls;
    controls.context = context.get();
    controls.deadlines = &deadlines;
    ucoro::apps::echo_server_stats stats;
    // A live connection as the server lists it.
    auto pair = ucoro_test::make_stream_pair(*context);
    std::optional<ucoro::apps::connection_deadlines::entry> live;
    live.emplace(deadlines, pair.ours.native_handle());
    REQUIRE_FALSE(other_end_shut_down(pair.peer.get()));

    context->spawn(ucoro::apps::accept_connections(*context, listener, /*quiet=*/true, stats,
                                                   nullptr, &controls));
    ucoro_test::stderr_capture capture;
    context->block_on([&]() -> ucoro::task<void> {
        co_await ucoro_test::next_turn{*context}; // the accept is armed
        // A listener shut down for reading stops listening: the accept fails with EINVAL,
        // an error that retrying cannot fix.
        REQUIRE(::shutdown(listener.native_handle(), SHUT_RD) == 0);
    }());
    context->run();
    const std::string captured = capture.finish();
    INFO("stderr: " << captured);
    CHECK(stats.failed);
    CHECK(captured.find("accept on") != std::string::npos);
    CHECK(other_end_shut_down(pair.peer.get()));
    live.reset();
}

/// Makes the next io_uring_enter fail with ENOMEM, once.
class fail_one_enter final : public ucoro::detail::fault_injector {
public:
    int before_enter() noexcept override { return std::exchange(m_armed, false) ? -ENOMEM : 0; }

private:
    bool m_armed = true;
};

ucoro::task<void> sleep_quietly(ucoro::io_context& context) {
    (void)co_await ucoro::sleep_for(context, std::chrono::hours(1));
}

TEST_CASE("an accept loop that throws shuts the live connections down before it stops",
          "[echo_server][controls]") {
    // A 2-entry SQ: two sleeps fill it in the first turn, so arming the accept must flush
    // it, and that io_uring_enter fails: the exception leaves the accept loop.
    auto context = ucoro_test::make_context(ucoro::io_context_options{2, 16});
    if (!context) {
        return;
    }
    ucoro::net::listener listener(*context, ucoro::net::address::ipv4_loopback(0));
    ucoro::apps::connection_deadlines deadlines(*context, 0ms, 0ms);
    ucoro::apps::server_controls controls;
    controls.context = context.get();
    controls.deadlines = &deadlines;
    ucoro::apps::echo_server_stats stats;
    auto pair = ucoro_test::make_stream_pair(*context);
    std::optional<ucoro::apps::connection_deadlines::entry> live;
    live.emplace(deadlines, pair.ours.native_handle());

    fail_one_enter faults;
    ucoro::detail::set_fault_injector(*context, &faults);
    context->spawn(sleep_quietly(*context));
    context->spawn(sleep_quietly(*context));
    context->spawn(ucoro::apps::accept_connections(*context, listener, /*quiet=*/true, stats,
                                                   nullptr, &controls));
    ucoro_test::stderr_capture capture;
    context->run();
    ucoro::detail::set_fault_injector(*context, nullptr);
    const std::string captured = capture.finish();
    INFO("stderr: " << captured);
    CHECK(stats.failed);
    CHECK(captured.find("the accept loop failed") != std::string::npos);
    CHECK(other_end_shut_down(pair.peer.get()));
    live.reset();
}

} // namespace
