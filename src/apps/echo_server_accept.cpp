#include "echo_server_accept.hpp"

#include <chrono>
#include <cstddef>
#include <exception>
#include <system_error>
#include <utility>

#include <fmt/core.h>

#include "echo_server_connection.hpp"
#include "echo_server_drain.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/when_any.hpp"

namespace ucoro::apps {

namespace {

// accept(2) errors that concern one connection, not the listener: skip and go on.
bool is_transient_accept_error(const std::error_code& error) {
    return error == std::errc::connection_aborted || error == std::errc::protocol_error ||
           error == std::errc::operation_not_permitted || error == std::errc::interrupted ||
           error == std::errc::network_down || error == std::errc::network_unreachable ||
           error == std::errc::host_unreachable;
}

// Out of descriptors or memory: the listener is fine, but accepting again at once would
// fail again at once. Back off instead of spinning.
bool is_resource_accept_error(const std::error_code& error) {
    return error == std::errc::too_many_files_open ||
           error == std::errc::too_many_files_open_in_system ||
           error == std::errc::no_buffer_space || error == std::errc::not_enough_memory;
}

// A sleep as a task, for when_any.
task<std::error_code> sleep_task(io_context& context, std::chrono::milliseconds duration) {
    co_return co_await sleep_for(context, duration);
}

task<std::error_code> wait_for(async_event& event) {
    co_return co_await event.wait();
}

// Waits until the accept loop is woken (server_controls::wake_accept_loop: a connection
// closed, or a drain began) or `longest` passes, whichever is first; the other wait is
// cancelled. Without the event, just sleeps.
task<void> pause_accepting(io_context& context, server_controls* controls,
                           std::chrono::milliseconds longest) {
    if (controls == nullptr || controls->accept_wake == nullptr) {
        (void)co_await sleep_for(context, longest);
        co_return;
    }
    (void)co_await when_any(wait_for(*controls->accept_wake), sleep_task(context, longest));
}

task<void> accept_loop(io_context& context, net::listener& listener, bool quiet,
                       echo_server_stats& stats, buffer_ring* ring, server_controls* controls) {
    // One multishot request accepts connection after connection (one plain accept each on
    // kernels before 5.19); an error ends it, and the next next() arms a new one.
    auto connections = listener.accept_multishot();
    // With --max-connections, one plain accept at a time, armed only below the limit: a
    // multishot accept takes every connection waiting in the backlog at once, so it could
    // not stop at the limit, and the surplus would hold descriptors in this process
    // instead of waiting in the kernel's backlog.
    const std::size_t limit = controls != nullptr ? controls->max_connections : 0;
    bool backing_off = false;
    bool at_limit = false;
    while (!context.stop_requested() && (controls == nullptr || !controls->draining)) {
        if (controls != nullptr && controls->accept_wake != nullptr) {
            // Lowered before we look (at the limit, at an accept's error), so that a
            // connection closing from here on, even before a pause begins, ends that pause.
            controls->accept_wake->reset();
        }
        if (limit != 0 && controls->live >= limit) {
            if (!at_limit && !quiet) {
                fmt::print("{} connections: not accepting until one closes\n", limit);
            }
            at_limit = true;
            // The timeout is a safety net; a closing connection ends the pause.
            co_await pause_accepting(context, controls, std::chrono::seconds(1));
            continue;
        }
        at_limit = false;
        io_result<net::socket> accepted;
        if (limit != 0) {
            accepted = co_await listener.accept();
        } else {
            accepted = co_await connections.next();
        }
        auto& [error, connection] = accepted;
        if (!error) {
            if (backing_off) {
                // Ends the episode, so that the log pairs every pause with its end.
                fmt::print(stderr, "ucoro-echo-server: accepting new connections again\n");
                backing_off = false;
            }
            ++stats.accepted;
            if (controls != nullptr) {
                controls->connection_opened();
            }
            connection.set_no_delay(); // echo replies are small and should leave at once
            try {
                context.spawn(echo_connection(std::move(connection), quiet, stats, ring, controls));
            } catch (...) {
                // Never started (out of memory for the frame): it will not count itself out.
                if (controls != nullptr) {
                    controls->connection_closed();
                }
                throw;
            }
            continue;
        }
        if (error == std::errc::operation_canceled) {
            break; // the context stops, or a drain began
        }
        if (is_transient_accept_error(error)) {
            continue;
        }
        if (is_resource_accept_error(error)) {
            // One line per episode: the episode ends at the next successful accept.
            if (!backing_off) {
                fmt::print(stderr,
                           "ucoro-echo-server: accept: {}; pausing new connections until one "
                           "closes (raise the limit with 'ulimit -n')\n",
                           error.message());
                backing_off = true;
                ++stats.accept_pauses;
            }
            // Retrying at once would fail at once: wait for a connection to close and free
            // a descriptor, or 100 ms for one freed elsewhere. The multishot accept ended
            // with the error; next() arms a new one.
            co_await pause_accepting(context, controls, std::chrono::milliseconds(100));
            continue;
        }
        fmt::print(stderr, "ucoro-echo-server: accept on {} failed: {}\n", listener.local_address(),
                   error.message());
        stats.failed = true;
        stop_serving(context, controls);
        break;
    }
}

} // namespace

task<void> accept_connections(io_context& context, net::listener& listener, bool quiet,
                              echo_server_stats& stats, buffer_ring* ring,
                              server_controls* controls) {
    try {
        co_await accept_loop(context, listener, quiet, stats, ring, controls);
        if (controls != nullptr && controls->draining) {
            // A drain accepts no more, so stop listening: the kernel would otherwise go on
            // completing handshakes into the backlog, and a balancer's connect check would
            // keep sending clients that nobody accepts and the exit resets
            // (docs/deployment.md). Refused now, they go elsewhere at once.
            (void)co_await listener.close();
        }
    } catch (const std::exception& e) {
        // Without its accept loop the server would sit there serving nobody and later exit
        // 0: a failure of the loop itself (the ring broke, out of memory) ends the server.
        fmt::print(stderr, "ucoro-echo-server: the accept loop failed: {}; stopping\n", e.what());
        stats.failed = true;
        stop_serving(context, controls);
    }
}

} // namespace ucoro::apps
