#include "connection_deadlines.hpp"

#include <algorithm>

#include <sys/socket.h>

#include "ucoro/sleep.hpp"

namespace ucoro::apps {

namespace {

// Ticks per timeout: the sweeper runs four times per (shortest) timeout, so a deadline is
// late by at most a quarter of it.
constexpr int ticks_per_timeout = 4;

std::uint64_t ticks_for(std::chrono::milliseconds timeout, std::chrono::milliseconds period) {
    if (timeout.count() <= 0) {
        return 0;
    }
    return std::max<std::uint64_t>(1, static_cast<std::uint64_t>(timeout / period));
}

} // namespace

connection_deadlines::connection_deadlines(io_context& context,
                                           std::chrono::milliseconds idle_timeout,
                                           std::chrono::milliseconds send_timeout) noexcept
    : m_context(&context) {
    std::chrono::milliseconds shortest{0};
    for (const auto timeout : {idle_timeout, send_timeout}) {
        if (timeout.count() > 0 && (shortest.count() == 0 || timeout < shortest)) {
            shortest = timeout;
        }
    }
    if (shortest.count() == 0) {
        return;
    }
    // At least 1 ms: a tick is a timer expiry and a walk over every connection.
    m_period = std::max(std::chrono::milliseconds(1), shortest / ticks_per_timeout);
    m_idle_ticks = ticks_for(idle_timeout, m_period);
    m_send_ticks = ticks_for(send_timeout, m_period);
}

connection_deadlines::entry::entry(connection_deadlines& owner, int fd) noexcept
    : m_owner(&owner), m_fd(fd), m_since(owner.m_tick), m_next(owner.m_head) {
    if (m_next != nullptr) {
        m_next->m_prev = this;
    }
    owner.m_head = this;
    ++owner.m_size;
}

connection_deadlines::~connection_deadlines() {
    // Entries still listed live in coroutine frames that outlive the list (the context
    // destroys unfinished frames after the caller's locals when run() throws): cut them
    // loose, so that their destructors do not write into this object once it is gone.
    for (entry* e = m_head; e != nullptr;) {
        entry* const next = e->m_next;
        e->m_owner = nullptr;
        e->m_prev = e->m_next = nullptr;
        e = next;
    }
    m_head = nullptr;
    m_size = 0;
}

connection_deadlines::entry::~entry() {
    if (m_owner == nullptr) {
        return; // the list went first (see ~connection_deadlines)
    }
    if (m_prev != nullptr) {
        m_prev->m_next = m_next;
    } else {
        m_owner->m_head = m_next;
    }
    if (m_next != nullptr) {
        m_next->m_prev = m_prev;
    }
    --m_owner->m_size;
}

namespace {

// The peer does not read (or we are stopping): what we queued for it sits in our send
// buffer, and after a plain close the kernel would keep it (an orphaned socket
// retransmitting into a closed window) for minutes. Lingering 0 seconds makes the close
// reset the connection and free the buffer at once.
void discard_unsent_on_close(int fd) noexcept {
    const linger abort_on_close{1, 0};
    (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close));
}

} // namespace

void connection_deadlines::expire(entry& connection, bool stalled_reader) noexcept {
    connection.m_expired = true;
    if (stalled_reader) {
        discard_unsent_on_close(connection.m_fd);
        ++m_send_expired;
    } else {
        ++m_idle_expired;
    }
    // Not close: a recv or send may be in flight on the descriptor. shutdown completes
    // them (end of stream, EPIPE), and stays in force for any request submitted later.
    (void)::shutdown(connection.m_fd, SHUT_RDWR);
}

task<void> connection_deadlines::sweep() {
    if (m_period.count() == 0) {
        co_return;
    }
    auto next = io_context::now();
    while (!m_context->stop_requested()) {
        next += m_period;
        const std::error_code error = co_await sleep_until(*m_context, next);
        if (error) {
            co_return; // cancelled: the context is stopping
        }
        ++m_tick;
        for (entry* connection = m_head; connection != nullptr; connection = connection->m_next) {
            if (connection->m_expired) {
                continue;
            }
            const std::uint64_t elapsed = m_tick - connection->m_since;
            if (connection->m_sending) {
                if (m_send_ticks != 0 && elapsed > m_send_ticks) {
                    expire(*connection, true);
                }
            } else if (m_idle_ticks != 0 && elapsed > m_idle_ticks) {
                expire(*connection, false);
            }
        }
    }
}

void connection_deadlines::shut_down_receives() noexcept {
    for (entry* connection = m_head; connection != nullptr; connection = connection->m_next) {
        if (!connection->m_expired) {
            (void)::shutdown(connection->m_fd, SHUT_RD);
        }
    }
}

void connection_deadlines::shut_down_all() noexcept {
    for (entry* connection = m_head; connection != nullptr; connection = connection->m_next) {
        if (!connection->m_expired) {
            connection->m_expired = true;
            discard_unsent_on_close(connection->m_fd);
            (void)::shutdown(connection->m_fd, SHUT_RDWR);
        }
    }
}

} // namespace ucoro::apps
