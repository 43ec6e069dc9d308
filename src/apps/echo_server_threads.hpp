// One serving thread of ucoro-echo-server: its state, its setup on its own thread (listener
// with SO_REUSEPORT, receive path, accept loop), its teardown before its context goes, and
// the -v counters the main thread prints once every thread has ended.
#pragma once

#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "connection_deadlines.hpp"
#include "echo_server_accept.hpp"
#include "echo_server_controls.hpp"
#include "echo_server_options.hpp"
#include "ucoro/async_event.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/listener.hpp"

namespace ucoro::apps {

/// What to try when listening fails with `error`, in a few words.
std::string_view hint_for_listen_error(const std::error_code& error);

/// A listener that could not be set up, with the address it was for.
struct listen_failure : std::system_error {
    listen_failure(const std::system_error& e, const net::address& where)
        : std::system_error(e), local(where) {}
    net::address local;
};

/// One serving thread's state. Owned by the main thread (so that the counters outlive the
/// thread, for -v, and the deadline list outlives the context, whose destructor may destroy
/// connection frames that point into it); the thread sets it up and uses it, and destroys
/// what must go before its context (listener, ring, accept_wake) in its after_run.
struct serving_thread {
    echo_server_stats stats;
    std::optional<connection_deadlines> deadlines;
    server_controls controls;
    std::optional<net::listener> listener;
    std::optional<buffer_ring> ring;
    std::optional<async_event> accept_wake;
    // Written by setup, then only read (the main thread may read them while the thread
    // runs, and after it tore the objects above down).
    std::string path; // the receive path, for -v
    net::address local;
    buffer_ring* ring_in_use = nullptr;
    bool alive = false; // the I/O objects above exist (read on the thread, for --metrics)
    // Copied in after_run, for -v.
    io_context::statistics loop;
    std::uint64_t enobufs_rearms = 0;
    std::uint64_t share_pauses = 0;
    std::uint64_t private_receives = 0;
    std::uint64_t idle_expired = 0;
    std::uint64_t send_expired = 0;
};

/// Thread `index`'s setup: its listener (thread 0 binds first, the others bind the port it
/// got, so that port 0 works), its buffer ring, and its accept loop. Throws listen_failure.
void set_up_thread(io_context& context, unsigned index, serving_thread& state,
                   const echo_server_options& options, server_shared& shared,
                   std::shared_future<net::address> bound, std::promise<net::address>* bind_first);

/// Thread `index`'s end: its counters for -v, then what must go before its context.
void tear_down_thread(io_context& context, serving_thread& state) noexcept;

/// -v at exit: each thread's loop and connection counters (with more than one thread), then
/// the totals.
void print_thread_counters(const std::vector<serving_thread>& states);

} // namespace ucoro::apps
