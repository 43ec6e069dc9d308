// co_await listener.accept_stream().next(): multishot accept (IORING_ACCEPT_MULTISHOT).
#pragma once

#include <coroutine>

#include "ucoro/detail/multishot.hpp"
#include "ucoro/io_result.hpp"
#include "ucoro/net/socket.hpp"

namespace ucoro::net {

/// Accepts connection after connection with one request: the kernel posts a CQE per
/// connection, and next() hands them out in order. Connections that arrive while the
/// coroutine is busy wait in the stream.
///
///     auto connections = listener.accept_multishot();
///     while (true) {
///         auto [error, connection] = co_await connections.next();
///         ...
///     }
///
/// An error (EMFILE, a cancel) ends the kernel's request; the next call to next() submits
/// a new one, so a server that backs off and calls next() again simply resumes accepting.
/// On a kernel without multishot accept (before 5.19), or with
/// io_context_options::multishot_accept off, each next() submits one plain accept: the
/// same behaviour, one request per connection.
///
/// The stream keeps the listener's descriptor number: after closing the listener, stop
/// calling next() (an error you stop on, as the echo server does with operation_canceled),
/// or a re-arm would aim at whatever descriptor reuses the number.
///
/// Destroying the stream with its request armed is safe: the context cancels the request
/// and closes any connection accepted after that (detail/multishot.hpp says how).
class accept_stream {
public:
    accept_stream(io_context& context, int listen_fd);
    accept_stream(accept_stream&&) noexcept;
    accept_stream& operator=(accept_stream&&) noexcept;
    ~accept_stream();

    class next_awaiter;
    /// The next accepted connection (close-on-exec, peer address filled in), or an error.
    [[nodiscard]] next_awaiter next() noexcept;

private:
    class request;
    detail::multishot_ptr<request> m_request;
};

class [[nodiscard]] accept_stream::next_awaiter {
public:
    bool await_ready() const noexcept { return m_next.await_ready(); }
    /// Awaited in a task (with its promise type, not erased), the task's cancellation scope
    /// can end the wait with operation_canceled.
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> waiter) {
        m_next.await_suspend(waiter);
    }
    io_result<socket> await_resume() noexcept;

private:
    friend class accept_stream;
    next_awaiter(io_context& context, detail::multishot_operation& op) noexcept
        : m_context(&context), m_next{op} {}

    io_context* m_context;
    detail::next_completion m_next;
};

} // namespace ucoro::net
