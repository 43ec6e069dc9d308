#include "ucoro/net/accept_stream.hpp"

#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ucoro/io_context.hpp"

namespace ucoro::net {

class accept_stream::request final : public detail::multishot_operation {
public:
    request(io_context& context, int listen_fd) noexcept
        : multishot_operation(context), m_listen_fd(listen_fd),
          m_multishot(context.features().multishot_accept) {}

    void prepare(io_uring_sqe& sqe) noexcept override {
        // No address buffer: one buffer shared by many CQEs would be overwritten before it
        // is read, so the peer's address is asked for per connection (getpeername).
        if (m_multishot) {
            io_uring_prep_multishot_accept(&sqe, m_listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        } else {
            io_uring_prep_accept(&sqe, m_listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        }
    }

private:
    void discard_completion(detail::completion c) noexcept override {
        if (c.result >= 0) {
            ::close(c.result); // accepted after the stream was dropped: nobody will take it
        }
    }

    int m_listen_fd;
    bool m_multishot;
};

accept_stream::accept_stream(io_context& context, int listen_fd)
    : m_request(new request(context, listen_fd)) {}

accept_stream::accept_stream(accept_stream&&) noexcept = default;
accept_stream& accept_stream::operator=(accept_stream&&) noexcept = default;
accept_stream::~accept_stream() = default;

accept_stream::next_awaiter accept_stream::next() noexcept {
    return next_awaiter(m_request.get());
}

bool accept_stream::next_awaiter::await_ready() const noexcept {
    return m_request == nullptr || m_request->has_completion();
}

void accept_stream::next_awaiter::wait(std::coroutine_handle<> waiter,
                                       detail::cancellation_scope* scope) {
    m_request->wait(waiter, scope, m_slot);
}

io_result<socket> accept_stream::next_awaiter::await_resume() noexcept {
    if (m_request == nullptr) {
        return {std::make_error_code(std::errc::bad_file_descriptor), {}}; // moved from
    }
    if (m_slot.ended) {
        return {make_io_error(m_slot.result), {}}; // the wait ended; nothing was taken
    }
    const detail::completion c = m_request->pop();
    if (c.result < 0) {
        return {make_io_error(c.result), {}};
    }
    address peer;
    socklen_t length = address::capacity();
    if (::getpeername(c.result, peer.data(), &length) != 0) {
        // The peer reset before we looked: the socket is still ours to hand out; its
        // first read will report the reset.
        peer = address();
    } else {
        peer.set_size(length);
    }
    return {{}, socket(m_request->context(), c.result, peer)};
}

} // namespace ucoro::net
