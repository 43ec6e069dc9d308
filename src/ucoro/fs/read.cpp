#include "ucoro/fs/read.hpp"

#include <liburing.h>

#include <algorithm>

namespace ucoro::fs {

void read_operation::prepare(io_uring_sqe& sqe) noexcept {
    io_uring_prep_read(&sqe, m_fd, m_buffer.data(),
                       static_cast<unsigned>(std::min(m_buffer.size(), max_transfer)), m_offset);
}

io_result<std::size_t> read_operation::await_resume() const noexcept {
    if (m_buffer.empty()) {
        return {};
    }
    return result_as<std::size_t>();
}

void read_exactly_operation::prepare(io_uring_sqe& sqe) noexcept {
    const auto rest = m_buffer.subspan(m_done);
    io_uring_prep_read(&sqe, m_fd, rest.data(),
                       static_cast<unsigned>(std::min(rest.size(), max_transfer)),
                       m_offset + m_done);
}

bool read_exactly_operation::resubmit_after(int result, std::uint32_t) noexcept {
    if (result < 0) {
        m_error = make_io_error(result);
        return false;
    }
    if (result == 0) {
        m_error = std::make_error_code(std::errc::no_message_available); // end of file
        return false;
    }
    m_done += static_cast<std::size_t>(result);
    return m_done < m_buffer.size() && resubmit(m_error);
}

io_result<std::size_t> read_exactly_operation::await_resume() const noexcept {
    if (m_buffer.empty()) {
        return {};
    }
    if (!has_context()) {
        return {error(), 0};
    }
    return {m_error, m_done};
}

} // namespace ucoro::fs
