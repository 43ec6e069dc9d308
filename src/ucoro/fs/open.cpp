#include "ucoro/fs/open.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

namespace ucoro::fs {

void open_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_openat(&sqe, AT_FDCWD, m_path.c_str(), m_flags | O_CLOEXEC, m_mode);
}

void open_operation::discard(int result, std::uint32_t) noexcept {
    if (result >= 0) {
        ::close(result); // opened, but the context is going away and nobody will take it
    }
}

io_result<file> open_operation::await_resume() noexcept {
    if (result() < 0) {
        return {error(), file()};
    }
    return {{}, file(context(), result())};
}

} // namespace ucoro::fs
