#include "ucoro/detail/io_awaitable.hpp"

#include <cerrno>

#include "ucoro/detail/transfer.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::detail {

io_awaitable::io_awaitable(io_context* context) noexcept
    : operation(context), m_result(context != nullptr ? 0 : -EBADF) {}

void io_awaitable::await_suspend(std::coroutine_handle<> waiter) {
    m_waiter = waiter;
    context().submit(*this);
}

void io_awaitable::complete(int result, std::uint32_t flags) noexcept {
    m_result = result;
    m_flags = flags;
    if (resubmit_after(result, flags)) {
        return;
    }
    detail::resume(m_waiter);
}

} // namespace ucoro::detail
