#include "server_metrics.hpp"

#include <iterator>
#include <memory>
#include <span>
#include <system_error>
#include <utility>

#include <fmt/core.h>

#include "ucoro/async_event.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/timeout.hpp"

namespace ucoro::apps {

namespace {

void append_family(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void append_metric(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, std::uint64_t value) {
    append_family(out, name, type, help);
    fmt::format_to(std::back_inserter(out), "{} {}\n", name, value);
}

} // namespace

std::string render_metrics(const metrics_sample& s) {
    std::string out;
    out.reserve(4096);
    append_metric(out, "ucoro_connections_live", "gauge",
                  "Echo connections accepted and not yet closed.", s.connections_live);
    append_metric(out, "ucoro_connections_accepted_total", "counter", "Echo connections accepted.",
                  s.connections_accepted);
    append_metric(out, "ucoro_received_bytes_total", "counter", "Bytes received from echo clients.",
                  s.bytes_in);
    append_metric(out, "ucoro_sent_bytes_total", "counter", "Bytes echoed back to clients.",
                  s.bytes_out);
    append_metric(out, "ucoro_received_messages_total", "counter",
                  "Receives that delivered bytes (one per buffer or recv).", s.messages_in);
    append_metric(out, "ucoro_sent_messages_total", "counter",
                  "Echo sends completed (one per send, plain or gathered).", s.messages_out);
    append_family(out, "ucoro_connection_timeouts_total", "counter",
                  "Connections closed by a deadline, by kind (--idle-timeout, --send-timeout).");
    fmt::format_to(std::back_inserter(out),
                   "ucoro_connection_timeouts_total{{kind=\"idle\"}} {}\n"
                   "ucoro_connection_timeouts_total{{kind=\"send\"}} {}\n",
                   s.idle_timeouts, s.send_timeouts);
    append_metric(out, "ucoro_accept_pauses_total", "counter",
                  "Episodes of accept pausing because descriptors or memory ran out.",
                  s.accept_pauses);
    append_metric(out, "ucoro_buffer_ring_enobufs_rearms_total", "counter",
                  "Multishot receives re-armed after the buffer ring ran empty (ENOBUFS).",
                  s.enobufs_rearms);
    append_metric(out, "ucoro_buffer_ring_share_pauses_total", "counter",
                  "Receives paused because a connection held its share of the ring.",
                  s.share_pauses);
    append_metric(out, "ucoro_buffer_ring_private_receives_total", "counter",
                  "Receives into a connection's private buffer instead of the ring.",
                  s.private_receives);
    append_metric(out, "ucoro_io_uring_enters_total", "counter",
                  "io_uring_enter calls the loop made.", s.uring_enters);
    append_metric(out, "ucoro_io_uring_sqes_total", "counter",
                  "Submission queue entries handed to the kernel.", s.uring_sqes);
    append_metric(out, "ucoro_io_uring_cqes_total", "counter", "Completion queue entries seen.",
                  s.uring_cqes);
#ifdef UCORO_VERSION
    append_family(out, "ucoro_build_info", "gauge", "The version this server was built from.");
#ifdef UCORO_GIT_COMMIT
    fmt::format_to(std::back_inserter(out), "ucoro_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
                   UCORO_VERSION, UCORO_GIT_COMMIT);
#else
    fmt::format_to(std::back_inserter(out), "ucoro_build_info{{version=\"{}\"}} 1\n",
                   UCORO_VERSION);
#endif
#endif
    return out;
}

http_verdict judge_request(std::string_view head) {
    const std::size_t eol = head.find_first_of("\r\n");
    std::string_view line = head.substr(0, eol);
    const std::size_t first_space = line.find(' ');
    const std::size_t last_space = line.rfind(' ');
    if (first_space == std::string_view::npos || first_space == last_space) {
        return http_verdict::bad_request;
    }
    const std::string_view method = line.substr(0, first_space);
    const std::string_view target = line.substr(first_space + 1, last_space - first_space - 1);
    const std::string_view version = line.substr(last_space + 1);
    const bool method_ok =
        !method.empty() &&
        method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") == std::string_view::npos;
    if (!method_ok || target.empty() || target[0] != '/' ||
        target.find(' ') != std::string_view::npos ||
        (version != "HTTP/1.1" && version != "HTTP/1.0")) {
        return http_verdict::bad_request;
    }
    if (method != "GET") {
        return http_verdict::bad_method;
    }
    const std::string_view path = target.substr(0, target.find('?'));
    return path == "/metrics" ? http_verdict::metrics : http_verdict::not_found;
}

std::string http_response(http_verdict verdict, std::string_view metrics_text) {
    std::string_view status = "200 OK";
    std::string_view type = "text/plain; version=0.0.4; charset=utf-8";
    std::string_view extra;
    std::string_view body = metrics_text;
    switch (verdict) {
    case http_verdict::metrics:
        break;
    case http_verdict::not_found:
        status = "404 Not Found";
        body = "not found: the counters are at /metrics\n";
        break;
    case http_verdict::bad_method:
        status = "405 Method Not Allowed";
        extra = "Allow: GET\r\n";
        body = "only GET is served\n";
        break;
    case http_verdict::bad_request:
        status = "400 Bad Request";
        body = "bad request\n";
        break;
    }
    if (verdict != http_verdict::metrics) {
        type = "text/plain; charset=utf-8";
    }
    return fmt::format("HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}"
                       "Connection: close\r\n\r\n{}",
                       status, type, body.size(), extra, body);
}

namespace {

metrics_sample take_sample(const io_context& context, const metrics_sources& sources) {
    metrics_sample s;
    if (sources.stats != nullptr) {
        s.connections_accepted = sources.stats->accepted;
        s.bytes_in = sources.stats->bytes_in;
        s.bytes_out = sources.stats->bytes_out;
        s.messages_in = sources.stats->messages_in;
        s.messages_out = sources.stats->messages_out;
        s.accept_pauses = sources.stats->accept_pauses;
    }
    if (sources.controls != nullptr) {
        s.connections_live = sources.controls->live;
    }
    if (sources.deadlines != nullptr) {
        s.idle_timeouts = sources.deadlines->idle_expired();
        s.send_timeouts = sources.deadlines->send_expired();
    }
    if (sources.ring != nullptr) {
        s.enobufs_rearms = sources.ring->enobufs_rearms();
        s.share_pauses = sources.ring->share_pauses();
        s.private_receives = sources.ring->private_receives();
    }
    const auto& loop = context.stats();
    s.uring_enters = loop.submit_calls;
    s.uring_sqes = loop.submissions;
    s.uring_cqes = loop.completions;
    return s;
}

void add_to(metrics_sample& total, const metrics_sample& s) {
    total.connections_live += s.connections_live;
    total.connections_accepted += s.connections_accepted;
    total.bytes_in += s.bytes_in;
    total.bytes_out += s.bytes_out;
    total.messages_in += s.messages_in;
    total.messages_out += s.messages_out;
    total.idle_timeouts += s.idle_timeouts;
    total.send_timeouts += s.send_timeouts;
    total.accept_pauses += s.accept_pauses;
    total.enobufs_rearms += s.enobufs_rearms;
    total.share_pauses += s.share_pauses;
    total.private_receives += s.private_receives;
    total.uring_enters += s.uring_enters;
    total.uring_sqes += s.uring_sqes;
    total.uring_cqes += s.uring_cqes;
}

// A scrape's replies, on the scraper's thread. Shared with the callables in flight, so that
// a reply arriving after the scraper gave up touches this and not a dead frame.
struct gathering {
    metrics_sample total;
    std::size_t pending = 0;
    async_event* done = nullptr; // null once the scraper stopped waiting
};

// Asks every thread for its sample (a post there, a post back) and sums what comes back. A
// thread that is gone, or that cannot be reached, counts as nothing.
task<metrics_sample> gather_sample(io_context& context,
                                   const std::vector<metrics_thread>& threads) {
    auto state = std::make_shared<gathering>();
    async_event done(context);
    const remote_context here = context.remote();
    for (const metrics_thread& thread : threads) {
        const metrics_thread* source = &thread;
        try {
            const bool posted = thread.remote.post([source, here, state] {
                metrics_sample sample;
                if (*source->alive) {
                    sample = take_sample(*source->context, source->sources);
                }
                (void)here.post([state, sample] {
                    add_to(state->total, sample);
                    if (--state->pending == 0 && state->done != nullptr) {
                        state->done->set();
                    }
                });
            });
            state->pending += posted ? 1 : 0;
        } catch (const std::exception&) {
            // Unreachable thread (no memory, no wake-up): its part is missing this time.
        }
    }
    if (state->pending > 0) {
        // Cleared on every way out, a frame destroyed while waiting included.
        struct waiting {
            gathering& state;
            ~waiting() { state.done = nullptr; }
        } guard{*state};
        state->done = &done;
        (void)co_await done.wait(); // cancelled only by a stop: answer with what came
    }
    co_return state->total;
}

// Finds the end of a request head; the blank line may be bare "\n\n" from a hand-typed request.
bool head_complete(std::string_view received) {
    return received.find("\r\n\r\n") != std::string_view::npos ||
           received.find("\n\n") != std::string_view::npos;
}

// One scraper: read the head within the size and time bounds, answer, close. Nothing it does
// (a byte a second, never reading) holds more than this frame, for at most the two timeouts.
task<void> answer_scraper(io_context& context, net::socket connection, metrics_sources sources,
                          metrics_limits limits) {
    std::string head(limits.request_limit, '\0');
    std::size_t filled = 0;
    bool complete = false;
    const auto deadline = io_context::clock::now() + limits.request_timeout;
    while (filled < head.size()) {
        const auto left = deadline - io_context::clock::now();
        if (left <= io_context::clock::duration::zero()) {
            break;
        }
        auto [error, received] = co_await with_timeout(
            connection.recv(std::as_writable_bytes(std::span(head)).subspan(filled)), left);
        if (error || received == 0) {
            break; // timed out, reset, closed, or the server stops: nothing to answer
        }
        filled += received;
        if (head_complete(std::string_view(head).substr(0, filled))) {
            complete = true;
            break;
        }
    }
    if (complete || filled == head.size()) {
        const http_verdict verdict = complete
                                         ? judge_request(std::string_view(head).substr(0, filled))
                                         : http_verdict::bad_request; // over the size bound
        std::string body;
        if (verdict == http_verdict::metrics) {
            body = render_metrics(sources.threads != nullptr
                                      ? co_await gather_sample(context, *sources.threads)
                                      : take_sample(context, sources));
        }
        const std::string response = http_response(verdict, body);
        // A few KiB into a fresh socket's send buffer: the send completes at once even for a
        // peer that never reads; the timeout bounds a peer that shrank its window.
        auto [send_error, sent] = co_await with_timeout(
            connection.send_all(std::as_bytes(std::span(response))), limits.response_timeout);
        if (!send_error && !complete) {
            // The rest of an oversized head is still unread, and closing over unread bytes
            // sends a reset that can destroy the 400 before the peer reads it: half-close,
            // then read and drop what follows for a moment (nginx's lingering close).
            (void)co_await connection.shutdown();
            const auto linger_end = io_context::clock::now() + std::chrono::seconds(1);
            for (int round = 0; round < 8; ++round) {
                const auto left = linger_end - io_context::clock::now();
                if (left <= io_context::clock::duration::zero()) {
                    break;
                }
                auto [error, dropped] = co_await with_timeout(
                    connection.recv(std::as_writable_bytes(std::span(head))), left);
                if (error || dropped == 0) {
                    break;
                }
            }
        }
    }
    (void)co_await connection.close();
}

// The same frame-local count as echo_connection's: decremented on every way out.
task<void> counted_scraper(io_context& context, net::socket connection, metrics_sources sources,
                           metrics_limits limits, std::size_t& active) {
    try {
        co_await answer_scraper(context, std::move(connection), sources, limits);
    } catch (...) {
        --active;
        throw;
    }
    --active;
}

} // namespace

task<void> serve_metrics(io_context& context, net::listener& listener, metrics_sources sources,
                         metrics_limits limits, std::size_t& active) {
    while (!context.stop_requested()) {
        auto [error, connection] = co_await listener.accept();
        if (error) {
            if (error == std::errc::operation_canceled) {
                break;
            }
            // Out of descriptors, an aborted handshake: the echo's accept loop reports those;
            // here, wait a little rather than spin, and go on.
            (void)co_await sleep_for(context, std::chrono::milliseconds(100));
            continue;
        }
        if (active >= limits.max_scrapers) {
            (void)co_await connection.close(); // over the limit: closed at once
            continue;
        }
        ++active;
        try {
            context.spawn(counted_scraper(context, std::move(connection), sources, limits, active));
        } catch (...) {
            --active;
            throw;
        }
    }
}

} // namespace ucoro::apps
