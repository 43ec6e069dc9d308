#include "ucoro/detail/fault_injection.hpp"

#include "ucoro/io_context.hpp"

namespace ucoro::detail {

void set_fault_injector(io_context& context, fault_injector* injector) noexcept {
    context.m_faults = injector;
}

} // namespace ucoro::detail
