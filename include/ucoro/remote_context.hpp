// remote_context: hand work to an io_context from any thread.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include "ucoro/detail/inbox.hpp"

namespace ucoro {

/// A handle to one io_context that any thread may copy and use: post() queues a callable
/// that the context's own thread runs, inside its loop. This is the only door between the
/// threads of a thread_group (or any set of contexts): everything else on a context stays
/// single-threaded, so a task that must act on another thread's sockets or state posts a
/// callable there (to wake a task over there, post a callable that sets its async_event).
///
/// - Order: the callables one thread posts run in the order it posted them. Callables
///   from different threads interleave in the order they reached the inbox.
/// - Exactly once: every callable post() accepted runs once, on the context's thread: in a
///   run() (the loop runs them when it is woken for them), or, if none comes, in the
///   context's destructor, after the context has stopped (nothing it starts can do I/O
///   then). An exception that escapes one goes to the context's unhandled-exception handler.
/// - A context that is gone: once its destructor has begun, post() returns false and
///   destroys the callable on the calling thread without running it. Nothing is dropped
///   silently.
/// - Cost: one allocation and a mutex per post; the first post after the loop emptied the
///   inbox also wakes the loop (one IORING_OP_MSG_RING, or an eventfd write: see
///   io_context_options::msg_ring and docs/scaling.md), later ones ride on that wake-up.
///   The loop touches the inbox only when woken for it.
///
/// A context with no work of its own returns from run() even if others might post to it
/// later: hold() it (thread_group does) to keep its loop waiting for messages.
class remote_context {
public:
    remote_context() = default;
    explicit remote_context(std::shared_ptr<detail::inbox> inbox) noexcept
        : m_inbox(std::move(inbox)) {}

    /// Queues `callable` (invoked with no arguments, on the context's thread). Returns
    /// false, without running it, if the context is gone or this handle is empty. May throw
    /// std::bad_alloc, or std::system_error if the wake-up cannot be sent (the callable is
    /// queued then and runs after the next wake-up).
    template <typename Callable>
    bool post(Callable&& callable) const {
        if (!m_inbox) {
            return false;
        }
        using stored = detail::callable_message<std::decay_t<Callable>>;
        return m_inbox->post(std::make_unique<stored>(std::forward<Callable>(callable))) == nullptr;
    }

    explicit operator bool() const noexcept { return m_inbox != nullptr; }

private:
    std::shared_ptr<detail::inbox> m_inbox;
};

} // namespace ucoro
