#include "ucoro/detail/cancellation_scope.hpp"

#include "ucoro/io_context.hpp"

namespace ucoro::detail {

namespace {

void cancel_in_ring(operation& op) noexcept {
    try {
        op.cancel_from_scope();
    } catch (...) {
        // io_uring_enter failed while flushing a full SQ: the ring is broken, and the loop's
        // next submit reports that to run()'s caller. There is nothing better to do here.
    }
}

} // namespace

cancellation_scope::~cancellation_scope() {
    detach();
    if (m_current != nullptr) {
        // The operation outlives us (a frame torn down after the promise holding us): it
        // must not leave a scope that is gone.
        m_current->m_registered_scope = nullptr;
    }
    // A child normally goes first (its frame is inside ours); one that does not must not
    // keep pointing here.
    for (cancellation_scope* child = m_first_child; child != nullptr;) {
        cancellation_scope* next = child->m_next_sibling;
        child->m_parent = child->m_next_sibling = child->m_prev_sibling = nullptr;
        child = next;
    }
}

void cancellation_scope::attach(cancellation_scope* parent) noexcept {
    detach();
    m_parent = parent;
    if (parent == nullptr) {
        return;
    }
    m_next_sibling = parent->m_first_child;
    if (m_next_sibling != nullptr) {
        m_next_sibling->m_prev_sibling = this;
    }
    parent->m_first_child = this;
    if (parent->m_requested) {
        request();
    }
}

void cancellation_scope::detach() noexcept {
    if (m_parent == nullptr) {
        return;
    }
    if (m_prev_sibling != nullptr) {
        m_prev_sibling->m_next_sibling = m_next_sibling;
    } else {
        m_parent->m_first_child = m_next_sibling;
    }
    if (m_next_sibling != nullptr) {
        m_next_sibling->m_prev_sibling = m_prev_sibling;
    }
    m_parent = m_next_sibling = m_prev_sibling = nullptr;
}

void cancellation_scope::request() noexcept {
    if (m_requested) {
        return;
    }
    m_requested = true;
    if (m_current != nullptr) {
        cancel_in_ring(*m_current);
    }
    // Only SQEs are queued here, nobody is resumed, so the tree cannot change under us.
    for (cancellation_scope* child = m_first_child; child != nullptr;
         child = child->m_next_sibling) {
        child->request();
    }
}

void cancellation_scope::enter(operation& op) noexcept {
    if (op.m_registered_scope != nullptr && op.m_registered_scope != this) {
        op.m_registered_scope->leave(op);
    }
    if (m_current != nullptr && m_current != &op) {
        m_current->m_registered_scope = nullptr; // replaced without a leave: unlink it
    }
    m_current = &op;
    op.m_registered_scope = this;
    if (m_requested) {
        cancel_in_ring(op);
    }
}

} // namespace ucoro::detail
