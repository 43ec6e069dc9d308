#include "ucoro/detail/io_awaitable.hpp"

#include <cerrno>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/detail/context_access.hpp"
#include "ucoro/detail/transfer.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::detail {

io_awaitable::io_awaitable(io_context* context) noexcept
    : operation(context), m_result(context != nullptr ? 0 : -EBADF) {}

void io_awaitable::suspend(std::coroutine_handle<> waiter, cancellation_scope* scope) {
    m_wrapper = nullptr; // awaited directly: no timed await of an earlier await applies
    m_waiter = waiter;
    m_scope = scope;
    context_access::submit(context(), *this);
    if (scope != nullptr) {
        scope->enter(*this);
    }
}

void io_awaitable::complete(int result, std::uint32_t flags) noexcept {
    if (take_result(result, flags)) {
        // Another round is in the ring. The scope still points at this operation (nothing
        // left it between rounds), so a request from now on cancels the new round, and one
        // that came before it was refused by resubmit(): every round is reachable.
        return;
    }
    if (m_scope != nullptr) {
        m_scope->leave(*this);
    }
    detail::resume(m_waiter);
}

void io_awaitable::resume_waiter() noexcept {
    detail::resume(m_waiter);
}

bool io_awaitable::resubmit(std::error_code& error) noexcept {
    if (m_wrapper != nullptr) {
        return m_wrapper->next_round(error); // it checks for cancels in its own scope
    }
    // cancel_requested(): a cancel aimed at the round that just ended (io_context::cancel,
    // stop()); the scope's flag: a request that reached this operation between rounds, or
    // whose cancel SQE could not be queued. Either way the task asked to stop.
    if (cancel_requested() || context().stop_requested() ||
        (m_scope != nullptr && m_scope->requested())) {
        error = std::make_error_code(std::errc::operation_canceled);
        return false;
    }
    return submit_without_throwing([this] { context_access::submit(context(), *this); }, error);
}

} // namespace ucoro::detail
