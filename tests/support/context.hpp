// make_context: an io_context for a test, or a skip where io_uring is not allowed.
#pragma once

#include <catch2/catch.hpp>

#include <exception>
#include <memory>
#include <system_error>
#include <utility>

#include "ucoro/io_context.hpp"
#include "ucoro/task.hpp"

namespace ucoro_test {

/// An io_context whose spawned tasks cannot fail silently: an exception that escapes one
/// (a REQUIRE inside a coroutine throws) stops the context, and run() / block_on() rethrow
/// it here, in the test's own code, where Catch2 reports it.
class test_context : public ucoro::io_context {
public:
    explicit test_context(ucoro::io_context_options options) : io_context(options) {
        set_unhandled_exception_handler([this](std::exception_ptr error) {
            if (!m_escaped) {
                m_escaped = error;
            }
            stop();
        });
    }

    void run() {
        io_context::run();
        rethrow_escaped();
    }

    template <typename T>
    T block_on(ucoro::task<T> work) {
        if constexpr (std::is_void_v<T>) {
            io_context::block_on(std::move(work));
            rethrow_escaped();
        } else {
            T value = io_context::block_on(std::move(work));
            rethrow_escaped();
            return value;
        }
    }

    void rethrow_escaped() {
        if (auto error = std::exchange(m_escaped, nullptr)) {
            std::rethrow_exception(error);
        }
    }

private:
    std::exception_ptr m_escaped;
};

/// A context, or null (after a WARN saying "SKIPPED" and why, which ctest reports as a
/// skip) when this machine cannot set up io_uring: a sandbox that forbids it is not a
/// failure of ucoro. Catch2 v2 has no SKIP, so the caller returns early.
inline std::unique_ptr<test_context> make_context(ucoro::io_context_options options = {}) {
    try {
        return std::make_unique<test_context>(options);
    } catch (const std::system_error& e) {
        WARN("SKIPPED: io_uring is not available here: " << e.what());
        return nullptr;
    }
}

} // namespace ucoro_test
