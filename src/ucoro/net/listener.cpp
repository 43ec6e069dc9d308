#include "ucoro/net/listener.hpp"

#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "ucoro/detail/context_access.hpp"
#include "ucoro/io_context.hpp"

namespace ucoro::net {

namespace {

[[noreturn]] void fail(int fd, const char* step, const address& local) {
    const int error = errno;
    if (fd >= 0) {
        ::close(fd);
    }
    throw std::system_error(error, std::system_category(), fmt::format("{} {}", step, local));
}

} // namespace

listener::listener(io_context& context, const address& local, int backlog)
    : m_context(&context), m_fd(-1), m_local(local) {
    m_fd = ::socket(local.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m_fd < 0) {
        fail(-1, "socket", local);
    }
    // A restarted server can bind while connections of its previous run sit in TIME_WAIT.
    const int one = 1;
    if (::setsockopt(m_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
        fail(m_fd, "setsockopt SO_REUSEADDR", local);
    }
    if (::bind(m_fd, local.data(), local.size()) != 0) {
        fail(m_fd, "bind", local);
    }
    if (::listen(m_fd, backlog) != 0) {
        fail(m_fd, "listen", local);
    }
    socklen_t length = address::capacity();
    if (::getsockname(m_fd, m_local.data(), &length) != 0) {
        fail(m_fd, "getsockname", local);
    }
}

listener::listener(listener&& other) noexcept
    : m_context(other.m_context), m_fd(std::exchange(other.m_fd, -1)), m_local(other.m_local) {}

listener::~listener() {
    if (m_fd >= 0) {
        ::close(m_fd);
    }
}

void listener::cancel() {
    if (m_fd >= 0) {
        detail::context_access::cancel_fd(*m_context, m_fd);
    }
}

} // namespace ucoro::net
