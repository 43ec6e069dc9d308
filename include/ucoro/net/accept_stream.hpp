// co_await listener.accept_multishot().next(): multishot accept (IORING_ACCEPT_MULTISHOT).
#pragma once

#include <coroutine>
#include <type_traits>

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
/// Cancellation is partial (detail/multishot.hpp): a cancel that reaches a coroutine
/// waiting in next() (when_any, task_handle::cancel, stop()) resumes it with
/// operation_canceled and leaves the request armed; a connection accepted meanwhile stays
/// queued for the next call, never closed. Destroying the stream is what ends the request:
/// the context cancels it and closes any connection accepted after that. One coroutine at
/// a time may wait in next(); a second throws std::logic_error. A moved-from stream is
/// empty: next() then completes at once with bad_file_descriptor.
class accept_stream {
public:
    accept_stream(accept_stream&&) noexcept;
    accept_stream& operator=(accept_stream&&) noexcept;
    ~accept_stream();

    class next_awaiter;
    /// The next accepted connection (close-on-exec, peer address filled in), or an error.
    [[nodiscard]] next_awaiter next() noexcept;

private:
    friend class listener; // listener::accept_multishot() makes it, on its own descriptor
    accept_stream(io_context& context, int listen_fd);

    class request;
    detail::multishot_ptr<request> m_request;
};

class [[nodiscard]] accept_stream::next_awaiter {
public:
    bool await_ready() const noexcept;
    /// Awaited in a task (with its promise type, not erased), the task's cancellation scope
    /// can end the wait with operation_canceled.
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> waiter) {
        if constexpr (std::is_base_of_v<detail::task_promise_base, Promise>) {
            wait(waiter, waiter.promise().m_scope);
        } else {
            wait(waiter, nullptr);
        }
    }
    io_result<socket> await_resume() noexcept;

private:
    friend class accept_stream;
    explicit next_awaiter(request* from) noexcept : m_request(from) {}
    void wait(std::coroutine_handle<> waiter, detail::cancellation_scope* scope);

    request* m_request; // null for a moved-from stream
    detail::wait_slot m_slot;
};

} // namespace ucoro::net
