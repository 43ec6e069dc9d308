// --metrics HOST:PORT: the echo server's counters over HTTP/1.1, in Prometheus' text
// exposition format (version 0.0.4), served by a coroutine on the server's own loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/remote_context.hpp"
#include "ucoro/task.hpp"

#include "connection_deadlines.hpp"
#include "echo_server.hpp"

namespace ucoro::apps {

/// The counters of one scrape, copied at the moment it is answered.
struct metrics_sample {
    std::uint64_t connections_live = 0;
    std::uint64_t connections_accepted = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t messages_in = 0;
    std::uint64_t messages_out = 0;
    std::uint64_t idle_timeouts = 0;
    std::uint64_t send_timeouts = 0;
    std::uint64_t accept_pauses = 0;
    std::uint64_t enobufs_rearms = 0;
    std::uint64_t share_pauses = 0;
    std::uint64_t private_receives = 0;
    std::uint64_t uring_enters = 0;
    std::uint64_t uring_sqes = 0;
    std::uint64_t uring_cqes = 0;
};

/// The sample in the text exposition format: # HELP, # TYPE, then the samples. No thread
/// label: with --threads, every counter is the sum over the threads.
std::string render_metrics(const metrics_sample& sample);

/// What a request asks for, judged from its head (everything up to the blank line).
enum class http_verdict { metrics, not_found, bad_method, bad_request };
http_verdict judge_request(std::string_view head);

/// The whole HTTP response for a verdict (the body is `metrics_text` for `metrics`).
std::string http_response(http_verdict verdict, std::string_view metrics_text);

struct metrics_thread;

/// Where the counters live, for serve_metrics to read at each scrape: on the scraper's own
/// loop, or, with `threads`, on each of those threads (each scrape asks every thread for a
/// sample and sums them; the fields above it are then unused).
struct metrics_sources {
    const echo_server_stats* stats = nullptr;
    const server_controls* controls = nullptr;
    const connection_deadlines* deadlines = nullptr;
    const buffer_ring* ring = nullptr; // null on the --simple path
    const std::vector<metrics_thread>* threads = nullptr;
};

/// A serving thread, as the scraper's loop reaches it: a sample is taken there, by a
/// callable posted to `remote`, and posted back. `alive` (read there) is false once that
/// thread has destroyed its sources: it then answers with nothing.
struct metrics_thread {
    remote_context remote;
    const io_context* context = nullptr;
    const bool* alive = nullptr;
    metrics_sources sources;
};

/// The limits that keep a scraper from holding the server: each request head is read
/// within `request_limit` bytes and `request_timeout`, each response written within
/// `response_timeout`; beyond `max_scrapers` concurrent connections, more are closed at once.
struct metrics_limits {
    std::size_t request_limit = 8 * 1024;
    std::chrono::milliseconds request_timeout{5000};
    std::chrono::milliseconds response_timeout{5000};
    std::size_t max_scrapers = 16;
};

/// Accepts scrapers on `listener` and answers each in a coroutine of its own, until the
/// context stops. `active` counts the scrapers being answered; it is the caller's, declared
/// before the context, since scrapers may outlive this loop's frame while the context stops.
task<void> serve_metrics(io_context& context, net::listener& listener, metrics_sources sources,
                         metrics_limits limits, std::size_t& active);

} // namespace ucoro::apps
