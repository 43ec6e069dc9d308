#include "ucoro/operation.hpp"

#include <memory>

#include "ucoro/detail/context_access.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro {

void io_operation::cancel() {
    if (has_context()) {
        detail::context_access::cancel(context(), *this);
    }
}

bool opcode_supported(io_context& context, io_uring_op opcode) {
    const std::unique_ptr<io_uring_probe, decltype(&io_uring_free_probe)> probe(
        io_uring_get_probe_ring(&detail::native_ring(context)), &io_uring_free_probe);
    return probe != nullptr && io_uring_opcode_supported(probe.get(), opcode) != 0;
}

} // namespace ucoro
