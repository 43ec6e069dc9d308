#include "ucoro/detail/join.hpp"

namespace ucoro::detail {

std::coroutine_handle<> join_child::promise_type::final_awaiter::await_suspend(
    std::coroutine_handle<promise_type> self) noexcept {
    return transfer_to(self.promise().m_join->arrive());
}

void join_child::start(join_state& join, cancellation_scope* parent) noexcept {
    promise_type& p = promise();
    p.m_join = &join;
    p.m_own_scope.attach(parent);
    p.m_scope = &p.m_own_scope; // handed down to the child task and everything it awaits
    detail::resume(m_handle);
}

bool join_state::start(std::span<join_child> children, std::coroutine_handle<> parent,
                       cancellation_scope* scope) noexcept {
    m_children = children;
    m_parent = parent;
    for (join_child& child : children) {
        child.start(*this, scope);
    }
    return --m_remaining != 0;
}

void join_state::finished(std::size_t index, bool failed) noexcept {
    if (failed && m_first_failure == none) {
        m_first_failure = index;
    }
    if (m_first_wins && m_winner == none) {
        m_winner = index;
        for (std::size_t i = 0; i < m_children.size(); ++i) {
            if (i != index) {
                m_children[i].cancel(); // queues cancel SQEs; nobody is resumed here
            }
        }
    }
}

} // namespace ucoro::detail
