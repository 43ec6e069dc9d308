#include "echo_server_drain.hpp"

#include <csignal>
#include <cstddef>
#include <system_error>

#include <fmt/core.h>

#include "ucoro/sleep.hpp"
#include "ucoro/when_any.hpp"

namespace ucoro::apps {

namespace {

const char* signal_name(int signal_number) {
    return signal_number == SIGINT ? "SIGINT" : "SIGTERM";
}

// A sleep as a task, for when_any.
task<std::error_code> sleep_task(io_context& context, std::chrono::milliseconds duration) {
    co_return co_await sleep_for(context, duration);
}

// A signal wait as a task, for when_any.
task<io_result<int>> signal_task(signal_set& signals) {
    co_return co_await signals.wait();
}

} // namespace

void stop_serving(io_context& context, server_controls* controls) noexcept {
    if (controls != nullptr && controls->deadlines != nullptr) {
        controls->deadlines->shut_down_all();
    }
    context.stop();
}

task<void> watch_signals(io_context& context, signal_set& signals, net::listener& listener,
                         server_controls& controls, std::chrono::milliseconds drain_timeout) {
    auto [error, signal_number] = co_await signals.wait();
    if (error) {
        stop_serving(context, &controls);
        co_return;
    }
    const std::size_t live = controls.live;
    fmt::print("caught {}, draining {} connection{} (up to {} ms; again to stop at once)\n",
               signal_name(signal_number), live, live == 1 ? "" : "s", drain_timeout.count());
    controls.draining = true;
    try {
        listener.cancel(); // ends the armed accept; the loop sees draining and stops
    } catch (const std::system_error& e) {
        // The ring cannot take the cancel (io_uring_enter failed flushing a full SQ). Going
        // on without it would leave the accept armed; letting the exception out would leave
        // the signals blocked with nobody reading them, so no signal could stop us. Stop now.
        fmt::print(stderr, "ucoro-echo-server: cannot start the drain ({}); stopping now\n",
                   e.what());
        stop_serving(context, &controls);
        co_return;
    }
    controls.wake_accept_loop();
    controls.deadlines->shut_down_receives();
    if (live == 0) {
        context.stop(); // no connection, so no send that only a shutdown could end
        co_return;
    }
    auto outcome = co_await when_any(sleep_task(context, drain_timeout), signal_task(signals));
    if (context.stop_requested()) {
        co_return; // every connection closed in time
    }
    if (outcome.index == 1) {
        fmt::print("caught a second signal, closing connections now\n");
    } else {
        fmt::print("drain timeout: closing the {} remaining connection{}\n", controls.live,
                   controls.live == 1 ? "" : "s");
    }
    // Each connection then unwinds and closes its socket.
    stop_serving(context, &controls);
}

} // namespace ucoro::apps
