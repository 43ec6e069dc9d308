// The contract for adding an io_uring operation to ucoro: every built-in one is written on it.
//
// Two ways in:
// - make_operation(context, prepare, map): an io_uring_prep_* call and a result mapping,
//   for a request whose result owns nothing (a NOP, a read, a write, an fsync);
// - a class derived from io_operation: when the operation keeps memory of its own for the
//   kernel (a msghdr, a sockaddr), owns what its result names (a descriptor), or takes
//   several rounds (the rest of a short send).
//
// Either way the operation is one awaiter that submits itself when the coroutine suspends
// and resumes it from its CQE. Awaited in a task, it enters the task's cancellation scope,
// so task_handle::cancel, when_any's losers and io_context::stop() cancel it; with_timeout
// can link a deadline to it; the result comes back as io_result<T> or std::error_code, the
// way every built-in operation reports it (io_result.hpp).
//
// The rules, each with its reason:
// 1. Everything the SQE points to lives in the operation (or outlives the co_await): the
//    buffers, iovecs, msghdr, sockaddr and paths. The awaiter lives in the coroutine's frame
//    until the CQE, and the kernel may read or write that memory until then: a receive
//    writes into its buffer when data arrives, and a request the kernel hands to io-wq is
//    read again there. (A timeout's __kernel_timespec is copied at submission, but keep it
//    in the operation anyway: a round resubmitted after a short completion reads it again.)
// 2. The operation never moves. Its address is the SQE's user_data, and the CQE brings it
//    back: the class is neither copyable nor movable, and a factory returns it as a
//    prvalue (`return my_operation{...};`), which C++17 constructs in place in the frame.
// 3. prepare() only fills the SQE (opcode, fd, addresses, flags); it must not throw, submit
//    or resume anything. It runs once per round, and io_context sets user_data itself.
// 4. A result that owns a resource (an accepted or opened descriptor) needs discard():
//    when ~io_context drains the ring nobody is resumed, and the descriptor would leak.
// 5. A kernel may lack the opcode: check opcode_supported() once at start-up and take
//    another path or report the error; an opcode the kernel does not know completes with
//    -EINVAL (one it was built without, with -EOPNOTSUPP).
// 6. Cancelling is a request, not a guarantee. A request the kernel has handed to an io-wq
//    worker (a buffered file read, a send on a full socket after its first attempt) may not
//    be cancellable until it finishes; the waiter is resumed only with the final CQE, so a
//    cancelled or timed-out await can take as long as the I/O itself. Give such work a
//    bounded size, or make the descriptor's I/O fail (shutdown(2) a socket).
// 7. One await per operation object, from one coroutine, on the thread that runs its
//    io_context. Nothing is resumed inside await_suspend: the CQE is dispatched by the loop.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <system_error>
#include <type_traits>
#include <utility>

#include "ucoro/detail/io_awaitable.hpp"
#include "ucoro/io_result.hpp"

namespace ucoro {

/// The base of an awaitable io_uring operation. Derive, give it the state the SQE points to
/// (rule 1), implement `void prepare(io_uring_sqe&) noexcept override` and an
/// await_resume() that reads result(). Optional, inherited from the base classes in
/// ucoro/detail/ (named here so that this header is enough to write one):
/// - `void discard(int result, std::uint32_t flags) noexcept override`: called instead of
///   resuming anybody when ~io_context drains the ring; release what `result` owns (rule 4).
/// - `void abandon() noexcept override`: called when the final CQE was lost and the kernel
///   has let go; assume the worst about what the request did.
/// - `bool resubmit_after(int result, std::uint32_t flags) noexcept override`: sees each
///   CQE first; to go again (the rest of a short count), update the state prepare() reads and
///   `return resubmit(error);` with `bool resubmit(std::error_code& error) noexcept`, which
///   refuses (false, error set) once a cancel, stop() or the with_timeout deadline has come.
///   Return false to resume the waiter. Never submit in any other way.
/// - `static constexpr bool supports_timeout = false`: with_timeout refuses the operation,
///   for one that a cancel would leave half done (close).
class io_operation : public detail::io_awaitable {
public:
    /// Asks the kernel to cancel this operation (IORING_OP_ASYNC_CANCEL), for whoever holds
    /// it while a coroutine is suspended in it (a watchdog's sleep that is no longer
    /// needed). The await still completes exactly once: with operation_canceled, or with
    /// its own result if it finished first (rule 6). Only while it is in the ring: once
    /// its await has resumed, the address may be another operation's. A second request
    /// for the same round does nothing. Throws std::system_error if the ring cannot take
    /// the cancel.
    void cancel();

protected:
    explicit io_operation(io_context& context) noexcept : io_awaitable(context) {}
    /// `context` may be null: the await then completes at once with EBADF (bad_file_descriptor).
    explicit io_operation(io_context* context) noexcept : io_awaitable(context) {}
    ~io_operation() = default;

    /// The CQE's res: >= 0 on success, -errno on failure (-ECANCELED once cancelled).
    int result() const noexcept { return m_result; }
    /// The CQE's flags (IORING_CQE_F_BUFFER and the buffer id for a buffer-select request).
    std::uint32_t result_flags() const noexcept { return m_flags; }
    /// The failure as an error_code, or success.
    std::error_code error() const noexcept { return make_io_error(m_result); }
    /// The result as io_result<T>: the error, or the non-negative res converted to T.
    template <typename T>
    io_result<T> result_as() const noexcept {
        if (m_result < 0) {
            return {make_io_error(m_result), T{}};
        }
        return {{}, static_cast<T>(m_result)};
    }
};

/// Whether this kernel has `opcode` (IORING_REGISTER_PROBE, once per call: ask at start-up).
bool opcode_supported(io_context& context, io_uring_op opcode);

/// The operation make_operation() returns: `prepare` fills the SQE; `map`, given the
/// non-negative res, makes the value. Its await gives io_result<value>, or std::error_code
/// when `map` returns void.
template <typename Prepare, typename Map>
class [[nodiscard]] prepared_operation final : public io_operation {
public:
    prepared_operation(io_context& context, Prepare prepare, Map map) noexcept(
        std::is_nothrow_move_constructible_v<Prepare>&& std::is_nothrow_move_constructible_v<Map>)
        : io_operation(context), m_prepare(std::move(prepare)), m_map(std::move(map)) {}

    void prepare(io_uring_sqe& sqe) noexcept override { m_prepare(sqe); }

    auto await_resume() const {
        using value = std::invoke_result_t<const Map&, int>;
        if constexpr (std::is_void_v<value>) {
            if (result() >= 0) {
                m_map(result());
            }
            return error();
        } else {
            if (result() < 0) {
                return io_result<value>{error(), value{}};
            }
            return io_result<value>{{}, m_map(result())};
        }
    }

private:
    Prepare m_prepare;
    [[no_unique_address]] Map m_map;
};

namespace detail {
struct result_as_int {
    int operator()(int result) const noexcept { return result; }
};
} // namespace detail

/// One io_uring request as an awaitable, from the io_uring_prep_* call that fills its SQE:
///
///     auto [error, n] = co_await ucoro::make_operation(context, [&](io_uring_sqe& sqe) {
///         io_uring_prep_read(&sqe, fd, buffer.data(), buffer.size(), offset);
///     }, [](int n) { return static_cast<std::size_t>(n); });
///
/// Without `map` the value is the res itself (io_result<int>). `prepare` is kept in the
/// operation and runs when the co_await suspends (and again for each round), so it may
/// capture by reference only what outlives the co_await (rule 1). In a function that returns
/// the operation, capture by value: `[&]` there captures the function's parameters, which
/// are gone by the time prepare() runs.
template <typename Prepare, typename Map = detail::result_as_int>
requires std::is_invocable_v<Prepare&, io_uring_sqe&> && std::is_invocable_v<const Map&, int>
    prepared_operation<Prepare, Map> make_operation(io_context& context, Prepare prepare,
                                                    Map map = {}) {
    return {context, std::move(prepare), std::move(map)};
}

} // namespace ucoro
