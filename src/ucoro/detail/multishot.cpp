#include "ucoro/detail/multishot.hpp"

#include <liburing.h>

#include <cassert>
#include <cerrno>
#include <exception>
#include <stdexcept>
#include <utility>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/detail/context_access.hpp"
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

const char* to_string(multishot_state state) noexcept {
    switch (state) {
    case multishot_state::idle:
        return "idle";
    case multishot_state::armed:
        return "armed";
    case multishot_state::pausing:
        return "pausing";
    case multishot_state::held:
        return "held";
    case multishot_state::orphaned:
        return "orphaned";
    case multishot_state::lingering:
        return "lingering";
    }
    return "?";
}

void multishot_operation::enter(multishot_state to) noexcept {
    assert(multishot_transition_allowed(m_state, to) && "multishot: transition not in the table");
    m_state = to;
}

void multishot_operation::arm() {
    if (m_state == multishot_state::idle && may_arm()) {
        context_access::submit(context(), *this);
        enter(multishot_state::armed);
    }
}

void multishot_operation::hold() noexcept {
    enter(multishot_state::held);
}

void multishot_operation::unhold() noexcept {
    enter(multishot_state::idle);
}

void multishot_operation::pause() {
    context_access::cancel(context(), *this); // first: if the SQ cannot take it, nothing changed
    enter(multishot_state::pausing);
}

void multishot_operation::wait(std::coroutine_handle<> waiter, cancellation_scope* scope,
                               wait_slot& slot) {
    if (m_waiter) {
        // One consumer at a time: a second waiter would silently replace the first, which
        // would then never be resumed.
        throw std::logic_error("ucoro: two coroutines wait in next() on the same stream");
    }
    arm();
    m_waiter = waiter;
    m_slot = &slot;
    if (scope != nullptr) {
        scope->enter(*this); // cancels the wait at once (cancel_from_scope) if requested
    }
    if (m_waiter && !armed() && m_queue.empty()) {
        waiting_for_nothing();
    }
}

void multishot_operation::cancel_from_scope() {
    // Partial: only the wait ends. The request and its queue are left as they are.
    end_wait(-ECANCELED);
}

void multishot_operation::fail_wait(int error_number) noexcept {
    end_wait(-error_number);
}

void multishot_operation::end_wait(int error) noexcept {
    if (const auto waiter = std::exchange(m_waiter, nullptr)) {
        wait_slot* const slot = std::exchange(m_slot, nullptr);
        leave_scope();
        slot->result = error;
        slot->ended = true;
        try {
            context().post(waiter);
        } catch (...) {
            std::terminate(); // a waiter that is never resumed would hang its task for ever
        }
    }
}

void multishot_operation::leave_scope() noexcept {
    if (cancellation_scope* const scope = registered_scope()) {
        scope->leave(*this);
    }
}

void multishot_operation::enqueue(completion c) noexcept {
    try {
        m_queue.push(c);
    } catch (...) {
        // Out of memory with a completion in hand: losing it silently would break the
        // exactly-once promise, so stop here.
        std::terminate();
    }
}

void multishot_operation::wake() noexcept {
    // Last in its caller: the resumed consumer may release (and so free) this operation.
    if (const auto waiter = std::exchange(m_waiter, nullptr)) {
        m_slot = nullptr;
        leave_scope();
        detail::resume(waiter);
    }
}

void multishot_operation::complete(int result, std::uint32_t flags) noexcept {
    const bool final = (flags & IORING_CQE_F_MORE) == 0;
    completion c{result, flags};
    if (m_state == multishot_state::orphaned) {
        if (filter(c, /*live=*/false)) {
            discard_completion(c);
        }
        if (final) {
            // The context has unlinked it already: nothing but the loans refers to it now.
            if (has_loans()) {
                enter(multishot_state::lingering);
            } else {
                delete this;
            }
        }
        return;
    }
    m_pause_ending = final && m_state == multishot_state::pausing;
    if (final) {
        enter(multishot_state::idle);
    }
    const bool pass = filter(c, /*live=*/true);
    m_pause_ending = false;
    if (pass) {
        enqueue(c);
    }
    if (!m_queue.empty()) {
        wake(); // also for what the filter queued itself (a bundle, one buffer at a time)
    }
}

void multishot_operation::discard(int result, std::uint32_t flags) noexcept {
    completion c{result, flags};
    if (filter(c, /*live=*/false)) {
        discard_completion(c);
    }
    if ((flags & IORING_CQE_F_MORE) == 0) {
        abandon(); // the kernel is done with it, and nobody will be resumed
    }
}

void multishot_operation::abandon() noexcept {
    // The final CQE was lost (or discarded) and the kernel has let go.
    if (m_state == multishot_state::orphaned) {
        if (has_loans()) {
            enter(multishot_state::lingering);
        } else {
            delete this;
        }
    } else if (armed()) {
        enter(multishot_state::idle);
    }
}

bool multishot_operation::loans_returned() noexcept {
    if (m_state == multishot_state::lingering && !m_releasing) {
        delete this;
        return true;
    }
    return false;
}

void multishot_operation::release() noexcept {
    // First, before anything can free this: a scope left pointing here would cancel freed
    // memory at its next request. Safe even when the consumer's scope is gone already (a
    // spawned task's promise is destroyed before the frames of the tasks it awaits): the
    // scope's destructor has then cleared the link.
    leave_scope();
    m_waiter = nullptr;
    m_slot = nullptr;
    const bool in_kernel = armed();
    enter(in_kernel ? multishot_state::orphaned : multishot_state::lingering);
    // What nobody will consume now is freed (buffers back to the ring, accepted sockets
    // closed); the subclass sees released() and re-arms nothing meanwhile.
    m_releasing = true;
    while (!m_queue.empty()) {
        discard_completion(m_queue.pop());
    }
    m_releasing = false;
    if (in_kernel) {
        context_access::release(context(),
                                *this); // its final CQE frees it (see complete and discard)
    } else if (!has_loans()) {
        delete this;
    }
}

} // namespace ucoro::detail
