// The base of requests that answer with a stream of completions (multishot accept, recv),
// and the one state machine every such stream runs.
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

/// What a waiting consumer is told when its wait ends without a completion (a partial
/// cancel, or a stream that cannot deliver). It lives in the consumer's awaiter, so that the
/// outcome belongs to that wait alone: a later next() or try_next() never takes it.
struct wait_slot {
    int result = 0;     // -errno
    bool ended = false; // the wait ended with `result`; the queue was not touched
};

/// Where a multishot request is. Every change of state goes through one function
/// (multishot_operation::enter), which checks it against this table:
///
///   from      to        when
///   idle      armed     arm(): the request is submitted
///   idle      held      hold(): the subclass keeps it out of the kernel (a receive stream
///                       at its share of the ring, or waiting for a buffer of its own)
///   held      idle      unhold(): what it waited for has come back; arm() may follow
///   armed     pausing   pause(): the subclass had the kernel cancel it (at its share)
///   armed     idle      the final CQE (no IORING_CQE_F_MORE): the kernel let it go
///   pausing   idle      the final CQE of the pause (its -ECANCELED is not the consumer's)
///   armed     orphaned  release() while in the kernel: the consumer is gone, a cancel sent
///   pausing   orphaned  release() likewise
///   idle      lingering release() while the subclass still has things lent out (buffers)
///   held      lingering release() likewise
///   orphaned  lingering the final CQE, with things still lent out
///   orphaned  (freed)   the final CQE, nothing lent out
///   lingering (freed)   the last thing lent out comes back
///   idle/held (freed)   release() with nothing lent out
///
/// A completion with IORING_CQE_F_MORE leaves the state as it is. The consumer's side is
/// separate and simpler: at most one coroutine waits in next() (a second is a checked
/// error), and a cancel of that wait is partial (see multishot_operation).
enum class multishot_state : std::uint8_t {
    idle,      // not in the kernel; arm() may submit it
    armed,     // in the kernel; its completions carry F_MORE until the final one
    pausing,   // in the kernel, with our own cancel on its way
    held,      // not in the kernel, and not to be armed until unhold()
    orphaned,  // the consumer is gone; in the kernel until its final CQE
    lingering, // the consumer is gone, the kernel done; waits for what is lent out
};

/// Whether the table above allows going from `from` to `to`.
constexpr bool multishot_transition_allowed(multishot_state from, multishot_state to) noexcept {
    using s = multishot_state;
    switch (from) {
    case s::idle:
        return to == s::armed || to == s::held || to == s::lingering;
    case s::held:
        return to == s::idle || to == s::lingering;
    case s::armed:
        return to == s::pausing || to == s::idle || to == s::orphaned;
    case s::pausing:
        return to == s::idle || to == s::orphaned;
    case s::orphaned:
        return to == s::lingering;
    case s::lingering:
        return false;
    }
    return false;
}

const char* to_string(multishot_state state) noexcept;

/// A request the kernel answers with several CQEs, all but the last flagged
/// IORING_CQE_F_MORE. Its consumer (a stream object in a coroutine frame) pops completions
/// in order; those that arrive while the consumer is busy wait in a queue.
///
/// Who owns it: it lives on the heap, because the kernel may hold it longer than its
/// consumer. While the consumer exists, the consumer owns it. When the consumer goes away
/// (release()) with the request still in the kernel, the io_context takes it over: the request
/// is cancelled, every completion that still arrives is discarded (discard_completion() frees what
/// it owns: an accepted fd, a ring buffer), and the final CQE frees it, or the return of the last
/// thing the subclass lent out (a receive buffer still in the consumer's hands) if that
/// comes later. So no memory the kernel or a lent buffer may use is freed early.
///
/// Cancelling a wait is partial (Asio's cancellation_type::partial): a cancellation scope
/// that reaches a coroutine waiting in next() (a when_any loser, task_handle::cancel,
/// stop()) detaches that waiter and resumes it, on the next turn of the loop, with
/// operation_canceled. The kernel request stays armed, and every completion it delivers,
/// before or after, stays queued for the next call to next(): no byte and no accepted
/// connection is lost, and no result is made up for anybody. The request itself ends only
/// when the stream is destroyed (release) or the context stops (stop() cancels what is in
/// the kernel; that -ECANCELED is real and reaches the consumer like any completion).
class multishot_operation : public operation {
public:
    void complete(int result, std::uint32_t flags) noexcept final;
    void discard(int result, std::uint32_t flags) noexcept final;
    void abandon() noexcept final;
    std::coroutine_handle<> waiter() const noexcept final { return m_waiter; }

    multishot_state state() const noexcept { return m_state; }
    /// Whether the request is in the kernel (submitted, final CQE not seen yet).
    bool armed() const noexcept {
        return m_state == multishot_state::armed || m_state == multishot_state::pausing;
    }
    bool has_completion() const noexcept { return !m_queue.empty(); }
    /// How many completions wait for the consumer.
    std::size_t queued() const noexcept { return m_queue.size(); }
    /// The oldest queued completion (not on an empty queue).
    completion pop() noexcept { return m_queue.pop(); }
    /// Submits the request if it is idle (not in the kernel, not held back) and the
    /// subclass agrees (may_arm()).
    void arm();
    /// Suspends `waiter` until the next completion, arming the request if needed; if the
    /// wait ends otherwise (a partial cancel, see above, or the subclass's fail_wait()),
    /// `slot` says how, and the waiter is resumed on the next turn of the loop. `scope`
    /// (may be null) is the waiter's cancellation scope. Throws std::logic_error if another
    /// coroutine waits already.
    void wait(std::coroutine_handle<> waiter, cancellation_scope* scope, wait_slot& slot);
    void cancel_from_scope() override;
    /// The consumer lets go: frees the request now if nothing refers to it, otherwise hands
    /// it to the context as described above.
    void release() noexcept;

    /// A std::unique_ptr deleter that calls release().
    struct releaser {
        void operator()(multishot_operation* op) const noexcept { op->release(); }
    };

protected:
    explicit multishot_operation(io_context& context) noexcept : operation(&context) {}
    virtual ~multishot_operation() = default;

    /// Sees every completion first, in order, whether or not anybody will consume it.
    /// `live` is false when nobody will (the consumer is gone, or the context is draining
    /// on destruction): the subclass must not re-arm then. Return false to swallow the
    /// completion (the subclass then owns whatever it holds); a completion that passes goes
    /// to the consumer's queue, or to discard_completion() when not live. The state has already
    /// left armed/pausing when `c` is final, so a live filter may call arm() again.
    virtual bool filter(completion& /*c*/, bool /*live*/) noexcept { return true; }
    /// Frees what a completion that passed filter() owns when nobody will consume it. The
    /// default owns nothing.
    virtual void discard_completion(completion) noexcept {}
    /// Whether the subclass still has something lent out that refers to this request (a
    /// receive buffer in the consumer's hands): a released request lingers until not.
    virtual bool has_loans() const noexcept { return false; }
    /// Whether arm() may submit now (an idle request the subclass wants kept out).
    virtual bool may_arm() const noexcept { return true; }
    /// A consumer has started to wait and nothing is queued or in the kernel for it: the
    /// subclass arms something or ends the wait (fail_wait), or the consumer waits for ever.
    virtual void waiting_for_nothing() noexcept {}

    /// Keeps an idle request out of the kernel until unhold().
    void hold() noexcept;
    /// Lets a held request be armed again (it becomes idle; the caller arms it if wanted).
    void unhold() noexcept;
    /// Has the kernel cancel the armed request because the subclass wants no more for now;
    /// its final -ECANCELED (or whatever final CQE comes) returns it to idle.
    void pause();
    /// For the subclass: the last loan came back. A lingering request frees itself here, so
    /// the caller must not touch `this` afterwards when it returns true.
    bool loans_returned() noexcept;
    /// Queues a completion the subclass made from a kernel one (a bundle split into single
    /// buffers) without waking the consumer; the loop wakes it once filter() returns.
    void enqueue(completion c) noexcept;
    /// Ends the consumer's wait with `error_number` (an errno value such as ENOBUFS), on the
    /// next turn of the loop, leaving the queue as it is.
    void fail_wait(int error_number) noexcept;
    bool released() const noexcept {
        return m_state == multishot_state::orphaned || m_state == multishot_state::lingering;
    }
    /// True inside filter() for the final CQE of a request that was pausing: its -ECANCELED
    /// answers our own pause(), not a cancel the consumer should hear of.
    bool pause_ending() const noexcept { return m_pause_ending; }

private:
    void enter(multishot_state to) noexcept;
    /// The waiter is about to be resumed: it no longer waits on behalf of its scope.
    void leave_scope() noexcept;
    /// Resumes the waiting consumer, if any, now: a completion is queued for it.
    void wake() noexcept;
    /// Resumes the waiting consumer on the next turn with `error` in its slot.
    void end_wait(int error) noexcept;

    completion_queue m_queue;
    std::coroutine_handle<> m_waiter; // its scope, while it waits: registered_scope()
    wait_slot* m_slot = nullptr;      // the waiter's, while it waits
    multishot_state m_state = multishot_state::idle;
    bool m_releasing = false;    // release() is discarding the queue: loans_returned() waits
    bool m_pause_ending = false; // see pause_ending()
};

/// Owning pointer to a multishot request; resetting it releases the request.
template <typename Operation>
using multishot_ptr = std::unique_ptr<Operation, multishot_operation::releaser>;

} // namespace ucoro::detail
