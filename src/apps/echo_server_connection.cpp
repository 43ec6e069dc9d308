#include "echo_server_connection.hpp"

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <system_error>
#include <utility>

#include <sys/socket.h>

#include <fmt/core.h>

#include "gather_send.hpp"

namespace ucoro::apps {

namespace {

// The deadlines' bookkeeping around each echo (connection_deadlines.hpp): one store each.
void note_sending(connection_deadlines::entry* deadline) noexcept {
    if (deadline != nullptr) {
        deadline->sending();
    }
}
void note_sent(connection_deadlines::entry* deadline) noexcept {
    if (deadline != nullptr) {
        deadline->sent();
    }
}

// The teaching path: recv into a buffer in this coroutine's frame, send_all it back.
task<std::error_code> echo_simple(net::socket& connection, echo_server_stats& stats,
                                  connection_deadlines::entry* deadline) {
    // The lesson reads 1 KiB at a time; a larger buffer means fewer round trips through
    // the ring for large messages. It lives in this coroutine's frame.
    std::array<std::byte, 16 * 1024> buffer;
    while (true) {
        auto [recv_error, received] = co_await connection.recv(buffer);
        if (recv_error || received == 0) {
            co_return recv_error; // received == 0: the peer closed its side
        }
        ++stats.messages_in;
        stats.bytes_in += received;
        // send() may take less than asked; send_all() resubmits until every byte is out.
        note_sending(deadline);
        auto [send_error, sent] = co_await connection.send_all(std::span(buffer).first(received));
        note_sent(deadline);
        ++stats.messages_out;
        stats.bytes_out += sent;
        if (send_error) {
            co_return send_error;
        }
    }
}

// The fast path: one multishot receive into the shared ring; an idle connection holds no
// buffer. Each buffer goes back to the ring once its echo has been sent. Buffers that
// arrived while an echo was being sent wait in the stream; they go back together, in one
// gather send (one request, one completion) instead of one send each.
task<std::error_code> echo_ring(net::socket& connection, buffer_ring& ring, bool gather,
                                echo_server_stats& stats, connection_deadlines::entry* deadline) {
    auto stream = connection.recv_multishot(ring);
    while (true) {
        auto [recv_error, buffer] = co_await stream.next();
        if (recv_error || buffer.empty()) {
            co_return recv_error; // an empty buffer: the peer closed its side
        }
        const gather_lease lease(gather && stream.ready() > 0 ? this_thread_gather_pool().acquire()
                                                              : nullptr);
        if (lease.get() == nullptr) {
            ++stats.messages_in;
            stats.bytes_in += buffer.size();
            note_sending(deadline);
            auto [send_error, sent] = co_await connection.send_all(buffer.bytes());
            note_sent(deadline);
            ++stats.messages_out;
            stats.bytes_out += sent;
            if (send_error) {
                co_return send_error;
            }
            continue; // `buffer` goes back to the ring as it goes out of scope
        }
        fill_batch(*lease.get(), std::move(buffer), stream);
        stats.messages_in += lease.get()->count;
        for (std::size_t i = 0; i < lease.get()->count; ++i) {
            stats.bytes_in += lease.get()->held[i].size();
        }
        // The awaiter lives in the slot: the frame keeps only a pointer to it.
        note_sending(deadline);
        auto [send_error, sent] = co_await prepare_gather(*lease.get(), connection);
        note_sent(deadline);
        ++stats.messages_out;
        stats.bytes_out += sent;
        if (send_error) {
            co_return send_error;
        }
        if (lease.get()->ended) {
            co_return lease.get()->end_error;
        }
    }
}

} // namespace

task<void> echo_connection(net::socket connection, bool quiet, echo_server_stats& stats,
                           buffer_ring* ring, server_controls* controls) {
    // A connection is counted from its accept until connection_closed(), which must run
    // however the coroutine ends, or the count leaks (an exception from a print to a broken
    // stdout, or out of memory): a --max-connections server would stop accepting for good,
    // and a drain would never reach 0. A catch, not a destructor: a frame that ~io_context
    // destroys unfinished must not call into controls, which may be gone by then. Not a
    // wrapper coroutine either: that would be one more frame per idle connection.
    try {
        const net::address peer = connection.peer_address();
        if (!quiet) {
            fmt::print("accepted connection from {}\n", peer);
        }
        std::error_code failure;
        {
            std::optional<connection_deadlines::entry> deadline;
            if (controls != nullptr) {
                deadline.emplace(*controls->deadlines, connection.native_handle());
                if (controls->draining) {
                    // Accepted before the drain began, started after it shut the others down.
                    (void)::shutdown(connection.native_handle(), SHUT_RD);
                }
            }
            connection_deadlines::entry* const timed = deadline ? &*deadline : nullptr;
            // Not a ?: of two co_awaits: GCC 12 miscompiles that in an assignment.
            if (ring != nullptr) {
                failure = co_await echo_ring(
                    connection, *ring, controls == nullptr || controls->gather_send, stats, timed);
            } else {
                failure = co_await echo_simple(connection, stats, timed);
            }
            if (timed != nullptr) {
                timed->closing();
            }
            (void)co_await connection.close();
        }
        ++stats.closed;
        if (!quiet) {
            if (failure && failure != std::errc::operation_canceled) {
                fmt::print("closing connection to {} ({})\n", peer, failure.message());
            } else {
                fmt::print("closing connection to {}\n", peer);
            }
        }
    } catch (...) {
        if (controls != nullptr) {
            controls->connection_closed();
        }
        throw; // to the context's unhandled-exception handler, as before
    }
    if (controls != nullptr) {
        controls->connection_closed(); // after the line: the next "accepted" comes after it
    }
}

} // namespace ucoro::apps
