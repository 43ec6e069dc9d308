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
    void drop(detail::completion c) noexcept override {
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
    return {m_request->context(), *m_request};
}

io_result<socket> accept_stream::next_awaiter::await_resume() noexcept {
    const detail::completion c = m_next.await_resume();
    if (c.result < 0) {
        return {make_io_error(c.result), {}};
    }
    address peer;
    socklen_t length = address::capacity();
    if (::getpeername(c.result, peer.data(), &length) != 0) {
        // The peer reset before we looked: the socket is still ours to hand out; its
        // first read will report the reset.
        peer = address();
    }
    return {{}, socket(*m_context, c.result, peer)};
}

} // namespace ucoro::net
