// A skip with a reason when the kernel (or the options) leave out provided-buffer rings.
#pragma once

#include <catch2/catch.hpp>

#include <memory>

#include "support/context.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro_test {

/// True if `context` can register buffer rings; otherwise WARNs "SKIPPED: why" (ctest then
/// reports the test as skipped) and the caller returns early.
inline bool buffer_rings_or_skip(const ucoro::io_context& context) {
    if (ucoro::buffer_ring::is_supported(context)) {
        return true;
    }
    WARN("SKIPPED: provided-buffer rings (IORING_REGISTER_PBUF_RING) need Linux 5.19");
    return false;
}

/// A context that can register buffer rings, or null after saying "SKIPPED: why".
inline std::unique_ptr<test_context> make_ring_context(ucoro::io_context_options options = {}) {
    auto context = make_context(options);
    if (context && !buffer_rings_or_skip(*context)) {
        context.reset();
    }
    return context;
}

/// Same for bundled receives (IORING_RECVSEND_BUNDLE, Linux 6.10), when asked for.
inline bool recv_bundle_or_skip(const ucoro::io_context& context) {
    if (context.features().recv_bundle) {
        return true;
    }
    WARN("SKIPPED: bundled receives (IORING_FEAT_RECVSEND_BUNDLE) need Linux 6.10");
    return false;
}

/// Same for multishot receive (IORING_RECV_MULTISHOT, Linux 6.0).
inline bool multishot_recv_or_skip(const ucoro::io_context& context) {
    if (context.features().multishot_recv) {
        return true;
    }
    WARN("SKIPPED: multishot receive (IORING_RECV_MULTISHOT) needs Linux 6.0");
    return false;
}

} // namespace ucoro_test
