#include "ucoro/timeout.hpp"

#include <liburing.h>

#include <cerrno>

#include "ucoro/detail/context_access.hpp"
#include "ucoro/detail/timespec.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::detail {

namespace {

// A default-constructed socket's operation has no context; it never reaches the ring.
io_context* context_of(const io_awaitable& target) noexcept {
    return target.has_context() ? &target.context() : nullptr;
}

// now + timeout, saturated: an hour or nanoseconds::max() must not wrap into the past.
io_context::clock::time_point deadline_after(std::chrono::nanoseconds timeout) noexcept {
    using time_point = io_context::clock::time_point;
    const time_point now = io_context::now();
    if (timeout > time_point::max() - now) {
        return time_point::max();
    }
    return now + std::chrono::duration_cast<time_point::duration>(timeout);
}

} // namespace

timed_await::timed_await(io_awaitable& target, std::chrono::nanoseconds timeout) noexcept
    : m_target(target), m_timeout(timeout) {}

void timed_await::suspend(std::coroutine_handle<> waiter, cancellation_scope* scope) {
    // Fixed once, here: every round's timer counts down to the same instant.
    m_deadline = deadline_after(m_timeout);
    m_deadline_spec = to_kernel_timespec(m_deadline.time_since_epoch());
    m_target.wrap(waiter, *this);
    m_scope = scope;
    submit_round();
    if (scope != nullptr) {
        // Cancelling the operation also ends its timer (a link timeout whose request is
        // gone completes with -ECANCELED). Registered once, for every round: the scope
        // leaves only after the last one.
        scope->enter(m_primary);
    }
}

void timed_await::submit_round() {
    m_pending = 2;
    context_access::submit_linked(m_target.context(), m_primary, m_timer);
}

bool timed_await::next_round(std::error_code& error) noexcept {
    // m_primary's own cancel flag: stop() (or the loop's cancel of everything) aimed at the
    // round that just ended; the scope's: when_any, task_handle::cancel, a parent's request.
    if (m_primary.cancelled_since_submit() || m_target.context().stop_requested() ||
        (m_scope != nullptr && m_scope->requested())) {
        error = std::make_error_code(std::errc::operation_canceled);
        return false;
    }
    // Checked here, not left to the timer: a round whose send completes inline the moment
    // it is issued would beat even a timer that is already due, and the operation would
    // carry on past its deadline for as long as the socket took data.
    if (io_context::now() >= m_deadline) {
        error = std::make_error_code(std::errc::timed_out);
        return false;
    }
    return submit_without_throwing([this] { submit_round(); }, error);
}

void timed_await::arrived() noexcept {
    if (--m_pending > 0) {
        return;
    }
    // The kernel reports -ETIME on the timer only when its cancel of the operation worked
    // (otherwise the cancel's error, -EALREADY or -ENOENT): then the operation's -ECANCELED
    // is the timer's doing. Any other result is the operation's own and is kept.
    int result = m_result;
    if (result == -ECANCELED && m_timer_result == -ETIME) {
        result = -ETIMEDOUT;
    }
    if (m_target.take_result(result, m_flags)) {
        return; // the next round is in the ring (next_round), with its own two CQEs to come
    }
    if (m_scope != nullptr) {
        m_scope->leave(m_primary);
    }
    // Last: this resumes the caller, who may free this awaiter.
    m_target.resume_waiter();
}

timed_await::primary::primary(timed_await& owner) noexcept
    : operation(context_of(owner.m_target)), m_owner(owner) {}

void timed_await::primary::prepare(io_uring_sqe& sqe) noexcept {
    m_owner.m_target.prepare(sqe);
}

void timed_await::primary::complete(int result, std::uint32_t flags) noexcept {
    m_owner.m_result = result;
    m_owner.m_flags = flags;
    m_owner.arrived();
}

void timed_await::primary::discard(int result, std::uint32_t flags) noexcept {
    m_owner.m_target.discard(result, flags); // e.g. close the fd an accept produced
}

std::coroutine_handle<> timed_await::primary::waiter() const noexcept {
    return m_owner.m_target.waiter(); // for the trace
}

timed_await::link_timer::link_timer(timed_await& owner) noexcept
    : operation(context_of(owner.m_target)), m_owner(owner) {}

void timed_await::link_timer::prepare(io_uring_sqe& sqe) noexcept {
    // Absolute, on CLOCK_MONOTONIC (IORING_TIMEOUT_ABS without a clock flag): the same
    // instant for every round.
    io_uring_prep_link_timeout(&sqe, &m_owner.m_deadline_spec, IORING_TIMEOUT_ABS);
}

void timed_await::link_timer::complete(int result, std::uint32_t) noexcept {
    m_owner.m_timer_result = result;
    m_owner.arrived();
}

} // namespace ucoro::detail
