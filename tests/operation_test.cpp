// The public operation contract (operation.hpp): an operation written outside the library,
// from an io_uring_prep_* call, behaves like a built-in one: its result comes back as
// io_result or error_code, with_timeout links a deadline to it, when_any's loser and
// task_handle::cancel reach it through the task's cancellation scope, and stop() ends it.
#include <catch2/catch.hpp>

#include <linux/time_types.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <span>
#include <system_error>
#include <variant>

#include "support/context.hpp"
#include "support/counting.hpp"
#include "support/loopback.hpp"
#include "support/stream_pair.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/operation.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/timeout.hpp"
#include "ucoro/when_any.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro_test::make_context;
using ucoro_test::make_stream_pair;

/// A receive written as a user would, on make_operation: nothing of the library's own.
auto receive(io_context& context, int fd, std::span<std::byte> buffer) {
    return ucoro::make_operation(
        context,
        [fd, buffer](io_uring_sqe& sqe) {
            io_uring_prep_recv(&sqe, fd, buffer.data(), buffer.size(), 0);
        },
        [](int n) { return static_cast<std::size_t>(n); });
}

/// The same kind of receive as a class: the state the SQE points to lives in it.
class peek_operation final : public ucoro::io_operation {
public:
    peek_operation(io_context& context, int fd) noexcept : io_operation(context), m_fd(fd) {}
    void prepare(io_uring_sqe& sqe) noexcept override {
        io_uring_prep_recv(&sqe, m_fd, m_byte.data(), m_byte.size(), MSG_PEEK);
    }
    ucoro::io_result<std::byte> await_resume() const noexcept {
        auto [error, n] = result_as<std::size_t>();
        if (!error && n == 0) {
            error = std::make_error_code(std::errc::connection_reset); // end of stream
        }
        return {error, m_byte[0]};
    }

private:
    int m_fd;
    std::array<std::byte, 1> m_byte{};
};

} // namespace

TEST_CASE("make_operation: a NOP completes with its res as io_result<int>") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto result = context->block_on([](io_context& ctx) -> task<ucoro::io_result<int>> {
        co_return co_await ucoro::make_operation(
            ctx, [](io_uring_sqe& sqe) { io_uring_prep_nop(&sqe); });
    }(*context));
    CHECK_FALSE(result.error);
    CHECK(result.value == 0);
}

TEST_CASE("make_operation: a map returning void gives an error_code, failures keep their errno") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto error = context->block_on([](io_context& ctx) -> task<std::error_code> {
        // fsync on a descriptor that is not open: EBADF from the kernel, not from ucoro.
        co_return co_await ucoro::make_operation(
            ctx, [](io_uring_sqe& sqe) { io_uring_prep_fsync(&sqe, 1'000'000, 0); }, [](int) {});
    }(*context));
    CHECK(error == std::errc::bad_file_descriptor);
}

TEST_CASE("a user-defined operation receives bytes byte for byte") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    const std::array<std::byte, 3> sent{std::byte{1}, std::byte{2}, std::byte{3}};
    ucoro_test::write_all(pair.peer.get(), sent);
    auto [peeked, received] = context->block_on(
        [](io_context& ctx, int fd) -> task<std::pair<std::byte, std::array<std::byte, 3>>> {
            auto [peek_error, first] = co_await peek_operation(ctx, fd);
            REQUIRE_FALSE(peek_error);
            std::array<std::byte, 3> buffer{};
            auto [error, n] = co_await receive(ctx, fd, buffer);
            REQUIRE_FALSE(error);
            REQUIRE(n == 3);
            co_return std::pair{first, buffer};
        }(*context, pair.ours.native_handle()));
    CHECK(std::to_integer<int>(peeked) == 1);
    UCORO_CHECK_SAME_BYTES(received, sent);
}

TEST_CASE("with_timeout: a user-defined receive on a silent peer times out") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    auto timed = context->block_on([](io_context& ctx, int fd) -> task<std::error_code> {
        std::array<std::byte, 16> buffer{};
        auto [error, n] = co_await ucoro::with_timeout(receive(ctx, fd, buffer), 20ms);
        co_return error;
    }(*context, pair.ours.native_handle()));
    CHECK(timed == std::errc::timed_out);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("when_any: a user-defined receive that loses is cancelled and out of the ring") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    std::error_code loser_error;
    auto winner =
        context->block_on([](io_context& ctx, int fd, std::error_code& loser) -> task<std::size_t> {
            auto silent = [](io_context& c, int f, std::error_code& out) -> task<int> {
                std::array<std::byte, 16> buffer{};
                auto [error, n] = co_await receive(c, f, buffer);
                out = error;
                co_return 1;
            };
            auto timer = [](io_context& c) -> task<int> {
                (void)co_await ucoro::sleep_for(c, 1ms);
                co_return 2;
            };
            auto result = co_await ucoro::when_any(silent(ctx, fd, loser), timer(ctx));
            co_return result.index;
        }(*context, pair.ours.native_handle(), loser_error));
    CHECK(winner == 1);
    CHECK(loser_error == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("task_handle::cancel and stop() reach a user-defined operation") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    std::error_code by_cancel;
    std::error_code by_stop;
    auto wait = [](io_context& ctx, int fd, std::error_code& out) -> task<void> {
        std::array<std::byte, 16> buffer{};
        auto [error, n] = co_await receive(ctx, fd, buffer);
        out = error;
    };
    auto handle = context->spawn(wait(*context, pair.ours.native_handle(), by_cancel));
    context->spawn(wait(*context, pair.ours.native_handle(), by_stop));
    std::size_t armed = 0;
    context->spawn(
        [](io_context& ctx, ucoro::task_handle& h, std::size_t& armed_out) -> task<void> {
            // One turn puts both receives in the kernel; the cancel and the stop then reach
            // operations that are really waiting there.
            co_await ucoro_test::next_turn{ctx};
            armed_out = ctx.in_flight();
            h.cancel();
            co_await ucoro_test::next_turn{ctx};
            ctx.stop();
        }(*context, handle, armed));
    context->run();
    CHECK(armed == 2);
    CHECK(by_cancel == std::errc::operation_canceled);
    CHECK(by_stop == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("opcode_supported: NOP is there, an opcode no kernel has is not") {
    auto context = make_context();
    if (!context) {
        return;
    }
    CHECK(ucoro::opcode_supported(*context, IORING_OP_NOP));
    // The probe's last_op is the kernel's; 255 is past any kernel's list.
    CHECK_FALSE(ucoro::opcode_supported(*context, static_cast<io_uring_op>(255)));
}
