#include "ucoro/detail/operation.hpp"

#include "ucoro/io_context.hpp"

namespace ucoro::detail {

void operation::cancel_from_scope() {
    context().cancel(*this);
}

} // namespace ucoro::detail
