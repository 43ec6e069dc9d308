#include "ucoro/async_event.hpp"

#include <cstdlib>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro {

async_event::~async_event() {
    // Each waiter's node lives in its own frame, which outlives us: it is woken (posted)
    // and forgets this event. Out of memory for the post terminates, as anything escaping
    // a destructor does.
    while (m_first != nullptr) {
        m_first->wake(std::make_error_code(std::errc::operation_canceled));
    }
}

void async_event::set() {
    m_set = true;
    // In the order they came. wake() takes each off the list, so this ends.
    while (m_first != nullptr) {
        m_first->wake(std::error_code());
    }
}

async_event::wait_operation::wait_operation(async_event& event) noexcept
    : operation(event.m_context), m_event(&event) {}

async_event::wait_operation::~wait_operation() {
    // A frame destroyed while waiting (~io_context frees unfinished tasks): the event must
    // not keep pointing into it. ~operation then leaves the scope.
    if (m_state == state::listed) {
        unlink();
    }
}

bool async_event::wait_operation::suspend(std::coroutine_handle<> waiter,
                                          detail::cancellation_scope* scope) {
    m_error = {}; // an awaiter kept in a variable may be awaited again
    if (scope != nullptr && scope->requested()) {
        m_error = std::make_error_code(std::errc::operation_canceled);
        return false;
    }
    if (m_event->m_set) {
        return false; // set: success
    }
    m_waiter = waiter;
    m_state = state::listed;
    m_prev_waiter = m_event->m_last;
    if (m_prev_waiter != nullptr) {
        m_prev_waiter->m_next_waiter = this;
    } else {
        m_event->m_first = this;
    }
    m_event->m_last = this;
    if (scope != nullptr) {
        scope->enter(*this); // not requested (checked above): this only registers
    }
    return true;
}

void async_event::wait_operation::wake(std::error_code error) {
    context().post(m_waiter); // first: if it throws, the waiter is still listed
    unlink();
    m_error = error;
    m_state = state::woken;
    if (detail::cancellation_scope* const scope = registered_scope()) {
        scope->leave(*this); // its result is final: a later request has nothing to cancel
    }
}

void async_event::wait_operation::unlink() noexcept {
    if (m_prev_waiter != nullptr) {
        m_prev_waiter->m_next_waiter = m_next_waiter;
    } else {
        m_event->m_first = m_next_waiter;
    }
    if (m_next_waiter != nullptr) {
        m_next_waiter->m_prev_waiter = m_prev_waiter;
    } else {
        m_event->m_last = m_prev_waiter;
    }
    m_prev_waiter = m_next_waiter = nullptr;
}

void async_event::wait_operation::cancel_from_scope() {
    if (m_state == state::listed) {
        wake(std::make_error_code(std::errc::operation_canceled));
    }
    // Woken already: set() came first, and its success stands.
}

void async_event::wait_operation::prepare(io_uring_sqe&) noexcept {
    std::abort(); // never submitted: see the class comment
}

void async_event::wait_operation::complete(int, std::uint32_t) noexcept {
    std::abort();
}

} // namespace ucoro
