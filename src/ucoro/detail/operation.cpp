#include "ucoro/detail/operation.hpp"

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/detail/context_access.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::detail {

void operation::cancel_from_scope() {
    context_access::cancel(context(), *this);
}

void operation::leave_registered_scope() noexcept {
    m_registered_scope->leave(*this);
}

} // namespace ucoro::detail
