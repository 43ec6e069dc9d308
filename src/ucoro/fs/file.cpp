#include "ucoro/fs/file.hpp"

#include <unistd.h>

namespace ucoro::fs {

file& file::operator=(file&& other) noexcept {
    if (this != &other) {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
        m_context = other.m_context;
        m_fd = std::exchange(other.m_fd, -1);
    }
    return *this;
}

file::~file() {
    if (m_fd >= 0) {
        ::close(m_fd);
    }
}

} // namespace ucoro::fs
