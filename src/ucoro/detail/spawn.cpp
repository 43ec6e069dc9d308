#include "ucoro/detail/spawn.hpp"

#include <exception>
#include <utility>

#include "ucoro/io_context.hpp"
#include "ucoro/task_handle.hpp"
#include "ucoro/trace.hpp"

namespace ucoro {

namespace detail {

spawned_promise::spawned_promise(io_context& context, task<void>& work) noexcept
    : m_context(&context), m_task_frame(work.address()) {
    m_next = context.m_spawned_head;
    if (m_next != nullptr) {
        m_next->m_prev = this;
    }
    context.m_spawned_head = this;
    m_own_scope.attach(&context.m_root_scope); // requested already if a stop is pending
    m_scope = &m_own_scope; // what the awaited task, and its whole chain, inherits
}

spawned_promise::~spawned_promise() {
    if (m_handle != nullptr) {
        m_handle->m_promise = nullptr; // the handle now says done()
    }
    if (m_finished && m_joiner) {
        // Not resumed here, inside the frame's destruction: on the next turn. Destroyed
        // unfinished (by ~io_context), nobody is resumed at all.
        m_context->post(m_joiner);
    }
    if (m_prev != nullptr) {
        m_prev->m_next = m_next;
    } else {
        m_context->m_spawned_head = m_next;
    }
    if (m_next != nullptr) {
        m_next->m_prev = m_prev;
    }
}

void spawned_promise::unhandled_exception() noexcept {
    m_finished = true;
    trace::task(m_context->trace_output(), "finish", m_task_frame, /*exception=*/true);
    // Nobody awaits a detached task: the context's policy decides what the failure means.
    m_context->report_unhandled_exception(std::current_exception());
}

namespace {

spawned_promise::spawned run_detached(io_context& context, task<void> work) {
    const void* frame = work.address(); // the task's own id in the trace, not this wrapper's
    trace::task(context.trace_output(), "spawn", frame);
    co_await std::move(work);
    trace::task(context.trace_output(), "finish", frame);
}

} // namespace
} // namespace detail

task_handle io_context::spawn(task<void> work) {
    const auto spawned = detail::run_detached(*this, std::move(work));
    post(spawned.handle);
    return task_handle(spawned.handle.promise()); // built in the caller's object: no move
}

} // namespace ucoro
