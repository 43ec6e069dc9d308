// with_timeout: fires on a silent peer as timed_out, stays quiet for a peer that answers,
// loses and duplicates no byte when the timer races a recv that moved data, and survives a
// 4-entry SQ with 10,000 timed recvs in flight (no split link, every coroutine resumed once).
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>
#include <vector>

#include "support/counting.hpp"
#include "support/stream_pair.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/timeout.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro::with_timeout;
using ucoro_test::make_context;
using ucoro_test::make_stream_pair;
using ucoro_test::stream_pair;
using ucoro_test::write_all;

std::vector<std::byte> pattern(std::size_t size, std::uint8_t seed) {
    std::vector<std::byte> bytes(size);
    for (std::size_t i = 0; i < size; ++i) {
        bytes[i] = static_cast<std::byte>((seed + i * 7) & 0xff);
    }
    return bytes;
}

struct recv_outcome {
    std::error_code error;
    std::size_t size = 0;
    int resumed = 0;
};

task<void> timed_recv(ucoro::net::socket& sock, std::span<std::byte> buffer,
                      std::chrono::nanoseconds timeout, recv_outcome& outcome) {
    auto [error, n] = co_await with_timeout(sock.recv(buffer), timeout);
    outcome.error = error;
    outcome.size = n;
    ++outcome.resumed;
}

/// Reads until `buffer` is full or the stream fails; returns how many bytes arrived.
task<std::size_t> recv_exactly(ucoro::net::socket& sock, std::span<std::byte> buffer) {
    std::size_t got = 0;
    while (got < buffer.size()) {
        auto [error, n] = co_await sock.recv(buffer.subspan(got));
        if (error || n == 0) {
            break;
        }
        got += n;
    }
    co_return got;
}

TEST_CASE("with_timeout reports timed_out on a silent peer, and the late bytes stay readable") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    std::vector<std::byte> buffer(64);
    recv_outcome outcome;
    const auto start = std::chrono::steady_clock::now();
    context->block_on(timed_recv(pair.ours, buffer, 20ms, outcome));
    CHECK(std::chrono::steady_clock::now() - start >= 20ms);
    CHECK(outcome.resumed == 1);
    CHECK(outcome.error == std::errc::timed_out);
    CHECK(outcome.error != std::errc::operation_canceled);
    CHECK(outcome.size == 0);
    CHECK(context->in_flight() == 0);

    // The cancelled recv took nothing: what the peer says now arrives whole.
    const auto sent = pattern(48, 3);
    write_all(pair.peer.get(), sent);
    const std::size_t got =
        context->block_on(recv_exactly(pair.ours, std::span(buffer).first(sent.size())));
    REQUIRE(got == sent.size());
    CHECK(std::equal(sent.begin(), sent.end(), buffer.begin()));
}

task<void> answer_next_turn(io_context& context, int fd, std::span<const std::byte> bytes) {
    co_await ucoro_test::next_turn{context}; // the timed recv is in the kernel by now
    write_all(fd, bytes);
}

task<void> recv_and_answer(io_context& context, stream_pair& pair, std::span<std::byte> buffer,
                           std::span<const std::byte> sent, recv_outcome& outcome) {
    context.spawn(answer_next_turn(context, pair.peer.get(), sent));
    // An hour: if the answered recv did not cancel its timer, block_on would wait for it
    // and the test would hit ctest's time limit instead of passing.
    co_await timed_recv(pair.ours, buffer, 1h, outcome);
}

TEST_CASE("with_timeout does not fire for a peer that answers in time") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    const auto sent = pattern(100, 11);
    std::vector<std::byte> buffer(sent.size());
    recv_outcome outcome;
    context->block_on(recv_and_answer(*context, pair, buffer, sent, outcome));
    CHECK(outcome.resumed == 1);
    CHECK_FALSE(outcome.error);
    REQUIRE(outcome.size == sent.size());
    CHECK(std::equal(sent.begin(), sent.end(), buffer.begin()));
    CHECK(context->in_flight() == 0);
}

/// Makes the link timeout's CQE say the timer fired (it reports -ECANCELED when its
/// operation finished first): the race in which the deadline passes as the data arrives.
class timer_fired_too final : public ucoro::detail::fault_injector {
public:
    explicit timer_fired_too(int timer_result) : m_timer_result(timer_result) {}

    verdict on_completion(std::uint64_t, int& result, std::uint32_t&) noexcept override {
        if (result == -ECANCELED) {
            result = m_timer_result;
            ++rewritten;
        }
        return verdict::deliver;
    }

    int rewritten = 0;

private:
    int m_timer_result;
};

TEST_CASE("a timer that fires as the recv takes bytes loses and duplicates none of them") {
    auto context = make_context();
    if (!context) {
        return;
    }
    // -ETIME: the kernel's word for "fired"; -EALREADY: fired, but the recv was already
    // completing and could not be cancelled.
    const int timer_result = GENERATE(-ETIME, -EALREADY);
    timer_fired_too faults(timer_result);
    ucoro::detail::set_fault_injector(*context, &faults);
    auto pair = make_stream_pair(*context);
    const auto sent = pattern(1000, 5);
    write_all(pair.peer.get(), sent);
    ::shutdown(pair.peer.get(), SHUT_WR);

    std::vector<std::byte> received(sent.size() + 1);
    recv_outcome outcome;
    context->block_on(timed_recv(pair.ours, std::span(received).first(600), 1h, outcome));
    ucoro::detail::set_fault_injector(*context, nullptr);
    CHECK(faults.rewritten == 1);
    CHECK(outcome.resumed == 1);
    REQUIRE_FALSE(outcome.error);
    REQUIRE(outcome.size > 0);
    // The rest, then end of stream: every byte once, in order.
    const std::size_t rest =
        context->block_on(recv_exactly(pair.ours, std::span(received).subspan(outcome.size)));
    REQUIRE(outcome.size + rest == sent.size());
    CHECK(std::equal(sent.begin(), sent.end(), received.begin()));
}

task<void> stop_then_wait(io_context& context, stream_pair& pair, std::span<std::byte> buffer,
                          recv_outcome& outcome) {
    context.spawn(timed_recv(pair.ours, buffer, 1h, outcome));
    co_await ucoro_test::next_turn{context};
    context.stop();
}

TEST_CASE("stop() ends a timed recv with operation_canceled, not timed_out") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    std::vector<std::byte> buffer(16);
    recv_outcome outcome;
    context->spawn(stop_then_wait(*context, pair, buffer, outcome));
    context->run();
    CHECK(outcome.resumed == 1);
    CHECK(outcome.error == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}

/// One SQE first, for some: otherwise pairs of SQEs would always fit the 4-entry SQ evenly
/// and a link could never straddle a full SQ.
task<void> odd_then_timed_recv(io_context& context, bool odd, ucoro::net::socket& sock,
                               std::span<std::byte> buffer, recv_outcome& outcome) {
    if (odd) {
        REQUIRE_FALSE(co_await ucoro::sleep_for(context, 0ns));
    }
    co_await timed_recv(sock, buffer, 100ms, outcome);
}

TEST_CASE("10,000 timed recvs through a 4-entry SQ: no link split, each resumed once") {
    auto context = make_context(ucoro::io_context_options{4});
    if (!context) {
        return;
    }
    // 500 streams, 10 bytes waiting in each, 20 one-byte timed recvs on each: 10 take a byte,
    // 10 time out. A split link would show as EINVAL or as a recv without its timer (a hang).
    constexpr std::size_t streams = 500;
    constexpr std::size_t recvs_per_stream = 20;
    constexpr std::size_t bytes_per_stream = 10;
    std::vector<stream_pair> pairs;
    pairs.reserve(streams);
    for (std::size_t s = 0; s < streams; ++s) {
        pairs.push_back(make_stream_pair(*context));
        write_all(pairs.back().peer.get(), pattern(bytes_per_stream, static_cast<std::uint8_t>(s)));
    }
    std::vector<std::byte> buffers(streams * recvs_per_stream);
    std::vector<recv_outcome> outcomes(streams * recvs_per_stream);
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        context->spawn(odd_then_timed_recv(*context, i % 3 == 0, pairs[i / recvs_per_stream].ours,
                                           std::span(&buffers[i], 1), outcomes[i]));
    }
    context->run();
    CHECK(context->in_flight() == 0);
    CHECK(context->stats().completions_lost == 0);
    for (std::size_t s = 0; s < streams; ++s) {
        std::vector<std::byte> got;
        std::size_t timed_out = 0;
        for (std::size_t r = 0; r < recvs_per_stream; ++r) {
            const std::size_t i = s * recvs_per_stream + r;
            INFO("stream " << s << " recv " << r << ": " << outcomes[i].error.message());
            REQUIRE(outcomes[i].resumed == 1);
            if (outcomes[i].error == std::errc::timed_out) {
                ++timed_out;
            } else {
                REQUIRE_FALSE(outcomes[i].error);
                REQUIRE(outcomes[i].size == 1);
                got.push_back(buffers[i]);
            }
        }
        INFO("stream " << s);
        REQUIRE(timed_out == recvs_per_stream - bytes_per_stream);
        auto sent = pattern(bytes_per_stream, static_cast<std::uint8_t>(s));
        std::sort(sent.begin(), sent.end());
        std::sort(got.begin(), got.end());
        REQUIRE(got.size() == sent.size());
        REQUIRE(std::equal(got.begin(), got.end(), sent.begin()));
    }
}

} // namespace
