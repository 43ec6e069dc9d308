// The base of requests that answer with a stream of completions (multishot accept, recv).
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "ucoro/detail/operation.hpp"
#include "ucoro/task.hpp"

namespace ucoro::detail {

/// One CQE as the loop saw it.
struct completion {
    int result;
    std::uint32_t flags;
};

/// A FIFO of completions that reuses its storage: after warm-up, pushing and popping
/// allocate nothing, so a steady stream costs no heap traffic per message.
class completion_queue {
public:
    bool empty() const noexcept { return m_size == 0; }
    std::size_t size() const noexcept { return m_size; }
    void push(completion c);   // grows (doubling) when full
    completion pop() noexcept; // not on an empty queue (asserted)

private:
    std::vector<completion> m_slots;
    std::size_t m_head = 0;
    std::size_t m_size = 0;
};

/// A request the kernel answers with several CQEs, all but the last flagged
/// IORING_CQE_F_MORE. Its consumer (a stream object in a coroutine frame) pops completions
/// in order; those that arrive while the consumer is busy wait in a queue.
///
/// Who owns it: it lives on the heap, because the kernel may hold it longer than its
/// consumer. While the consumer exists, the consumer owns it. When the consumer goes away
/// (release()) with the request still armed, the io_context adopts it: the request is
/// cancelled, every completion that still arrives is dropped (drop() frees what it owns:
/// an accepted fd, a ring buffer), and the final CQE deletes it. So no memory the kernel
/// may write to is freed early, and nobody has to call anything to make that so.
///
/// A subclass may look at every completion first (filter) and keep some from the consumer,
/// e.g. a receive stream swallows ENOBUFS and re-arms once buffers come back.
///
/// Cancellation: a consumer that waits inside a task registers the request with the task's
/// cancellation scope for as long as it waits. scope.request() then cancels the request in
/// the ring (its final CQE, -ECANCELED, reaches the consumer through the queue like any
/// other, so buffers and connections that arrive before it are still delivered or dropped
/// as usual), or, if the request is held back and not in the ring, posts -ECANCELED itself
/// (cancel_from_scope). A request armed again while a requested scope waits on it (a
/// subclass's re-arm) is cancelled as it is submitted.
class multishot_operation : public operation {
public:
    void complete(int result, std::uint32_t flags) noexcept final;
    void discard(int result, std::uint32_t flags) noexcept final;
    void abandon() noexcept final;
    std::coroutine_handle<> waiter() const noexcept final { return m_waiter; }

    /// Whether the request is in the kernel (submitted, final CQE not seen yet).
    bool armed() const noexcept { return m_armed; }
    bool has_completion() const noexcept { return !m_queue.empty(); }
    /// How many completions wait for the consumer.
    std::size_t queued() const noexcept { return m_queue.size(); }
    completion pop() noexcept { return m_queue.pop(); }
    /// Submits the request unless it is armed already or the subclass holds it back
    /// (may_arm(), e.g. while no receive buffer is free).
    void arm();
    /// Suspends `waiter` until the next completion, arming the request if needed. `scope`
    /// (may be null) is the waiter's cancellation scope: it can end the wait.
    void wait(std::coroutine_handle<> waiter, cancellation_scope* scope = nullptr);
    void cancel_from_scope() override;
    /// The consumer lets go: deletes the request now if the kernel does not hold it,
    /// otherwise hands it to the context as described above.
    void release() noexcept;

    /// A std::unique_ptr deleter that calls release().
    struct releaser {
        void operator()(multishot_operation* op) const noexcept { op->release(); }
    };

protected:
    explicit multishot_operation(io_context& context) noexcept : operation(&context) {}
    virtual ~multishot_operation() = default;

    /// Sees every completion first, in order, whether or not anybody will consume it.
    /// `live` is false when nobody will (the request is orphaned, or the context is draining
    /// on destruction): the subclass must not re-arm then. Return false to swallow the
    /// completion (the subclass then owns whatever it holds); a completion that passes goes
    /// to the consumer's queue, or to drop() when not live. The request is not armed any
    /// more when `c` is final, so a live filter may call arm() again. The default passes all.
    virtual bool filter(completion& /*c*/, bool /*live*/) noexcept { return true; }
    /// Whether arm() may submit now. A subclass that says no arms again itself later.
    virtual bool may_arm() const noexcept { return true; }
    /// Frees what a completion that passed filter() owns when nobody will consume it. The
    /// default owns nothing.
    virtual void drop(completion) noexcept {}
    /// Queues a completion the kernel did not post (e.g. a cancel decided in user space) and
    /// has the waiting consumer, if any, resumed on the next turn of the loop rather than
    /// inside the caller.
    void post_completion(completion c) noexcept;

private:
    /// The waiter is about to be resumed: it no longer waits on behalf of its scope.
    void leave_scope() noexcept;

    completion_queue m_queue;
    std::coroutine_handle<> m_waiter; // its scope, while it waits: registered_scope()
    bool m_armed = false;
    bool m_orphaned = false;
};

/// `co_await next_completion{op}`: the oldest queued completion, waiting for one if needed.
struct next_completion {
    multishot_operation& op;

    bool await_ready() const noexcept { return op.has_completion(); }
    void await_suspend(std::coroutine_handle<> waiter) { op.wait(waiter); }
    /// Awaited in a task: the task's cancellation scope can end the wait.
    template <typename Promise>
    requires std::is_base_of_v<task_promise_base, Promise>
    void await_suspend(std::coroutine_handle<Promise> waiter) {
        op.wait(waiter, waiter.promise().m_scope);
    }
    completion await_resume() noexcept { return op.pop(); }
};

/// Owning pointer to a multishot request; resetting it releases the request.
template <typename Operation>
using multishot_ptr = std::unique_ptr<Operation, multishot_operation::releaser>;

} // namespace ucoro::detail
