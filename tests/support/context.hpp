// make_context: an io_context for a test, or a WARN and null where io_uring is not allowed.
#pragma once

#include <catch2/catch.hpp>

#include <memory>
#include <system_error>

#include "ucoro/io_context.hpp"

namespace ucoro_test {

/// A context, or null (after a WARN naming the reason) when this machine cannot set up
/// io_uring: a sandbox that forbids it is not a failure of ucoro. Catch2 v2 has no SKIP,
/// so the caller returns early.
inline std::unique_ptr<ucoro::io_context> make_context(ucoro::io_context_options options = {}) {
    try {
        return std::make_unique<ucoro::io_context>(options);
    } catch (const std::system_error& e) {
        WARN("SKIPPED: io_uring is not available here: " << e.what());
        return nullptr;
    }
}

} // namespace ucoro_test
