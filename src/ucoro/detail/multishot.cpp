#include "ucoro/detail/multishot.hpp"

#include <liburing.h>

#include <cassert>
#include <cerrno>
#include <utility>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/detail/transfer.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::detail {

void completion_queue::push(completion c) {
    if (m_size == m_slots.size()) {
        std::vector<completion> larger;
        larger.reserve(m_slots.empty() ? 8 : m_slots.size() * 2);
        for (std::size_t i = 0; i < m_size; ++i) {
            larger.push_back(m_slots[(m_head + i) % m_slots.size()]);
        }
        larger.resize(larger.capacity());
        m_slots = std::move(larger);
        m_head = 0;
    }
    m_slots[(m_head + m_size) % m_slots.size()] = c;
    ++m_size;
}

completion completion_queue::pop() noexcept {
    assert(m_size > 0 && "pop() on an empty completion queue");
    const completion c = m_slots[m_head];
    m_head = (m_head + 1) % m_slots.size();
    --m_size;
    return c;
}

void multishot_operation::arm() {
    if (!m_armed && may_arm()) {
        context().submit(*this);
        m_armed = true;
        if (registered_scope() != nullptr && registered_scope()->requested()) {
            // Re-armed by the subclass while a cancelled chain waits (the end of a pause, a
            // buffer come back): this submission needs its own cancel.
            context().cancel(*this);
        }
    }
}

void multishot_operation::wait(std::coroutine_handle<> waiter, cancellation_scope* scope) {
    arm();
    m_waiter = waiter;
    if (scope != nullptr) {
        scope->enter(*this); // cancels at once (cancel_from_scope) if requested already
    }
}

void multishot_operation::cancel_from_scope() {
    if (m_armed) {
        context().cancel(*this); // the final CQE, -ECANCELED, ends the wait
    } else if (m_waiter) {
        // Held back by the subclass (no ring buffer free): nothing in the ring to cancel.
        post_completion({-ECANCELED, 0});
    }
}

void multishot_operation::leave_scope() noexcept {
    if (cancellation_scope* const scope = registered_scope()) {
        scope->leave(*this);
    }
}

void multishot_operation::complete(int result, std::uint32_t flags) noexcept {
    const bool final = (flags & IORING_CQE_F_MORE) == 0;
    completion c{result, flags};
    if (m_orphaned) {
        if (filter(c, /*live=*/false)) {
            drop(c);
        }
        if (final) {
            delete this; // the context has already unlinked it: nothing refers to it now
        }
        return;
    }
    if (final) {
        m_armed = false;
    }
    if (!filter(c, /*live=*/true)) {
        return;
    }
    try {
        m_queue.push(c);
    } catch (...) {
        // Out of memory with a completion in hand: losing it silently would break the
        // exactly-once promise, so stop here.
        std::terminate();
    }
    // Last: the resumed consumer may release (and so delete) this operation.
    if (const auto waiter = std::exchange(m_waiter, nullptr)) {
        leave_scope();
        detail::resume(waiter);
    }
}

void multishot_operation::discard(int result, std::uint32_t flags) noexcept {
    completion c{result, flags};
    if (filter(c, /*live=*/false)) {
        drop(c);
    }
    if ((flags & IORING_CQE_F_MORE) == 0) {
        m_armed = false;
        if (m_orphaned) {
            delete this;
        }
    }
}

void multishot_operation::post_completion(completion c) noexcept {
    try {
        m_queue.push(c);
        if (const auto waiter = std::exchange(m_waiter, nullptr)) {
            leave_scope();
            context().post(waiter);
        }
    } catch (...) {
        std::terminate(); // as in complete(): a completion must not be lost silently
    }
}

void multishot_operation::release() noexcept {
    // First, before anything can delete this: a scope left pointing here would cancel freed
    // memory at its next request. Safe even when the consumer's scope is gone already (a
    // spawned task's promise is destroyed before the frames of the tasks it awaits): the
    // scope's destructor has then cleared the link.
    leave_scope();
    while (!m_queue.empty()) {
        drop(m_queue.pop());
    }
    if (!m_armed) {
        delete this;
        return;
    }
    m_orphaned = true;
    m_waiter = nullptr;
    context().adopt(*this); // its final CQE deletes it (see complete and discard)
}

void multishot_operation::abandon() noexcept {
    // The final CQE was lost and the kernel has let go: nothing else will free it.
    m_armed = false;
    if (m_orphaned) {
        delete this;
    }
}

} // namespace ucoro::detail
