// with_timeout on sends that take several rounds (send_all, send_all_gather after short
// sends): every round carries the one deadline and stays in the task's scope. Megabytes
// through small socket buffers, so the rounds are many: in time, every byte arrives and
// the timer never fires; to a reader slower than the deadline, timed_out comes at the
// deadline, not after the whole payload, with the exact count of bytes that went; and a
// cancel or stop() that comes between two rounds ends the send instead of a next round.
#include <sys/socket.h>
#include <sys/uio.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <span>
#include <system_error>
#include <vector>

#include "support/loopback.hpp"
#include "support/send_rounds.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/task_handle.hpp"
#include "ucoro/timeout.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::io_result;
using ucoro::task;
using ucoro::with_timeout;
using ucoro_test::make_pattern;
using ucoro_test::read_result;

enum class send_kind { send_all, send_all_gather };

/// One timed send of all of `payload`, as send_all or as send_all_gather of uneven pieces.
task<io_result<std::size_t>> timed_send(ucoro::net::socket& sender,
                                        std::span<const std::byte> payload, send_kind kind,
                                        std::chrono::nanoseconds timeout) {
    if (kind == send_kind::send_all) {
        co_return co_await with_timeout(sender.send_all(payload), timeout);
    }
    auto pieces = ucoro_test::uneven_pieces(payload); // in this frame, as the send needs
    co_return co_await with_timeout(sender.send_all_gather(pieces), timeout);
}

/// What the writer saw and when.
struct send_outcome {
    std::error_code error = std::make_error_code(std::errc::io_error);
    std::size_t sent = 0;
    std::chrono::steady_clock::duration took{};
    bool done = false;
};

/// Sends with a deadline, then closes, so the reader sees end of stream after the last byte.
task<void> writer(ucoro::net::socket& sender, std::span<const std::byte> payload, send_kind kind,
                  std::chrono::nanoseconds timeout, send_outcome& outcome) {
    const auto start = std::chrono::steady_clock::now();
    auto [error, sent] = co_await timed_send(sender, payload, kind, timeout);
    outcome.took = std::chrono::steady_clock::now() - start;
    outcome.error = error;
    outcome.sent = sent;
    outcome.done = true;
    (void)co_await sender.close();
}

/// A reader that takes 4 KiB at a time and, while the writer is still sending, pauses
/// 2 ms after each: at most 2 MB/s, so megabytes take seconds. Once the writer is done it
/// reads the rest at full speed, until end of stream.
task<read_result> slow_reader(io_context& context, ucoro::net::socket& receiver,
                              const send_outcome& writer_state, std::size_t limit) {
    read_result result;
    std::vector<std::byte> buffer(4096);
    while (result.bytes.size() < limit && result.recv_calls <= limit) {
        auto [error, n] = co_await receiver.recv(buffer);
        ++result.recv_calls;
        if (error) {
            result.error = error;
            break;
        }
        if (n == 0) {
            result.end_of_stream = true;
            break;
        }
        result.bytes.insert(result.bytes.end(), buffer.begin(),
                            buffer.begin() + static_cast<std::ptrdiff_t>(n));
        if (!writer_state.done) {
            (void)co_await ucoro::sleep_for(context, 2ms); // the peer's pace, not a wait
        }
    }
    co_return result;
}

/// The bytes the reader got are exactly the first `sent` of the payload.
void check_prefix(const read_result& received, std::span<const std::byte> payload,
                  std::size_t sent) {
    CHECK_FALSE(received.error);
    CHECK(received.end_of_stream);
    UCORO_CHECK_SAME_BYTES(received.bytes, payload.first(sent));
}

void in_time_through_many_rounds(send_kind kind) {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    auto connection = ucoro_test::make_small_buffer_connection(*context);
    ucoro_test::send_rounds rounds(connection.sender.native_handle());
    ucoro::detail::set_fault_injector(*context, &rounds);
    constexpr std::size_t total = 4 * 1024 * 1024;
    const auto payload = make_pattern(total, 41);
    send_outcome outcome;
    read_result received;
    context->spawn(writer(connection.sender, payload, kind, 1h, outcome));
    // Named lambdas: a spawned coroutine refers to its closure, which must outlive run().
    auto reader = [&]() -> task<void> {
        received = co_await ucoro_test::read_until_end(connection.receiver, 512, total + 1);
    };
    context->spawn(reader());
    // An hour: a timer left armed by any round would keep run() waiting, and the test would
    // hit ctest's limit instead of passing.
    context->run();
    ucoro::detail::set_fault_injector(*context, nullptr);
    INFO(rounds.rounds << " rounds");
    CHECK_FALSE(outcome.error);
    CHECK(outcome.sent == total);
    CHECK(rounds.rounds > 1);
    CHECK(rounds.completed == rounds.rounds);
    check_prefix(received, payload, total);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout(send_all) in time: 4 MiB in many rounds, every byte, no timer left") {
    in_time_through_many_rounds(send_kind::send_all);
}

TEST_CASE("with_timeout(send_all_gather) in time: 4 MiB in many rounds, every byte, no timer "
          "left") {
    in_time_through_many_rounds(send_kind::send_all_gather);
}

void deadline_holds_across_rounds(send_kind kind) {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    auto connection = ucoro_test::make_small_buffer_connection(*context);
    ucoro_test::send_rounds rounds(connection.sender.native_handle());
    ucoro::detail::set_fault_injector(*context, &rounds);
    // 8 MiB at 2 MB/s at most: four seconds or more for the whole payload.
    constexpr std::size_t total = 8 * 1024 * 1024;
    constexpr auto deadline = 200ms;
    const auto payload = make_pattern(total, 43);
    send_outcome outcome;
    read_result received;
    context->spawn(writer(connection.sender, payload, kind, deadline, outcome));
    auto reader = [&]() -> task<void> {
        received = co_await slow_reader(*context, connection.receiver, outcome, total + 1);
    };
    context->spawn(reader());
    context->run();
    ucoro::detail::set_fault_injector(*context, nullptr);
    const auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(outcome.took);
    INFO(rounds.rounds << " rounds, " << outcome.sent << " bytes sent, timed out after "
                       << took_ms.count() << " ms");
    CHECK(outcome.error == std::errc::timed_out);
    CHECK(outcome.took >= deadline);
    // Not after the whole payload (seconds): the rounds after the first ran under the same
    // deadline. The margin is for a loaded machine.
    CHECK(outcome.took < deadline + 1500ms);
    CHECK(rounds.rounds > 1);
    CHECK(rounds.completed == rounds.rounds);
    CHECK(outcome.sent > 0);
    CHECK(outcome.sent < total);
    // The count is exact: the reader got those bytes, no more, no fewer.
    check_prefix(received, payload, outcome.sent);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout(send_all) to a slow reader times out at the deadline, not after the "
          "payload") {
    deadline_holds_across_rounds(send_kind::send_all);
}

TEST_CASE("with_timeout(send_all_gather) to a slow reader times out at the deadline, not after "
          "the payload") {
    deadline_holds_across_rounds(send_kind::send_all_gather);
}

TEST_CASE("with_timeout(send_all) whose deadline passed during a short send starts no next "
          "round") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    auto connection = ucoro_test::make_small_buffer_connection(*context);
    ucoro_test::send_rounds rounds(connection.sender.native_handle());
    ucoro::detail::set_fault_injector(*context, &rounds);
    constexpr std::size_t total = 4 * 1024 * 1024;
    const auto payload = make_pattern(total, 47);
    // Due at once. A first send that completes as it is issued beats even a due timer; the
    // check before each later round is what stops it from going on as long as the socket
    // takes bytes.
    send_outcome outcome;
    read_result received;
    context->spawn(writer(connection.sender, payload, send_kind::send_all, 0ns, outcome));
    auto reader = [&]() -> task<void> {
        received = co_await ucoro_test::read_until_end(connection.receiver, 512, total + 1);
    };
    context->spawn(reader());
    context->run();
    ucoro::detail::set_fault_injector(*context, nullptr);
    CHECK(outcome.error == std::errc::timed_out);
    CHECK(rounds.rounds == 1);
    CHECK(outcome.sent < total);
    check_prefix(received, payload, outcome.sent);
    CHECK(context->in_flight() == 0);
}

/// Cancels (through the handle, or by stopping the context) at the end of round 3 of a
/// timed send to a reader that takes 512 bytes at a time.
void interrupted_between_rounds(send_kind kind, bool by_stop) {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    auto connection = ucoro_test::make_small_buffer_connection(*context);
    ucoro_test::send_rounds rounds(connection.sender.native_handle());
    constexpr std::size_t total = 4 * 1024 * 1024;
    const auto payload = make_pattern(total, 53);
    send_outcome outcome;
    read_result received;
    ucoro::task_handle sending;
    rounds.act_after = 3;
    rounds.at_round_end = [&] {
        if (by_stop) {
            context->stop();
        } else {
            sending.cancel();
        }
    };
    ucoro::detail::set_fault_injector(*context, &rounds);
    // Not a writer() that closes: a cancelled task's close is not what this checks. The
    // reader is ended by the half-close below, once the sender is done.
    auto send_timed = [&]() -> task<void> {
        auto [error, sent] = co_await timed_send(connection.sender, payload, kind, 1h);
        outcome.error = error;
        outcome.sent = sent;
        outcome.done = true;
    };
    sending = context->spawn(send_timed());
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
    // The cancel came after round 3 had completed with bytes: there is no round 4.
    CHECK(rounds.rounds == 3);
    CHECK(rounds.completed == 3);
    CHECK(outcome.sent > 0);
    CHECK(outcome.sent < total);
    if (!by_stop) {
        // stop() also cancels the reader, which then never sees the end of the stream.
        check_prefix(received, payload, outcome.sent);
    }
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout(send_all_gather) cancelled through its task's handle between rounds "
          "ends with operation_canceled, no next round") {
    interrupted_between_rounds(send_kind::send_all_gather, /*by_stop=*/false);
}

TEST_CASE("with_timeout(send_all) cancelled through its task's handle between rounds ends with "
          "operation_canceled, no next round") {
    interrupted_between_rounds(send_kind::send_all, /*by_stop=*/false);
}

TEST_CASE("with_timeout(send_all_gather) stopped between rounds ends with operation_canceled, "
          "no next round") {
    interrupted_between_rounds(send_kind::send_all_gather, /*by_stop=*/true);
}

} // namespace
