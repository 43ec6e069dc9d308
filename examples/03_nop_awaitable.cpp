// 03_nop_awaitable: write your own awaitable, for the simplest io_uring request there is.
//
// Shows: the three functions the compiler calls for `co_await` (await_ready, await_suspend,
// await_resume) and the two the io_context calls (prepare fills the SQE, complete receives
// the CQE); user_data carrying the awaiter's address from the SQE to the CQE; several
// coroutines' requests reaching the kernel in one io_uring_enter.
// IORING_OP_NOP does nothing and completes with result 0: all that is left to see is the
// round trip through the ring.
// Tutorial: docs/tutorial/03_inside_an_awaitable.md
// Needs: Linux >= 5.11 (IORING_OP_NOP itself exists since 5.1).
// Try: build/debug/bin/03_nop_awaitable
#include <ucoro/ucoro.hpp>

#include <fmt/core.h>
#include <liburing.h>

#include <coroutine>
#include <cstdint>

namespace {

// ANCHOR: awaitable
/// co_await nop(context): one IORING_OP_NOP through the ring.
class nop_operation final : public ucoro::detail::operation {
public:
    explicit nop_operation(ucoro::io_context& context) noexcept : operation(&context) {}

    // 1. co_await asks: is the result already here? Never: there is a request to make.
    bool await_ready() const noexcept { return false; }

    // 2. The coroutine is now suspended. Remember who to resume, then queue the request:
    //    submit() takes an SQE, calls prepare() and sets the SQE's user_data to `this`.
    void await_suspend(std::coroutine_handle<> waiter) {
        m_waiter = waiter;
        fmt::print("  await_suspend: queueing an SQE, user_data = {}\n", fmt::ptr(this));
        context().submit(*this);
    }

    // 3. Called by submit(): fill in the SQE.
    void prepare(io_uring_sqe& sqe) noexcept override { io_uring_prep_nop(&sqe); }

    // 4. Called by the loop for the CQE whose user_data is `this`.
    void complete(int result, std::uint32_t /*flags*/) noexcept override {
        m_result = result;
        fmt::print("  complete: CQE for {} with res = {}, resuming\n", fmt::ptr(this), result);
        ucoro::detail::resume(m_waiter); // the loop's one way to resume a coroutine
    }

    // 5. The value of the whole co_await expression.
    int await_resume() const noexcept { return m_result; }

    // Who waits on this operation, for UCORO_TRACE=1 (chapter 4).
    std::coroutine_handle<> waiter() const noexcept override { return m_waiter; }

private:
    std::coroutine_handle<> m_waiter;
    int m_result = 0;
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
}
// ANCHOR_END: main
