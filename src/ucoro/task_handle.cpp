#include "ucoro/task_handle.hpp"

#include <stdexcept>
#include <utility>

#include "ucoro/detail/spawn.hpp"

namespace ucoro {

task_handle::task_handle(detail::spawned_promise& promise) noexcept : m_promise(&promise) {
    promise.m_handle = this;
}

task_handle::task_handle(task_handle&& other) noexcept
    : m_promise(std::exchange(other.m_promise, nullptr)) {
    if (m_promise != nullptr) {
        m_promise->m_handle = this; // the promise clears it when the task finishes
    }
}

task_handle& task_handle::operator=(task_handle&& other) noexcept {
    if (this != &other) {
        detach();
        m_promise = std::exchange(other.m_promise, nullptr);
        if (m_promise != nullptr) {
            m_promise->m_handle = this;
        }
    }
    return *this;
}

void task_handle::cancel() noexcept {
    if (m_promise != nullptr) {
        m_promise->m_own_scope.request();
    }
}

void task_handle::detach() noexcept {
    if (m_promise != nullptr) {
        m_promise->m_handle = nullptr;
        m_promise = nullptr;
    }
}

task_handle::join_awaiter task_handle::join() noexcept {
    return join_awaiter(*this);
}

void task_handle::join_awaiter::await_suspend(std::coroutine_handle<> waiter) {
    detail::spawned_promise& promise = *m_handle->m_promise;
    if (promise.m_joiner) {
        throw std::logic_error("task_handle::join: another coroutine is joining this task");
    }
    promise.m_joiner = waiter;
}

} // namespace ucoro
