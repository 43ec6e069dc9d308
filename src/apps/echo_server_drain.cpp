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

task<std::error_code> wait_for(async_event& event) {
    co_return co_await event.wait();
}

// A signal wait as a task, for when_any.
task<io_result<int>> signal_task(signal_set& signals) {
    co_return co_await signals.wait();
}

// Posts `action(controls)` to every serving thread; a thread already gone is skipped.
template <typename Action>
void on_every_thread(serving_threads& threads, Action action) {
    for (std::size_t i = 0; i < threads.shared->remotes.size(); ++i) {
        server_controls* controls = threads.shared->controls[i];
        try {
            (void)threads.shared->remotes[i].post([controls, action] { action(*controls); });
        } catch (const std::exception& e) {
            // Out of memory, or the wake-up failed (the message still runs at the next one).
            fmt::print(stderr, "ucoro-echo-server: cannot reach thread {}: {}\n", i, e.what());
        }
    }
}

void close_everything(serving_threads& threads) {
    on_every_thread(threads,
                    [](server_controls& controls) { stop_serving(*controls.context, &controls); });
}

} // namespace

void stop_serving(io_context& context, server_controls* controls) noexcept {
    if (controls != nullptr && controls->deadlines != nullptr) {
        controls->deadlines->shut_down_all();
    }
    context.stop();
}

task<void> coordinate_shutdown(io_context& main_context, signal_set& signals,
                               serving_threads& threads, std::chrono::milliseconds drain_timeout) {
    auto first = co_await when_any(signal_task(signals), wait_for(*threads.first_ended));
    const auto* received = std::get_if<0>(&first.value);
    if (first.index != 0 || received == nullptr || received->error) {
        // A thread ended on its own (its accept loop failed), or the signals failed.
        threads.failed = first.index != 0;
        close_everything(threads);
        (void)co_await threads.all_ended->wait();
        main_context.stop();
        co_return;
    }
    const std::size_t live = threads.shared->live.load(std::memory_order_relaxed);
    fmt::print("caught {}, draining {} connection{} (up to {} ms; again to stop at once)\n",
               signal_name(received->value), live, live == 1 ? "" : "s", drain_timeout.count());
    on_every_thread(threads, [](server_controls& controls) { (void)controls.begin_drain(); });
    threads.group->finish(); // each loop returns once its connections are gone
    auto outcome = co_await when_any(sleep_task(main_context, drain_timeout), signal_task(signals),
                                     wait_for(*threads.all_ended));
    if (outcome.index != 2) {
        if (outcome.index == 1) {
            fmt::print("caught a second signal, closing connections now\n");
        } else {
            const std::size_t left = threads.shared->live.load(std::memory_order_relaxed);
            fmt::print("drain timeout: closing the {} remaining connection{}\n", left,
                       left == 1 ? "" : "s");
        }
        // Each connection then unwinds and closes its socket.
        close_everything(threads);
        (void)co_await threads.all_ended->wait();
    }
    main_context.stop();
}

} // namespace ucoro::apps
