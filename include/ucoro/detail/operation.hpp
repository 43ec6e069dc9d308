// The base of every request ucoro submits to io_uring.
#pragma once

#include <coroutine>
#include <cstdint>

struct io_uring_sqe;

namespace ucoro {
class io_context;
}

namespace ucoro::detail {

class cancellation_scope;

/// One request in io_uring. Its address is the SQE's user_data, and the CQE hands it back,
/// so the object must outlive every completion the kernel will post for it. io_context
/// tracks each operation from submit() to its final completion (the CQE without
/// IORING_CQE_F_MORE); stop() and ~io_context() cancel what is tracked and wait for it.
///
/// A subclass says how to fill its SQE (prepare) and what to do with each CQE (complete).
/// A single-shot operation (io_awaitable.hpp) gets one CQE; a multishot one
/// (multishot.hpp) gets several and is finished by the one whose flags lack F_MORE.
class operation {
public:
    operation(const operation&) = delete;
    operation& operator=(const operation&) = delete;

    /// Fill in the SQE (opcode, fd, buffers). user_data is set by io_context.
    virtual void prepare(io_uring_sqe& sqe) noexcept = 0;
    /// Called once per CQE with its result (>= 0, or -errno) and flags.
    virtual void complete(int result, std::uint32_t flags) noexcept = 0;
    /// Called instead of complete() when ~io_context drains the ring: nobody will be
    /// resumed, but a result that owns a resource (an accepted fd) must be released.
    virtual void discard(int /*result*/, std::uint32_t /*flags*/) noexcept {}
    /// Called when the context gives up on an operation whose final CQE was lost, after
    /// the kernel has let go of every request: nothing will complete it. An operation that
    /// owns something must assume the worst about it (a close may or may not have run).
    virtual void abandon() noexcept {}
    /// The coroutine this operation will resume, if one waits on it now (for the trace).
    virtual std::coroutine_handle<> waiter() const noexcept { return {}; }
    /// What a cancellation scope does to end the wait of the chain registered with this
    /// operation: by default, ask the kernel to cancel it (io_context::cancel). A multishot
    /// stream that is not in the ring (waiting for a ring buffer) ends the wait itself.
    virtual void cancel_from_scope();

    /// Whether the operation belongs to a context. Only one made from a default-constructed
    /// socket does not; it completes at once with EBADF instead of touching a null context.
    bool has_context() const noexcept { return m_context != nullptr; }
    io_context& context() const noexcept { return *m_context; }

    /// The scope whose current operation this is (cancellation_scope::enter), or null. The
    /// scope clears it when it lets go (leave) or is destroyed first.
    cancellation_scope* registered_scope() const noexcept { return m_registered_scope; }

protected:
    explicit operation(io_context* context) noexcept : m_context(context) {}
    /// Leaves the cancellation scope it is registered with, if any, so that the scope never
    /// points at a destroyed operation, whichever of the two goes first.
    ~operation() {
        if (m_registered_scope != nullptr) {
            leave_registered_scope();
        }
    }

    /// Whether cancel() or stop() has asked the kernel to cancel this operation since it
    /// was last submitted: an operation that resubmits itself must not go on after that.
    bool cancel_requested() const noexcept { return m_cancel_requested; }
    /// Whether a close of the descriptor this operation was submitted on has run while it
    /// was in the kernel (io_context::cancel_operations_on). Sticky: an operation that
    /// submits itself again by its own decision (a stream re-arming) must not, since the
    /// number may already name another file.
    bool descriptor_closed() const noexcept { return m_descriptor_closed; }

private:
    friend class ucoro::io_context;
    friend class cancellation_scope;

    void leave_registered_scope() noexcept;

    io_context* m_context;
    // Intrusive links in io_context's lists of in-flight operations, one list per
    // descriptor: no allocation per request, O(1) removal, a close finds what is armed on
    // its descriptor alone, and shutdown can walk everything the kernel still owns.
    operation* m_prev = nullptr;
    operation* m_next = nullptr;
    // True only once a cancel SQE for this submission is really in the ring.
    bool m_cancel_requested = false;
    // Owned by the context now (released by its owner): must be cancelled, even if the ring
    // could not take the cancel when it was released.
    bool m_released = false;
    // See descriptor_closed().
    bool m_descriptor_closed = false;
    // Which of those lists holds it: the descriptor its SQE named, or -1 (none, a fixed
    // file, a close). Here, after the bools, it fills padding: no byte is added.
    int m_fd = -1;
    // The other half of cancellation_scope::m_current: the link is kept from both ends.
    cancellation_scope* m_registered_scope = nullptr;
};

} // namespace ucoro::detail
