// 03_nop_awaitable: write your own io_uring operation, on the contract every built-in one uses.
//
// Shows: an operation as a class derived from ucoro::io_operation (prepare() fills the SQE,
// await_resume() reads the CQE's res); the same in one call with ucoro::make_operation;
// user_data carrying the operation's address from the SQE to the CQE; several coroutines'
// requests reaching the kernel in one io_uring_enter; an operation of your own under
// with_timeout and when_any, cancelled like a built-in one.
// IORING_OP_NOP does nothing and completes with result 0: all that is left to see is the
// round trip through the ring. A read on a socket nobody writes to shows the cancels.
// Tutorial: docs/tutorial/03_inside_an_awaitable.md
// Needs: Linux >= 5.11 (IORING_OP_NOP itself exists since 5.1).
// Try: build/debug/bin/03_nop_awaitable
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <span>
#include <string_view>
#include <system_error>

namespace {

using namespace std::chrono_literals;

// ANCHOR: awaitable
/// co_await nop(context): one IORING_OP_NOP through the ring.
class nop_operation final : public ucoro::io_operation {
public:
    explicit nop_operation(ucoro::io_context& context) noexcept : io_operation(context) {}

    // Called by the loop when the coroutine suspends at co_await: fill in the SQE. The loop
    // sets its user_data to `this`. Nothing else belongs here: no I/O, no throwing.
    void prepare(io_uring_sqe& sqe) noexcept override { io_uring_prep_nop(&sqe); }

    // The value of the whole co_await expression, once the CQE whose user_data is `this`
    // has come back and the loop has resumed the coroutine.
    int await_resume() const {
        fmt::print("  await_resume: CQE for {} with res = {}\n", fmt::ptr(this), result());
        return result();
    }
};

nop_operation nop(ucoro::io_context& context) noexcept {
    return nop_operation(context);
}
// ANCHOR_END: awaitable

// ANCHOR: use
ucoro::task<void> one_nop(ucoro::io_context& context) {
    fmt::print("before co_await\n");
    const int result = co_await nop(context); // the frame holds the nop_operation
    fmt::print("after co_await: result {}\n", result);
}

ucoro::task<void> named_nop(ucoro::io_context& context, int id) {
    const int result = co_await nop(context);
    fmt::print("coroutine {} resumed with {}\n", id, result);
}
// ANCHOR_END: use

// ANCHOR: make_operation
/// co_await read_some(context, fd, buffer): IORING_OP_READ, made in one call. The first
/// lambda fills the SQE; the second turns a non-negative res into the value (here the byte
/// count), and the await gives io_result<std::size_t>. The buffer outlives the await.
auto read_some(ucoro::io_context& context, int fd, std::span<char> buffer) {
    return ucoro::make_operation(
        context,
        [fd, buffer](io_uring_sqe& sqe) {
            io_uring_prep_read(&sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), 0);
        },
        [](int n) { return static_cast<std::size_t>(n); });
}
// ANCHOR_END: make_operation

// ANCHOR: composed
ucoro::task<void> read_until_cancelled(ucoro::io_context& context, int fd) {
    std::array<char, 16> buffer{};
    const auto [error, n] = co_await read_some(context, fd, buffer);
    fmt::print("  the read ended: {}\n", error.message());
}

ucoro::task<void> nap(ucoro::io_context& context, std::chrono::milliseconds duration) {
    (void)co_await ucoro::sleep_for(context, duration); // cancelled when it loses
}

ucoro::task<void> nop_once(ucoro::io_context& context) {
    co_await nop(context);
}

ucoro::task<void> deadlines_and_races(ucoro::io_context& context, int fd, int peer) {
    // with_timeout links a deadline to any io_operation: the NOP beats it, the read cannot.
    const int in_time = co_await ucoro::with_timeout(nop(context), 1s);
    fmt::print("nop with a 1 s deadline: result {}\n", in_time);
    std::array<char, 16> buffer{};
    const auto late = co_await ucoro::with_timeout(read_some(context, fd, buffer), 20ms);
    fmt::print("read with a 20 ms deadline: {}\n", late.error.message());

    // when_any cancels the losers, wherever they are suspended: our own operations too.
    const auto first = co_await ucoro::when_any(nop_once(context), nap(context, 1h));
    fmt::print("when_any: task {} won (the NOP), the hour-long sleep was cancelled\n", first.index);
    const auto second =
        co_await ucoro::when_any(read_until_cancelled(context, fd), nap(context, 10ms));
    fmt::print("when_any: task {} won (the sleep)\n", second.index);

    // Cut short, the read took no byte: the next one gets them all.
    const std::string_view hello = "hello";
    if (::write(peer, hello.data(), hello.size()) != static_cast<ssize_t>(hello.size())) {
        fmt::print(stderr, "03_nop_awaitable: write to the socket pair failed\n");
        co_return;
    }
    const auto [error, n] = co_await read_some(context, fd, buffer);
    fmt::print("read after a write: \"{}\" ({})\n", std::string_view(buffer.data(), n),
               error ? error.message() : "ok");
}
// ANCHOR_END: composed

} // namespace

// ANCHOR: main
int main() {
    ucoro::io_context context;
    context.block_on(one_nop(context));

    fmt::print("three coroutines, one NOP each:\n");
    const auto calls_before = context.stats().submit_calls;
    for (int id = 1; id <= 3; ++id) {
        context.spawn(named_nop(context, id));
    }
    context.run();
    fmt::print("io_uring_enter calls for the three: {}\n",
               context.stats().submit_calls - calls_before);

    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        fmt::print(stderr, "03_nop_awaitable: socketpair: {}\n",
                   std::error_code(errno, std::system_category()).message());
        return 1;
    }
    context.block_on(deadlines_and_races(context, fds[0], fds[1]));
    fmt::print("{} operations in flight at the end\n", context.in_flight());
    ::close(fds[0]);
    ::close(fds[1]);
}
// ANCHOR_END: main
