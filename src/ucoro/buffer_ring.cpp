#include "ucoro/buffer_ring.hpp"

#include "ucoro/io_context.hpp"

namespace ucoro {

bool buffer_ring::is_supported(const io_context& context) noexcept {
    return context.features().buffer_rings;
}

buffer_ring::buffer_ring(io_context& context, buffer_ring_options options)
    : m_state(detail::buffer_ring_state::create(context, options)) {}

buffer_ring::~buffer_ring() {
    if (m_state != nullptr) {
        m_state->close();
    }
}

buffer_ring::buffer& buffer_ring::buffer::operator=(buffer&& other) noexcept {
    if (this != &other) {
        reset();
        m_source = std::exchange(other.m_source, nullptr);
        m_data = other.m_data;
        m_size = std::exchange(other.m_size, 0);
        m_id = other.m_id;
    }
    return *this;
}

void buffer_ring::buffer::reset() noexcept {
    if (auto* source = std::exchange(m_source, nullptr)) {
        m_size = 0;
        source->give_back(m_id, m_data); // may free the stream's request: touch nothing after
    }
}

} // namespace ucoro
