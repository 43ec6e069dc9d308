#include "ucoro/detail/io_awaitable.hpp"

#include <cerrno>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/detail/transfer.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::detail {

io_awaitable::io_awaitable(io_context* context) noexcept
    : operation(context), m_result(context != nullptr ? 0 : -EBADF) {}

void io_awaitable::suspend(std::coroutine_handle<> waiter, cancellation_scope* scope) {
    m_waiter = waiter;
    m_scope = scope;
    context().submit(*this);
    if (scope != nullptr) {
        scope->enter(*this);
    }
}

void io_awaitable::complete(int result, std::uint32_t flags) noexcept {
    m_result = result;
    m_flags = flags;
    if (resubmit_after(result, flags)) {
        if (m_scope != nullptr && m_scope->requested()) {
            // The cancel was aimed at the previous submission; this one needs its own.
            m_scope->enter(*this);
        }
        return;
    }
    if (m_scope != nullptr) {
        m_scope->leave(*this);
    }
    detail::resume(m_waiter);
}

bool io_awaitable::resubmit(std::error_code& error) noexcept {
    if (cancel_requested() || context().stop_requested()) {
        error = std::make_error_code(std::errc::operation_canceled);
        return false;
    }
    try {
        context().submit(*this);
        return true;
    } catch (const std::system_error& e) {
        error = e.code();
        return false;
    } catch (...) {
        // Nothing else is expected, but this is a noexcept path where an escaping exception
        // would terminate the process: report an I/O error instead.
        error = std::make_error_code(std::errc::io_error);
        return false;
    }
}

} // namespace ucoro::detail
