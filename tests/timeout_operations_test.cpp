// with_timeout on every operation that takes it (timeout_linkable_test.cpp lists them): each
// one finishing in time gives its own result (byte for byte where bytes move), and each one
// that can wait gives timed_out once its deadline has passed. The multi-round sends under a
// deadline are in timeout_rounds_test.cpp.
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <span>
#include <system_error>
#include <vector>

#include "support/loopback.hpp"
#include "support/stream_pair.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/poll.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/timeout.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::io_result;
using ucoro::task;
using ucoro::with_timeout;
using ucoro::net::address;
using ucoro::net::listener;
using ucoro::net::socket;
using ucoro_test::make_context;
using ucoro_test::make_pattern;
using ucoro_test::make_stream_pair;
using ucoro_test::write_all;

// Long enough that only a broken timer would fire it; short enough to see a timeout.
constexpr auto never = 1h;
constexpr auto short_deadline = 20ms;

/// Reads exactly `size` bytes from a plain descriptor (the peer of a stream pair), or
/// fewer if it reaches end of stream.
std::vector<std::byte> read_exactly(int fd, std::size_t size) {
    std::vector<std::byte> bytes(size);
    std::size_t got = 0;
    while (got < size) {
        const ssize_t n = ::read(fd, bytes.data() + got, size - got);
        if (n <= 0) {
            break;
        }
        got += static_cast<std::size_t>(n);
    }
    bytes.resize(got);
    return bytes;
}

/// Fills `fd`'s send path (its buffer and the peer's receive buffer) without blocking, so
/// that the next send waits for the peer to read. Returns what went in.
std::vector<std::byte> fill_until_full(int fd) {
    std::vector<std::byte> sent;
    const auto chunk = make_pattern(4096, 17);
    // Bounded: an AF_UNIX pair holds a few hundred KiB at most.
    for (int i = 0; i < 100'000; ++i) {
        const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT);
        if (n < 0) {
            REQUIRE(errno == EAGAIN);
            return sent;
        }
        sent.insert(sent.end(), chunk.begin(), chunk.begin() + n);
    }
    FAIL("the socket never filled up");
    return sent;
}

/// Runs `work` and returns how long it took.
template <typename Work>
std::chrono::steady_clock::duration timed(Work&& work) {
    const auto start = std::chrono::steady_clock::now();
    work();
    return std::chrono::steady_clock::now() - start;
}

// --- recv --------------------------------------------------------------------------------

TEST_CASE("with_timeout(recv) in time gives the bytes that arrived") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    const auto sent = make_pattern(300, 1);
    write_all(pair.peer.get(), sent);
    std::vector<std::byte> buffer(sent.size());
    auto [error, n] = context->block_on([&]() -> task<io_result<std::size_t>> {
        co_return co_await with_timeout(pair.ours.recv(buffer), never);
    }());
    REQUIRE_FALSE(error);
    REQUIRE(n == sent.size());
    UCORO_CHECK_SAME_BYTES(buffer, sent);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout(recv) from a silent peer times out") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    std::vector<std::byte> buffer(16);
    io_result<std::size_t> result;
    const auto took = timed([&] {
        result = context->block_on([&]() -> task<io_result<std::size_t>> {
            co_return co_await with_timeout(pair.ours.recv(buffer), short_deadline);
        }());
    });
    CHECK(result.error == std::errc::timed_out);
    CHECK(result.value == 0);
    CHECK(took >= short_deadline);
    CHECK(context->in_flight() == 0);
}

// --- send --------------------------------------------------------------------------------

TEST_CASE("with_timeout(send) in time sends the bytes") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    const auto payload = make_pattern(500, 2);
    auto [error, n] = context->block_on([&]() -> task<io_result<std::size_t>> {
        co_return co_await with_timeout(pair.ours.send(payload), never);
    }());
    REQUIRE_FALSE(error);
    REQUIRE(n == payload.size());
    const auto received = read_exactly(pair.peer.get(), n);
    UCORO_CHECK_SAME_BYTES(received, payload);
}

TEST_CASE("with_timeout(send) into a full socket times out and sends nothing") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    const auto before = fill_until_full(pair.ours.native_handle());
    const auto payload = make_pattern(1000, 3);
    io_result<std::size_t> result;
    const auto took = timed([&] {
        result = context->block_on([&]() -> task<io_result<std::size_t>> {
            co_return co_await with_timeout(pair.ours.send(payload), short_deadline);
        }());
    });
    CHECK(result.error == std::errc::timed_out);
    CHECK(result.value == 0);
    CHECK(took >= short_deadline);
    // Only the filler is in the socket: the cancelled send added no byte.
    ::shutdown(pair.ours.native_handle(), SHUT_WR);
    const auto received = read_exactly(pair.peer.get(), before.size() + 1);
    UCORO_CHECK_SAME_BYTES(received, before);
}

// --- send_all ----------------------------------------------------------------------------

TEST_CASE("with_timeout(send_all) in time sends every byte") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    const auto payload = make_pattern(64 * 1024, 4);
    auto [error, n] = context->block_on([&]() -> task<io_result<std::size_t>> {
        co_return co_await with_timeout(pair.ours.send_all(payload), never);
    }());
    REQUIRE_FALSE(error);
    REQUIRE(n == payload.size());
    const auto received = read_exactly(pair.peer.get(), n);
    UCORO_CHECK_SAME_BYTES(received, payload);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout(send_all) into a full socket times out with the count it sent") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    const auto before = fill_until_full(pair.ours.native_handle());
    const auto payload = make_pattern(8 * 1024, 5);
    io_result<std::size_t> result;
    const auto took = timed([&] {
        result = context->block_on([&]() -> task<io_result<std::size_t>> {
            co_return co_await with_timeout(pair.ours.send_all(payload), short_deadline);
        }());
    });
    CHECK(result.error == std::errc::timed_out);
    REQUIRE(result.value < payload.size());
    CHECK(took >= short_deadline);
    // What reached the peer is the filler and exactly the bytes send_all reported.
    std::vector<std::byte> expected = before;
    expected.insert(expected.end(), payload.begin(),
                    payload.begin() + static_cast<std::ptrdiff_t>(result.value));
    ::shutdown(pair.ours.native_handle(), SHUT_WR);
    const auto received = read_exactly(pair.peer.get(), expected.size() + 1);
    UCORO_CHECK_SAME_BYTES(received, expected);
}

// --- send_all_gather ---------------------------------------------------------------------

TEST_CASE("with_timeout(send_all_gather) in time sends every byte of every piece in order") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    const auto payload = make_pattern(48 * 1024, 6);
    std::array<iovec, 3> pieces{{
        {const_cast<std::byte*>(payload.data()), 1000},
        {const_cast<std::byte*>(payload.data() + 1000), 0},
        {const_cast<std::byte*>(payload.data() + 1000), payload.size() - 1000},
    }};
    auto [error, n] = context->block_on([&]() -> task<io_result<std::size_t>> {
        co_return co_await with_timeout(pair.ours.send_all_gather(pieces), never);
    }());
    REQUIRE_FALSE(error);
    REQUIRE(n == payload.size());
    const auto received = read_exactly(pair.peer.get(), n);
    UCORO_CHECK_SAME_BYTES(received, payload);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout(send_all_gather) into a full socket times out with the count it sent") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    const auto before = fill_until_full(pair.ours.native_handle());
    const auto payload = make_pattern(8 * 1024, 7);
    std::array<iovec, 2> pieces{{
        {const_cast<std::byte*>(payload.data()), 3000},
        {const_cast<std::byte*>(payload.data() + 3000), payload.size() - 3000},
    }};
    io_result<std::size_t> result;
    const auto took = timed([&] {
        result = context->block_on([&]() -> task<io_result<std::size_t>> {
            co_return co_await with_timeout(pair.ours.send_all_gather(pieces), short_deadline);
        }());
    });
    CHECK(result.error == std::errc::timed_out);
    REQUIRE(result.value < payload.size());
    CHECK(took >= short_deadline);
    std::vector<std::byte> expected = before;
    expected.insert(expected.end(), payload.begin(),
                    payload.begin() + static_cast<std::ptrdiff_t>(result.value));
    ::shutdown(pair.ours.native_handle(), SHUT_WR);
    const auto received = read_exactly(pair.peer.get(), expected.size() + 1);
    UCORO_CHECK_SAME_BYTES(received, expected);
}

// --- accept ------------------------------------------------------------------------------

TEST_CASE("with_timeout(accept) in time gives the connection that came") {
    auto context = make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    // The handshake completes into the backlog before the accept is even submitted.
    ucoro_test::unique_fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const address to = server.local_address();
    REQUIRE(::connect(client.get(), to.data(), to.size()) == 0);
    address client_address;
    socklen_t length = address::capacity();
    REQUIRE(::getsockname(client.get(), client_address.data(), &length) == 0);

    auto [error, accepted] = context->block_on([&]() -> task<io_result<socket>> {
        co_return co_await with_timeout(server.accept(), never);
    }());
    REQUIRE_FALSE(error);
    REQUIRE(accepted.is_open());
    CHECK(accepted.peer_address() == client_address);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout(accept) with nobody connecting times out") {
    auto context = make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    io_result<socket> result;
    const auto took = timed([&] {
        result = context->block_on([&]() -> task<io_result<socket>> {
            co_return co_await with_timeout(server.accept(), short_deadline);
        }());
    });
    CHECK(result.error == std::errc::timed_out);
    CHECK_FALSE(result.value.is_open());
    CHECK(took >= short_deadline);
    CHECK(context->in_flight() == 0);
}

// --- connect -----------------------------------------------------------------------------

TEST_CASE("with_timeout(connect) in time gives the connected socket") {
    auto context = make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto [error, connected] = context->block_on([&]() -> task<io_result<socket>> {
        co_return co_await with_timeout(ucoro::net::connect(*context, server.local_address()),
                                        never);
    }());
    REQUIRE_FALSE(error);
    REQUIRE(connected.is_open());
    CHECK(connected.peer_address() == server.local_address());
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout(connect) to a listener whose backlog is full times out") {
    auto context = make_context();
    if (!context) {
        return;
    }
    // Backlog 0: one connection waits in the accept queue, and the SYNs after it are
    // dropped while it stays full (no accept is ever made), so a connect waits for its SYN
    // to be retransmitted, a second away.
    listener server(*context, address::ipv4_loopback(0), 0);
    std::vector<socket> queued;
    io_result<socket> result;
    std::chrono::steady_clock::duration took{};
    for (int attempt = 0; attempt < 8; ++attempt) {
        took = timed([&] {
            result = context->block_on([&]() -> task<io_result<socket>> {
                co_return co_await with_timeout(
                    ucoro::net::connect(*context, server.local_address()), 100ms);
            }());
        });
        if (result.error) {
            break;
        }
        queued.push_back(std::move(result.value)); // one more in the queue
    }
    INFO(queued.size() << " connections went into the backlog first");
    CHECK(result.error == std::errc::timed_out);
    CHECK_FALSE(result.value.is_open());
    CHECK(took >= 100ms);
    CHECK(context->in_flight() == 0);
}

// --- shutdown ----------------------------------------------------------------------------

TEST_CASE("with_timeout(shutdown) in time half-closes the connection") {
    // A shutdown never waits, so it cannot time out; the timer must not get in its way.
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    const std::error_code error = context->block_on([&]() -> task<std::error_code> {
        co_return co_await with_timeout(pair.ours.shutdown(ucoro::net::shutdown_how::send), never);
    }());
    REQUIRE_FALSE(error);
    std::byte byte{};
    CHECK(::read(pair.peer.get(), &byte, 1) == 0); // end of stream
    CHECK(context->in_flight() == 0);
}

// --- poll --------------------------------------------------------------------------------

TEST_CASE("with_timeout(poll) in time reports the readiness") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    write_all(pair.peer.get(), make_pattern(1, 8));
    auto [error, revents] = context->block_on([&]() -> task<io_result<unsigned>> {
        co_return co_await with_timeout(ucoro::poll(*context, pair.ours.native_handle(), POLLIN),
                                        never);
    }());
    REQUIRE_FALSE(error);
    CHECK((revents & POLLIN) != 0);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout(poll) on a descriptor that stays quiet times out") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    io_result<unsigned> result;
    const auto took = timed([&] {
        result = context->block_on([&]() -> task<io_result<unsigned>> {
            co_return co_await with_timeout(
                ucoro::poll(*context, pair.ours.native_handle(), POLLIN), short_deadline);
        }());
    });
    CHECK(result.error == std::errc::timed_out);
    CHECK(took >= short_deadline);
    CHECK(context->in_flight() == 0);
}

// --- sleep -------------------------------------------------------------------------------

TEST_CASE("with_timeout(sleep) shorter than the deadline sleeps it out") {
    auto context = make_context();
    if (!context) {
        return;
    }
    const std::error_code error = context->block_on([&]() -> task<std::error_code> {
        co_return co_await with_timeout(ucoro::sleep_for(*context, 1ms), never);
    }());
    CHECK_FALSE(error);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout(sleep) longer than the deadline times out") {
    auto context = make_context();
    if (!context) {
        return;
    }
    std::error_code error;
    const auto took = timed([&] {
        error = context->block_on([&]() -> task<std::error_code> {
            co_return co_await with_timeout(ucoro::sleep_for(*context, never), short_deadline);
        }());
    });
    CHECK(error == std::errc::timed_out);
    CHECK(took >= short_deadline);
    CHECK(took < 10s); // the hour-long sleep did not run
    CHECK(context->in_flight() == 0);
}

} // namespace
