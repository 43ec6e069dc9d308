// The base of every request ucoro submits to io_uring.
#pragma once

#include <coroutine>
#include <cstdint>

struct io_uring_sqe;

namespace ucoro {
class io_context;
}

namespace ucoro::detail {

/// One request in io_uring. Its address is the SQE's user_data, and the CQE hands it back,
/// so the object must outlive every completion the kernel will post for it. io_context
/// tracks each operation from submit() to its final completion (the CQE without
/// IORING_CQE_F_MORE); stop() and ~io_context() cancel what is tracked and wait for it.
///
/// A subclass says how to fill its SQE (prepare) and what to do with each CQE (complete).
/// A single-shot operation gets one CQE; a multishot one (accept, recv with a buffer
/// ring) gets several and is finished by the one whose flags lack IORING_CQE_F_MORE.
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

    io_context& context() const noexcept { return *m_context; }

protected:
    explicit operation(io_context& context) noexcept : m_context(&context) {}
    ~operation() = default;

    /// Whether cancel() or stop() has asked the kernel to cancel this operation since it
    /// was last awaited: an operation that resubmits itself must not go on after that.
    bool cancel_requested() const noexcept { return m_cancel_requested; }
    /// Called when a new await begins, so an earlier cancel does not outlive its await.
    void clear_cancel_request() noexcept { m_cancel_requested = false; }

private:
    friend class ucoro::io_context;

    io_context* m_context;
    // Intrusive links in io_context's list of in-flight operations: no allocation per
    // request, O(1) removal, and shutdown can walk everything the kernel still owns.
    operation* m_prev = nullptr;
    operation* m_next = nullptr;
    bool m_cancel_requested = false;
};

/// An operation that one coroutine awaits: it submits itself on suspension and resumes
/// the coroutine when its single CQE arrives. The result lives here, in the awaiter, which
/// lives in the suspended coroutine's frame: nothing is allocated per operation.
///
/// Subclasses add prepare() and an await_resume() that turns m_result into a value.
class io_awaitable : public operation {
public:
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> waiter);
    void complete(int result, std::uint32_t flags) noexcept override;

protected:
    using operation::operation;
    ~io_awaitable() = default;

    int m_result = 0;
    std::uint32_t m_flags = 0;

private:
    std::coroutine_handle<> m_waiter;
};

} // namespace ucoro::detail
