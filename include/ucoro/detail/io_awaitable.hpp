// The machinery under io_operation, which every single-shot operation (accept, connect,
// recv, send, close...) derives from.
#pragma once

#include <coroutine>
#include <cstdint>
#include <system_error>
#include <type_traits>

#include "ucoro/detail/operation.hpp"
#include "ucoro/task.hpp"

namespace ucoro {
class io_operation;
}

namespace ucoro::detail {

/// An operation that one coroutine awaits: it submits itself on suspension and resumes
/// the coroutine when its CQE arrives. The result lives here, in the awaiter, which lives
/// in the suspended coroutine's frame: nothing is allocated per operation.
///
/// The machinery under ucoro::io_operation (operation.hpp), the class every operation
/// derives from: subclasses add prepare() and an await_resume() that reads result(). One
/// that needs several round trips for one await (send_all after a short send) overrides
/// resubmit_after() and goes again only through resubmit(), never through a submit of its
/// own: that is what keeps every round inside the task's cancellation scope and, under
/// with_timeout, linked to the same deadline (the `supports_timeout` promise below).
class io_awaitable : public operation {
public:
    /// Whether with_timeout may wrap this operation (the ucoro::timeout_linkable concept,
    /// timeout.hpp): every round of it is one SQE that a linked timeout can cut short and a
    /// cancellation scope can reach, and being cut short leaves nothing half-owned. True for
    /// every operation built on io_awaitable, since rounds go through resubmit(); an
    /// operation for which a cancel is not a clean outcome (close) says false.
    static constexpr bool supports_timeout = true;

    bool await_ready() const noexcept { return !has_context(); }
    void await_suspend(std::coroutine_handle<> waiter) { suspend(waiter, nullptr); }
    /// Awaited in a task: the task's cancellation scope can reach this operation.
    template <typename Promise>
    requires std::is_base_of_v<task_promise_base, Promise>
    void await_suspend(std::coroutine_handle<Promise> waiter) {
        suspend(waiter, waiter.promise().m_scope);
    }
    void complete(int result, std::uint32_t flags) noexcept final;
    std::coroutine_handle<> waiter() const noexcept final { return m_waiter; }

private:
    // The timed await's side (timeout.hpp): not part of io_operation's contract.
    friend class timed_await;

    /// What an awaiter that puts this operation in the ring itself implements (with_timeout
    /// stands in for it, linked to a timer). The operation never submits itself then: each
    /// later round goes through next_round(), and each round's result comes back through
    /// take_result().
    class wrapper {
    public:
        /// Puts the next round in the ring and returns true; or returns false with `error`
        /// set (operation_canceled for a cancel or stop() that came first, timed_out for a
        /// deadline that has passed, or the submit's failure).
        virtual bool next_round(std::error_code& error) noexcept = 0;

    protected:
        wrapper() = default;
        ~wrapper() = default;
    };

    /// For a `wrapper` that is about to submit this operation in its own name: the coroutine
    /// to resume at the end, and who submits the later rounds.
    void wrap(std::coroutine_handle<> waiter, wrapper& by) noexcept {
        m_waiter = waiter;
        m_wrapper = &by;
    }
    /// For the wrapper: one round's result. True if the operation wants another round and
    /// the wrapper has put it in the ring (through next_round); false if it is finished, and
    /// then the wrapper calls resume_waiter() once it is done with its own state.
    bool take_result(int result, std::uint32_t flags) noexcept {
        m_result = result;
        m_flags = flags;
        return resubmit_after(result, flags);
    }
    /// Resumes the waiter; the caller must not touch this operation (or its frame) after.
    void resume_waiter() noexcept;

protected:
    explicit io_awaitable(io_context& context) noexcept : operation(&context) {}
    /// `context` may be null (a default-constructed socket): the operation then completes
    /// without suspending, with EBADF, rather than dereferencing it.
    explicit io_awaitable(io_context* context) noexcept;
    ~io_awaitable() = default;

    /// Sees each CQE before the waiter is resumed. Return true if the operation went into
    /// the ring again through resubmit() (the waiter stays suspended until a later CQE); the
    /// default never does.
    virtual bool resubmit_after(int /*result*/, std::uint32_t /*flags*/) noexcept { return false; }

    /// For a resubmit_after() that has more to do (the rest of a short send): submits this
    /// operation again (or has its wrapper do it) and returns true; or returns false with
    /// `error` set when a cancel, a scope's request or stop() has come in meanwhile
    /// (operation_canceled: a cancel that raced with the short completion and lost is
    /// honoured here), the wrapper's deadline has passed (timed_out), or the submit failed.
    bool resubmit(std::error_code& error) noexcept;

private:
    // Read through io_operation's result(), result_as(), error() and result_flags(): one
    // way to read a result, for the built-in operations and everybody else's alike.
    friend class ucoro::io_operation;

    int m_result = 0;
    std::uint32_t m_flags = 0;
    void suspend(std::coroutine_handle<> waiter, cancellation_scope* scope);

    std::coroutine_handle<> m_waiter;
    cancellation_scope* m_scope = nullptr;
    wrapper* m_wrapper = nullptr;
};

/// Runs `submit` (which puts a later round in the ring) on a noexcept path, turning what
/// escapes into `error`: io_uring_enter failing while it flushes a full SQ
/// (std::system_error), or anything unexpected (io_error; escaping would terminate).
template <typename Submit>
bool submit_without_throwing(Submit&& submit, std::error_code& error) noexcept {
    try {
        submit();
        return true;
    } catch (const std::system_error& e) {
        error = e.code();
    } catch (...) {
        error = std::make_error_code(std::errc::io_error);
    }
    return false;
}

} // namespace ucoro::detail
