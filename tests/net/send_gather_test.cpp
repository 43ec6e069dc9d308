// socket::send_all_gather over loopback: every byte of uneven pieces to a slow reader (so
// the gather send really is resubmitted part-way through a piece), nothing at all, and a
// cancel through the task's handle that reaches the send between rounds or in a later one.
#include <sys/socket.h>
#include <sys/uio.h>

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "support/counting.hpp"
#include "support/loopback.hpp"
#include "support/send_rounds.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"
#include "ucoro/task_handle.hpp"

using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;

namespace {

// send_all_gather of 4 MiB in uneven pieces to a peer that reads 512 bytes at a time, with
// MSG_WAITALL (the kernel retries short sends itself) or without (the awaiter advances the
// array and resubmits). Returns how many sendmsg requests it took, nothing if skipped.
std::optional<std::uint64_t> gather_to_slow_reader(bool waitall) {
    ucoro::io_context_options options;
    options.send_waitall = waitall;
    auto context = ucoro_test::make_context(options);
    if (!context) {
        return std::nullopt;
    }
    if (waitall && !context->features().send_waitall) {
        WARN("SKIPPED: this kernel does not retry short io_uring sends on MSG_WAITALL (5.19)");
        return std::nullopt;
    }
    REQUIRE(context->features().send_waitall == waitall);
    listener server(*context, address::ipv4_loopback(0));
    // A small receive buffer on the reader and a small send buffer on the writer: 4 MiB
    // cannot go in one sendmsg, so the array is advanced mid-piece and resubmitted.
    auto receiver = ucoro_test::connect_with_receive_buffer(*context, server.local_address(), 4096);
    auto accepted = context->block_on([&]() -> task<ucoro::io_result<ucoro::net::socket>> {
        co_return co_await server.accept();
    }());
    REQUIRE_FALSE(accepted.error);
    auto sender = std::move(accepted.value);
    ucoro_test::set_int_option(sender.native_handle(), SOL_SOCKET, SO_SNDBUF, 4096);

    constexpr std::size_t total = 4 * 1024 * 1024;
    const auto payload = ucoro_test::make_pattern(total, 777);
    // Pieces of odd sizes, with empty ones among them (at the front, between, at the end),
    // which must be skipped rather than end the send.
    std::vector<iovec> pieces;
    pieces.push_back({nullptr, 0});
    std::size_t offset = 0;
    for (std::size_t size = 1; offset < total; size = size * 3 + 7) {
        const std::size_t n = std::min(size % 300000 + 1, total - offset);
        pieces.push_back({const_cast<std::byte*>(payload.data() + offset), n});
        offset += n;
        if (pieces.size() % 5 == 0) {
            pieces.push_back({nullptr, 0});
        }
    }
    pieces.push_back({nullptr, 0});
    INFO(pieces.size() << " pieces");

    std::error_code send_error = std::make_error_code(std::errc::io_error);
    std::size_t sent = 0;
    ucoro_test::read_result received;
    auto writer = [&]() -> task<void> {
        auto [error, n] = co_await sender.send_all_gather(pieces);
        send_error = error;
        sent = n;
        (void)co_await sender.close(); // the reader stops at end of stream
    };
    auto reader = [&]() -> task<void> {
        received = co_await ucoro_test::read_until_end(receiver, 512, total + 1);
    };
    const std::uint64_t completions_before = context->stats().completions;
    context->spawn(writer());
    context->spawn(reader());
    context->run();

    CHECK_FALSE(send_error);
    CHECK(sent == total);
    CHECK_FALSE(received.error);
    CHECK(received.end_of_stream);
    UCORO_CHECK_SAME_BYTES(received.bytes, payload);
    // Every CQE was a recv, the close's (nothing is armed on the descriptor by then, so
    // close.cpp queues no cancel) or one sendmsg.
    const std::uint64_t sends =
        context->stats().completions - completions_before - received.recv_calls - 1;
    INFO("send_all_gather took " << sends << " sendmsg requests");
    return sends;
}

} // namespace

TEST_CASE("send_all_gather without MSG_WAITALL delivers uneven pieces in order to a peer that "
          "reads 512 bytes at a time") {
    const auto sends = gather_to_slow_reader(false);
    if (sends) {
        CHECK(*sends > 1); // it advanced the array mid-piece and resubmitted
    }
}

TEST_CASE("send_all_gather with MSG_WAITALL delivers uneven pieces in order to a slow reader in "
          "one request") {
    const auto sends = gather_to_slow_reader(true);
    if (sends) {
        CHECK(*sends == 1); // the kernel retried the short sends itself
    }
}

TEST_CASE("send_all_gather of nothing, or of empty pieces only, completes with 0 at once") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    const auto marker = ucoro_test::to_bytes("!?");

    const auto received = context->block_on([&]() -> task<ucoro_test::read_result> {
        const std::uint64_t completions_before = context->stats().completions;
        auto [none_error, none_sent] = co_await pair.client.send_all_gather({});
        CHECK_FALSE(none_error);
        CHECK(none_sent == 0);
        std::array<iovec, 2> empty{{{nullptr, 0}, {nullptr, 0}}};
        auto [empty_error, empty_sent] = co_await pair.client.send_all_gather(empty);
        CHECK_FALSE(empty_error);
        CHECK(empty_sent == 0);
        CHECK(context->stats().completions == completions_before); // nothing was submitted
        std::array<iovec, 2> two{{{const_cast<std::byte*>(marker.data()), 1},
                                  {const_cast<std::byte*>(marker.data() + 1), 1}}};
        auto [marker_error, marker_sent] = co_await pair.client.send_all_gather(two);
        REQUIRE_FALSE(marker_error);
        REQUIRE(marker_sent == marker.size());
        const std::error_code close_error = co_await pair.client.close();
        REQUIRE_FALSE(close_error);
        co_return co_await ucoro_test::read_until_end(pair.server, 64, 1024);
    }());
    CHECK(received.end_of_stream);
    UCORO_CHECK_SAME_BYTES(received.bytes, marker);
}

// --- Cancelling a gather send part-way -----------------------------------------------------

namespace {

struct gather_outcome {
    std::error_code error = std::make_error_code(std::errc::io_error);
    std::size_t sent = 0;
    bool done = false;
};

task<void> gather_all(ucoro::net::socket& sender, std::span<const std::byte> payload,
                      gather_outcome& outcome) {
    auto pieces = ucoro_test::uneven_pieces(payload);
    auto [error, sent] = co_await sender.send_all_gather(pieces);
    outcome = {error, sent, true};
}

} // namespace

TEST_CASE("send_all_gather whose task is cancelled between two rounds ends with "
          "operation_canceled instead of a next round") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    auto connection = ucoro_test::make_small_buffer_connection(*context);
    constexpr std::size_t total = 4 * 1024 * 1024;
    const auto payload = ucoro_test::make_pattern(total, 61);
    gather_outcome outcome;
    ucoro_test::read_result received;
    ucoro::task_handle sending;
    // The cancel arrives as round 3's CQE has been reaped and not yet dispatched: the
    // scope still holds the send, whose next round would be submitted by that dispatch.
    ucoro_test::send_rounds rounds(connection.sender.native_handle());
    rounds.act_after = 3;
    rounds.at_round_end = [&] { sending.cancel(); };
    ucoro::detail::set_fault_injector(*context, &rounds);
    sending = context->spawn(gather_all(connection.sender, payload, outcome));
    // Named lambdas: a spawned coroutine refers to its closure, which must outlive run().
    auto half_close_when_done = [&]() -> task<void> {
        co_await sending.join();
        (void)::shutdown(connection.sender.native_handle(), SHUT_WR);
    };
    context->spawn(half_close_when_done());
    auto reader = [&]() -> task<void> {
        received = co_await ucoro_test::read_until_end(connection.receiver, 512, total + 1);
    };
    context->spawn(reader());
    context->run();
    ucoro::detail::set_fault_injector(*context, nullptr);
    INFO(rounds.rounds << " rounds, " << outcome.sent << " bytes sent");
    REQUIRE(outcome.done);
    CHECK(outcome.error == std::errc::operation_canceled);
    CHECK(rounds.rounds == 3);
    CHECK(outcome.sent > 0);
    CHECK(outcome.sent < total);
    CHECK_FALSE(received.error);
    CHECK(received.end_of_stream);
    UCORO_CHECK_SAME_BYTES(received.bytes, std::span(payload).first(outcome.sent));
    CHECK(context->in_flight() == 0);
}

TEST_CASE("send_all_gather whose task is cancelled while a later round waits for a reader ends "
          "promptly with operation_canceled") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    // Nobody reads: the first round fills the buffers, the second waits in the kernel.
    auto connection = ucoro_test::make_small_buffer_connection(*context);
    constexpr std::size_t total = 4 * 1024 * 1024;
    const auto payload = ucoro_test::make_pattern(total, 67);
    gather_outcome outcome;
    ucoro_test::send_rounds rounds(connection.sender.native_handle());
    ucoro::detail::set_fault_injector(*context, &rounds);
    auto sending = context->spawn(gather_all(connection.sender, payload, outcome));
    bool second_round_seen = false;
    auto cancel_in_second_round = [&]() -> task<void> {
        // Bounded: the second round is submitted as the first one's CQE is dispatched.
        for (int turn = 0; turn < 100'000 && rounds.rounds < 2; ++turn) {
            co_await ucoro_test::next_turn{*context};
        }
        second_round_seen = rounds.rounds >= 2;
        co_await ucoro_test::next_turn{*context}; // that round is in the kernel now
        sending.cancel();
    };
    context->spawn(cancel_in_second_round());
    const auto start = std::chrono::steady_clock::now();
    context->run();
    const auto took = std::chrono::steady_clock::now() - start;
    ucoro::detail::set_fault_injector(*context, nullptr);
    INFO(rounds.rounds << " rounds, " << outcome.sent << " bytes sent");
    REQUIRE(second_round_seen);
    REQUIRE(outcome.done);
    CHECK(outcome.error == std::errc::operation_canceled);
    CHECK(outcome.sent > 0);
    CHECK(outcome.sent < total);
    CHECK(took < std::chrono::seconds(5)); // the cancel reached the later round
    CHECK(context->in_flight() == 0);
}
