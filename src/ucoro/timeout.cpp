#include "ucoro/timeout.hpp"

#include <liburing.h>

#include <cerrno>

#include "ucoro/detail/timespec.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::detail {

namespace {

// A default-constructed socket's operation has no context; it never reaches the ring.
io_context* context_of(const io_awaitable& target) noexcept {
    return target.has_context() ? &target.context() : nullptr;
}

} // namespace

timed_await::timed_await(io_awaitable& target, std::chrono::nanoseconds timeout) noexcept
    : m_target(target), m_timeout(to_kernel_timespec(timeout)) {}

void timed_await::suspend(std::coroutine_handle<> waiter, cancellation_scope* scope) {
    m_target.set_waiter(waiter);
    m_scope = scope;
    m_pending = 2;
    m_target.context().submit_linked(m_primary, m_timer);
    if (scope != nullptr) {
        // Cancelling the operation also ends its timer (a link timeout whose request is
        // gone completes with -ECANCELED).
        scope->enter(m_primary);
    }
}

void timed_await::arrived() noexcept {
    if (--m_pending > 0) {
        return;
    }
    if (m_scope != nullptr) {
        m_scope->leave(m_primary);
    }
    // The kernel reports -ETIME on the timer only when its cancel of the operation worked
    // (otherwise the cancel's error, -EALREADY or -ENOENT): then the operation's -ECANCELED
    // is the timer's doing. Any other result is the operation's own and is kept.
    int result = m_result;
    if (result == -ECANCELED && m_timer_result == -ETIME) {
        result = -ETIMEDOUT;
    }
    // Last: this resumes the caller, who may free this awaiter.
    m_target.complete(result, m_flags);
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

timed_await::link_timer::link_timer(timed_await& owner) noexcept
    : operation(context_of(owner.m_target)), m_owner(owner) {}

void timed_await::link_timer::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_link_timeout(&sqe, &m_owner.m_timeout, 0);
}

void timed_await::link_timer::complete(int result, std::uint32_t) noexcept {
    m_owner.m_timer_result = result;
    m_owner.arrived();
}

} // namespace ucoro::detail
