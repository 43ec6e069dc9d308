#include "ucoro/net/listener.hpp"

#include <sys/stat.h>
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

// Whether `path` is a socket file that nobody listens on (a connect is refused): what a
// server that crashed or was killed leaves behind. lstat, not stat: a symlink is the
// operator's, even to a stale socket, and unlink would remove the link. The probe does not
// block: a connect to a live listener whose backlog is full would wait until it accepts
// (forever, for a stuck server); it says EAGAIN at once instead, which is "live".
bool is_stale_socket(const address& local) {
    struct stat status {};
    if (::lstat(local.path().c_str(), &status) != 0 || !S_ISSOCK(status.st_mode)) {
        return false;
    }
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0) {
        return false;
    }
    const bool refused = ::connect(probe, local.data(), local.size()) != 0 && errno == ECONNREFUSED;
    ::close(probe);
    return refused;
}

} // namespace

listener::listener(io_context& context, const address& local, int backlog, bool reuse_port)
    : m_context(&context), m_fd(-1), m_local(local) {
    m_fd = ::socket(local.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m_fd < 0) {
        fail(-1, "socket", local);
    }
    // A restarted server can bind while connections of its previous run sit in TIME_WAIT.
    const int one = 1;
    if (!local.is_unix() && ::setsockopt(m_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
        fail(m_fd, "setsockopt SO_REUSEADDR", local);
    }
    if (reuse_port && !local.is_unix() &&
        ::setsockopt(m_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        fail(m_fd, "setsockopt SO_REUSEPORT", local);
    }
    if (::bind(m_fd, local.data(), local.size()) != 0) {
        int error = errno;
        // A Unix path left by a server that is gone is removed (listener.hpp), once.
        if (error == EADDRINUSE && !local.path().empty() && is_stale_socket(local) &&
            ::unlink(local.path().c_str()) == 0) {
            error = ::bind(m_fd, local.data(), local.size()) == 0 ? 0 : errno;
        }
        if (error != 0) {
            errno = error;
            fail(m_fd, "bind", local);
        }
    }
    if (!local.path().empty()) {
        struct stat status {};
        if (::lstat(local.path().c_str(), &status) == 0) {
            m_path = local.path();
            m_path_device = status.st_dev;
            m_path_inode = status.st_ino;
        }
    }
    if (::listen(m_fd, backlog) != 0) {
        remove_path();
        fail(m_fd, "listen", local);
    }
    socklen_t length = address::capacity();
    if (::getsockname(m_fd, m_local.data(), &length) != 0) {
        remove_path();
        fail(m_fd, "getsockname", local);
    }
    m_local.set_size(length);
}

void listener::remove_path() noexcept {
    if (m_path.empty()) {
        return;
    }
    struct stat status {};
    if (::lstat(m_path.c_str(), &status) == 0 && status.st_dev == m_path_device &&
        status.st_ino == m_path_inode) {
        ::unlink(m_path.c_str());
    }
    m_path.clear();
}

listener::listener(listener&& other) noexcept
    : m_context(other.m_context), m_fd(std::exchange(other.m_fd, -1)), m_local(other.m_local),
      m_path(std::exchange(other.m_path, {})), m_path_device(other.m_path_device),
      m_path_inode(other.m_path_inode) {}

listener::~listener() {
    remove_path();
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
