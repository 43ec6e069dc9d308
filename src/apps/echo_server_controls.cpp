#include "echo_server_controls.hpp"

#include <algorithm>

namespace ucoro::apps {

void server_controls::wake_accept_loop() noexcept {
    if (accept_wake == nullptr) {
        return;
    }
    try {
        accept_wake->set(); // the loop resumes on the next turn, in its own frame
    } catch (...) {
        // Out of memory for io_context::post: the pause ends by itself, a little later.
    }
}

namespace {

unsigned batch_for(std::size_t live, unsigned max_batch) noexcept {
    return static_cast<unsigned>(std::min<std::size_t>(live, max_batch));
}

} // namespace

void server_controls::connection_opened() noexcept {
    ++live;
    context->set_batch_wait_events(batch_for(live, max_batch));
}

void server_controls::connection_closed() noexcept {
    --live;
    context->set_batch_wait_events(batch_for(live, max_batch));
    if (draining && live == 0) {
        context->stop(); // the drain is complete
        return;
    }
    wake_accept_loop();
}

} // namespace ucoro::apps
