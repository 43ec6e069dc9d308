// For the tests of sends that take several rounds (send_all, send_all_gather after a short
// send): a TCP connection whose buffers are small enough that megabytes go in many short
// sends, a fault seam that counts the rounds and can cancel or stop at a chosen one, and
// the payload cut into uneven gather pieces.
#pragma once

#include <liburing.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "support/loopback.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

namespace ucoro_test {

/// Two ends of one loopback TCP connection: the sender with a 4 KiB send buffer, the
/// receiver with a 4 KiB receive buffer (set before the handshake, so the window is small
/// too). A multi-megabyte send to it is many short sends.
struct small_buffer_connection {
    ucoro::net::socket sender;
    ucoro::net::socket receiver;
};

inline small_buffer_connection make_small_buffer_connection(ucoro::io_context& context) {
    ucoro::net::listener server(context, ucoro::net::address::ipv4_loopback(0));
    auto receiver = connect_with_receive_buffer(context, server.local_address(), 4096);
    auto accepted = context.block_on(
        [](ucoro::net::listener& l) -> ucoro::task<ucoro::io_result<ucoro::net::socket>> {
            co_return co_await l.accept();
        }(server));
    REQUIRE_FALSE(accepted.error);
    set_int_option(accepted.value.native_handle(), SOL_SOCKET, SO_SNDBUF, 4096);
    return {std::move(accepted.value), std::move(receiver)};
}

/// The payload as uneven gather pieces with empty ones among them (the iovecs point into
/// `payload`, which must outlive them).
inline std::vector<iovec> uneven_pieces(std::span<const std::byte> payload) {
    std::vector<iovec> pieces;
    pieces.push_back({nullptr, 0});
    std::size_t offset = 0;
    for (std::size_t size = 1; offset < payload.size(); size = size * 3 + 7) {
        const std::size_t n = std::min(size % 300000 + 1, payload.size() - offset);
        pieces.push_back({const_cast<std::byte*>(payload.data() + offset), n});
        offset += n;
        if (pieces.size() % 5 == 0) {
            pieces.push_back({nullptr, 0});
        }
    }
    return pieces;
}

/// Counts the send rounds on one descriptor (each SEND or SENDMSG SQE is one round), and
/// runs `at_round_end` once, when the CQE of round `act_after` has been taken from the ring
/// but not yet dispatched: the moment between that round and the next, where a cancel or a
/// stop() that arrives must stop the send rather than let it go on.
class send_rounds final : public ucoro::detail::fault_injector {
public:
    explicit send_rounds(int fd) : m_fd(fd) {}

    void on_submit(io_uring_sqe& sqe) noexcept override {
        if (sqe.fd == m_fd && (sqe.opcode == IORING_OP_SEND || sqe.opcode == IORING_OP_SENDMSG)) {
            ++rounds;
            m_sends[sqe.user_data] = true;
        }
    }

    verdict on_completion(std::uint64_t user_data, int& result, std::uint32_t&) noexcept override {
        if (user_data != 0 && m_sends.erase(user_data) > 0) {
            ++completed;
            if (result > 0 && completed == act_after && at_round_end) {
                at_round_end();
            }
        }
        return verdict::deliver;
    }

    std::size_t rounds = 0;    // SQEs submitted
    std::size_t completed = 0; // their CQEs seen
    std::size_t act_after = 0; // 0: never act
    std::function<void()> at_round_end;

private:
    int m_fd;
    std::unordered_map<std::uint64_t, bool> m_sends; // in flight, by user_data
};

} // namespace ucoro_test
