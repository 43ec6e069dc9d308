// What cancelling a task reaches: the operation its await chain is suspended in.
#pragma once

#include "ucoro/detail/operation.hpp"

namespace ucoro {
class io_context;
}

namespace ucoro::detail {

/// One per cancellable task chain (each child of when_all / when_any has one). Every task
/// awaited inside the chain points at it through its promise, and an operation awaited
/// there registers itself while it is in the ring, so request() finds the one operation the
/// chain is suspended in however deep it is, and cancels it (operation::cancel_from_scope,
/// by default io_context::cancel): it completes with operation_canceled and the chain
/// unwinds normally. Operations awaited after the request are cancelled as soon as they are
/// submitted. Scopes form a tree: request() also reaches the scopes of the when_all /
/// when_any children awaited inside. A spawned task owns one (task_handle::cancel requests
/// it), attached under the io_context's root scope, which stop() requests.
///
/// NOTE: not std::stop_token. A stop callback runs on the thread that requests the stop, and
/// io_context is single-threaded; its state is shared, reference-counted and atomic, where
/// a task chain needs one pointer and one flag. Call request() on the context's thread.
///
/// Reaches operations built on io_awaitable (every single-shot operation, sleeps, timeouts)
/// and a coroutine waiting in a multishot stream's next() (recv_stream, accept_stream). A
/// wait on something outside the ring (a task_handle::join, a coroutine posted by hand) is
/// not reached.
class cancellation_scope {
public:
    cancellation_scope() noexcept = default;
    cancellation_scope(const cancellation_scope&) = delete;
    cancellation_scope& operator=(const cancellation_scope&) = delete;
    ~cancellation_scope();

    /// Makes this scope a child of `parent` (may be null): a request to the parent reaches it,
    /// including one made before.
    void attach(cancellation_scope* parent) noexcept;

    /// Cancels the operation the chain is suspended in, and every later one; recursively for
    /// the child scopes. Idempotent.
    void request() noexcept;
    bool requested() const noexcept { return m_requested; }
    /// `op` is now in the ring on behalf of this chain (cancelled at once if a request came
    /// first); leave() when its final completion has arrived. The link is kept from both
    /// ends: an operation destroyed while registered leaves by itself (~operation), and a
    /// scope destroyed first clears the operation's side, so neither points at the other
    /// once it is gone.
    void enter(operation& op) noexcept;
    void leave(operation& op) noexcept {
        if (m_current == &op) {
            m_current = nullptr;
            op.m_registered_scope = nullptr;
        }
    }

private:
    friend class ucoro::io_context;

    /// Takes the request back for what attaches from now on; children requested already stay
    /// so. Only for io_context's root scope, once a stop has completed.
    void reset() noexcept { m_requested = false; }

    void detach() noexcept;

    bool m_requested = false;
    operation* m_current = nullptr;
    cancellation_scope* m_parent = nullptr;
    cancellation_scope* m_first_child = nullptr;
    cancellation_scope* m_next_sibling = nullptr;
    cancellation_scope* m_prev_sibling = nullptr;
};

} // namespace ucoro::detail
