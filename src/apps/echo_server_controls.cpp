#include "echo_server_controls.hpp"

#include <algorithm>
#include <system_error>

#include <fmt/core.h>

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
    if (shared != nullptr && shared->max_connections == 0) {
        shared->live.fetch_add(1, std::memory_order_relaxed); // with a limit: reserve_slot
    }
    context->set_batch_wait_events(batch_for(live, max_batch));
}

bool server_controls::reserve_slot() noexcept {
    // Never past the limit, not even for a moment: a failed add-then-undo would let a
    // closing connection on another thread see the count above the limit, and so skip the
    // wake-up of the threads paused at it (release_slot), which would then wait out their
    // pause's timeout with a slot free.
    std::size_t count = shared->live.load(std::memory_order_relaxed);
    do {
        if (count >= shared->max_connections) {
            return false;
        }
    } while (!shared->live.compare_exchange_weak(count, count + 1, std::memory_order_relaxed));
    return true;
}

void server_controls::release_slot() noexcept {
    const std::size_t before = shared->live.fetch_sub(1, std::memory_order_relaxed);
    if (before == shared->max_connections && shared->controls.size() > 1) {
        // The server was full: the other threads' accept loops may be paused at the limit.
        for (std::size_t i = 0; i < shared->remotes.size(); ++i) {
            if (i == index) {
                continue;
            }
            server_controls* other = shared->controls[i];
            try {
                (void)shared->remotes[i].post([other] { other->wake_accept_loop(); });
            } catch (...) {
                // No memory, or no wake-up: that loop's pause ends by its own timeout.
            }
        }
    }
}

void server_controls::connection_closed() noexcept {
    --live;
    if (shared != nullptr) {
        if (shared->max_connections != 0) {
            release_slot();
        } else {
            shared->live.fetch_sub(1, std::memory_order_relaxed);
        }
    }
    context->set_batch_wait_events(batch_for(live, max_batch));
    if (draining && live == 0) {
        context->stop(); // the drain is complete
        if (drained) {
            drained();
        }
        return;
    }
    wake_accept_loop();
}

bool server_controls::begin_drain() noexcept {
    draining = true;
    try {
        if (listener != nullptr) {
            listener->cancel(); // ends the armed accept; the loop sees draining, stops
        }
    } catch (const std::system_error& e) {
        // The ring cannot take the cancel (io_uring_enter failed flushing a full SQ). Going
        // on without it would leave the accept armed: stop now instead.
        fmt::print(stderr, "ucoro-echo-server: cannot start the drain ({}); stopping now\n",
                   e.what());
        deadlines->shut_down_all();
        context->stop();
        return false;
    }
    wake_accept_loop();
    deadlines->shut_down_receives();
    if (live == 0) {
        context->stop(); // no connection, so no send that only a shutdown could end
        if (drained) {
            drained();
        }
    }
    return true;
}

} // namespace ucoro::apps
