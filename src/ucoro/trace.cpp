#include "ucoro/trace.hpp"

#include <liburing.h>

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "ucoro/detail/operation.hpp"

namespace ucoro::trace {

namespace {

// Five hex digits of an address: short enough to read, and the low bits (above the
// allocator's 16-byte alignment) are the ones that differ between live objects.
std::string short_id(const void* address) {
    if (address == nullptr) {
        return "-";
    }
    return fmt::format("{:05x}", (reinterpret_cast<std::uintptr_t>(address) >> 4) & 0xfffff);
}

std::string waiter_id(const detail::operation* op) {
    return op != nullptr ? short_id(op->waiter().address()) : "-";
}

const char* opcode_name(unsigned opcode) noexcept {
    switch (opcode) {
    case IORING_OP_NOP:
        return "NOP";
    case IORING_OP_POLL_ADD:
        return "POLL_ADD";
    case IORING_OP_POLL_REMOVE:
        return "POLL_REMOVE";
    case IORING_OP_SENDMSG:
        return "SENDMSG";
    case IORING_OP_RECVMSG:
        return "RECVMSG";
    case IORING_OP_TIMEOUT:
        return "TIMEOUT";
    case IORING_OP_TIMEOUT_REMOVE:
        return "TIMEOUT_REMOVE";
    case IORING_OP_ACCEPT:
        return "ACCEPT";
    case IORING_OP_ASYNC_CANCEL:
        return "ASYNC_CANCEL";
    case IORING_OP_LINK_TIMEOUT:
        return "LINK_TIMEOUT";
    case IORING_OP_CONNECT:
        return "CONNECT";
    case IORING_OP_CLOSE:
        return "CLOSE";
    case IORING_OP_READ:
        return "READ";
    case IORING_OP_WRITE:
        return "WRITE";
    case IORING_OP_SEND:
        return "SEND";
    case IORING_OP_RECV:
        return "RECV";
    case IORING_OP_PROVIDE_BUFFERS:
        return "PROVIDE_BUFFERS";
    case IORING_OP_REMOVE_BUFFERS:
        return "REMOVE_BUFFERS";
    case IORING_OP_SHUTDOWN:
        return "SHUTDOWN";
    case IORING_OP_SOCKET:
        return "SOCKET";
    case IORING_OP_SEND_ZC:
        return "SEND_ZC";
    default:
        return nullptr;
    }
}

std::string flag_names(std::uint32_t flags) {
    if (flags == 0) {
        return "-";
    }
    std::string names;
    const auto add = [&](std::uint32_t bit, const char* name) {
        if ((flags & bit) != 0) {
            names += names.empty() ? name : fmt::format("|{}", name);
            flags &= ~bit;
        }
    };
    const std::uint32_t buffer_id = flags >> IORING_CQE_BUFFER_SHIFT;
    const bool has_buffer = (flags & IORING_CQE_F_BUFFER) != 0;
    flags &= (1U << IORING_CQE_BUFFER_SHIFT) - 1; // the upper bits are the buffer id
    add(IORING_CQE_F_MORE, "MORE");
    add(IORING_CQE_F_BUFFER, "BUFFER");
    add(IORING_CQE_F_SOCK_NONEMPTY, "SOCK_NONEMPTY");
    add(IORING_CQE_F_NOTIF, "NOTIF");
    if (flags != 0) {
        names += fmt::format("{}{:#x}", names.empty() ? "" : "|", flags);
    }
    if (has_buffer) {
        names += fmt::format(" bid={}", buffer_id);
    }
    return names;
}

// A trace must never take the program down: a failed write is dropped.
template <typename... Args>
void write_line(std::FILE* out, fmt::format_string<Args...> format, Args&&... args) noexcept {
    try {
        fmt::print(out, format, std::forward<Args>(args)...);
    } catch (...) {
    }
}

} // namespace

std::FILE* output_from_environment() noexcept {
    const char* value = std::getenv("UCORO_TRACE");
    return value != nullptr && std::strcmp(value, "1") == 0 ? stderr : nullptr;
}

void write_sqe(std::FILE* out, const io_uring_sqe& sqe, const detail::operation* op) noexcept {
    try {
        const char* name = opcode_name(sqe.opcode);
        const std::string opcode = name != nullptr ? name : fmt::format("OP_{}", sqe.opcode);
        std::string target;
        if (sqe.opcode == IORING_OP_ASYNC_CANCEL &&
            (sqe.cancel_flags & IORING_ASYNC_CANCEL_FD) == 0) {
            target = " target=" + short_id(reinterpret_cast<const void*>(std::uintptr_t{sqe.addr}));
        }
        write_line(out, "ucoro-trace sqe {} fd={} len={} op={} co={}{}\n", opcode, sqe.fd, sqe.len,
                   short_id(op), waiter_id(op), target);
    } catch (...) {
    }
}

void write_cqe(std::FILE* out, const detail::operation* op, int result,
               std::uint32_t flags) noexcept {
    try {
        write_line(out, "ucoro-trace cqe res={} flags={} op={} co={}\n", result, flag_names(flags),
                   short_id(op), waiter_id(op));
    } catch (...) {
    }
}

void write_task(std::FILE* out, const char* event, const void* frame, bool exception) noexcept {
    try {
        write_line(out, "ucoro-trace {} co={}{}\n", event, short_id(frame),
                   exception ? " exception" : "");
    } catch (...) {
    }
}

} // namespace ucoro::trace
