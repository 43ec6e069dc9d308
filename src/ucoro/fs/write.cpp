#include "ucoro/fs/write.hpp"

#include <liburing.h>

#include <algorithm>

#include "ucoro/fs/read.hpp" // max_transfer

namespace ucoro::fs {

void write_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_write(&sqe, m_fd, m_bytes.data(),
                        static_cast<unsigned>(std::min(m_bytes.size(), max_transfer)), m_offset);
}

io_result<std::size_t> write_operation::await_resume() const noexcept {
    if (m_bytes.empty()) {
        return {};
    }
    return result_as<std::size_t>();
}

void write_all_operation::prepare(io_uring_sqe& sqe) noexcept {
    const auto rest = m_bytes.subspan(m_done);
    io_uring_prep_write(&sqe, m_fd, rest.data(),
                        static_cast<unsigned>(std::min(rest.size(), max_transfer)),
                        m_offset + m_done);
}

bool write_all_operation::resubmit_after(int result, std::uint32_t) noexcept {
    if (result < 0) {
        m_error = make_io_error(result);
        return false;
    }
    if (result == 0) {
        m_error = std::make_error_code(std::errc::io_error);
        return false;
    }
    m_done += static_cast<std::size_t>(result);
    return m_done < m_bytes.size() && resubmit(m_error);
}

io_result<std::size_t> write_all_operation::await_resume() const noexcept {
    if (m_bytes.empty()) {
        return {};
    }
    if (!has_context()) {
        return {error(), 0};
    }
    return {m_error, m_done};
}

} // namespace ucoro::fs
