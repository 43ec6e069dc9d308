// UCORO_TRACE=1: one line for every SQE, every CQE and every spawned task, to watch the
// machinery at work (docs/tutorial/04_echo_server.md walks through a real trace).
//
// The format is stable, one event per line, fields separated by single spaces:
//
//     ucoro-trace spawn co=ID
//     ucoro-trace sqe OPCODE fd=N len=N op=ID co=ID [target=ID]
//     ucoro-trace cqe res=N flags=FLAGS op=ID co=ID
//     ucoro-trace finish co=ID [exception]
//
// - ID is a short id of a coroutine frame (co) or an operation object (op): five hex
//   digits of its address, the same for the same object all through its life. "-" when
//   there is none: the SQE of a cancel request has no operation, and an operation nobody
//   awaits right now has no coroutine.
// - OPCODE is the io_uring opcode without IORING_OP_ (RECV, SEND, ACCEPT...).
// - `target` names the operation an ASYNC_CANCEL aims at.
// - FLAGS is "-", or CQE flags joined by "|": MORE (more CQEs will follow for this
//   operation), BUFFER (with bid=N, the provided buffer used), SOCK_NONEMPTY, NOTIF, or
//   the remaining bits in hex.
// - `res` is the CQE result: a count, a descriptor, 0, or -errno.
// - spawn is logged when a task given to io_context::spawn starts running; finish when it
//   returns, or with "exception" when one escaped it. Its co is the task's own frame, so
//   it matches the co of the operations that task awaits directly.
#pragma once

#include <coroutine>
#include <cstdint>
#include <cstdio>

struct io_uring_sqe;

namespace ucoro::detail {
class operation;
}

namespace ucoro::trace {

/// Where a context with no explicit trace output writes: stderr if the environment holds
/// UCORO_TRACE=1, otherwise nowhere (null). io_context reads it once, when constructed.
std::FILE* output_from_environment() noexcept;

// The hooks. The loop calls them with its cached output; each is one well-predicted
// branch when tracing is off.

void write_sqe(std::FILE* out, const io_uring_sqe& sqe, const detail::operation* op) noexcept;
void write_cqe(std::FILE* out, const detail::operation* op, int result,
               std::uint32_t flags) noexcept;
void write_task(std::FILE* out, const char* event, const void* frame, bool exception) noexcept;

inline void sqe(std::FILE* out, const io_uring_sqe& sqe, const detail::operation* op) noexcept {
    if (out != nullptr) [[unlikely]] {
        write_sqe(out, sqe, op);
    }
}

inline void cqe(std::FILE* out, const detail::operation* op, int result,
                std::uint32_t flags) noexcept {
    if (out != nullptr) [[unlikely]] {
        write_cqe(out, op, result, flags);
    }
}

/// `event` is "spawn" or "finish"; `frame` is the task's frame address.
inline void task(std::FILE* out, const char* event, const void* frame,
                 bool exception = false) noexcept {
    if (out != nullptr) [[unlikely]] {
        write_task(out, event, frame, exception);
    }
}

} // namespace ucoro::trace
