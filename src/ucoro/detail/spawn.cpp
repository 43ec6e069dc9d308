#include "ucoro/detail/spawn.hpp"

#include <exception>
#include <utility>

#include "ucoro/io_context.hpp"
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
}

spawned_promise::~spawned_promise() {
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

void io_context::spawn(task<void> work) {
    post(detail::run_detached(*this, std::move(work)).handle);
}

} // namespace ucoro
