// ~io_context's drain is bounded: an operation that the kernel neither completes nor
// cancels does not hang the destructor. After about two seconds of cancelling and waiting,
// the context hands what is left to the kernel's synchronous cancel (settle_synchronously)
// and frees the frames; only what that cannot settle would be leaked, with a message.
//
// Two such operations. One built by hand: a sleep whose SQE is linked behind a pipe read
// put in the ring outside the context's books; a request waiting in a link has not been
// issued, so IORING_OP_ASYNC_CANCEL does not find it (-ENOENT), and nobody writes to the
// pipe. And the real one: a send_all to a peer that never reads, woken by the peer's
// half-close while the window stays shut, which 6.18 hands to an io-wq worker where the
// drain's cancels do not reach it (the synchronous cancel does). Before the bound, both
// hung the destructor.
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "support/context.hpp"
#include "support/counting.hpp"
#include "support/send_rounds.hpp"
#include "support/stderr_capture.hpp"
#include "support/unique_fd.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;

/// Puts a read of `pipe_read` into the ring by hand, linked to the next SQE, then awaits a
/// sleep: the sleep's SQE is that next one, so it waits for a read that never completes.
task<void> sleep_behind_a_stuck_read(io_context& context, int pipe_read, std::byte* buffer,
                                     ucoro_test::counted) {
    io_uring_sqe* read = io_uring_get_sqe(&ucoro::detail::native_ring(context));
    REQUIRE(read != nullptr);
    io_uring_prep_read(read, pipe_read, buffer, 1, 0);
    read->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(read, 0); // the loop ignores user_data 0 (a cancel's CQE)
    (void)co_await ucoro::sleep_for(context, 1ms);
}

TEST_CASE("~io_context bounds its drain when an operation never completes, then settles it") {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const ucoro_test::unique_fd pipe_read(fds[0]);
    const ucoro_test::unique_fd pipe_write(fds[1]);
    std::array<std::byte, 1> buffer{};
    ucoro_test::lifetime_counts frames;
    std::chrono::steady_clock::duration took{};
    ucoro_test::stderr_capture capture;
    {
        auto context = ucoro_test::make_context();
        if (!context) {
            return;
        }
        context->spawn(sleep_behind_a_stuck_read(*context, pipe_read.get(), buffer.data(),
                                                 ucoro_test::counted(frames)));
        context->block_on(ucoro_test::next_turn_of(*context)); // both SQEs are in the kernel
        REQUIRE(context->in_flight() == 1);                    // the sleep; the read is not ours
        REQUIRE(frames.alive() == 1);
        const auto start = std::chrono::steady_clock::now();
        context.reset(); // before the bound: waited for the sleep's CQE forever
        took = std::chrono::steady_clock::now() - start;
    }
    const std::string captured = capture.finish();
    INFO("stderr: " << captured << "; the destructor took "
                    << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                    << " ms");
    CHECK(took >= 1s); // it did try for a while
    CHECK(took < 10s); // the drain's bound, then the synchronous cancel's, with room
    // The synchronous cancel ended the read, so the linked sleep failed and completed: the
    // frame was freed, not leaked.
    CHECK(frames.alive() == 0);
    CHECK(captured.find("leaked") == std::string::npos);
}

TEST_CASE("~io_context returns within its bound with a send_all stuck on a peer that never "
          "reads") {
    // Outlives the context and the sockets: if the send had to be leaked, the kernel may
    // still read it until the socket is shut down below.
    const auto payload = ucoro_test::make_pattern(16 * 1024 * 1024, 71);
    std::optional<ucoro_test::small_buffer_connection> connection;
    std::chrono::steady_clock::duration took{};
    ucoro_test::stderr_capture capture;
    {
        auto context = ucoro_test::make_context();
        if (!context) {
            return;
        }
        connection.emplace(ucoro_test::make_small_buffer_connection(*context));
        ucoro::net::socket& sender = connection->sender;
        context->spawn([](ucoro::net::socket& s, std::span<const std::byte> bytes) -> task<void> {
            (void)co_await s.send_all(bytes);
        }(sender, payload));
        // The buffers fill at once and the send waits. The peer's half-close then wakes it
        // while the window stays shut: on 6.18 that hands it to an io-wq worker, the
        // case the kernel's cancel may not reach.
        for (int turn = 0; turn < 100; ++turn) {
            context->block_on(ucoro_test::next_turn_of(*context));
        }
        ::shutdown(connection->receiver.native_handle(), SHUT_WR);
        for (int turn = 0; turn < 100; ++turn) {
            context->block_on(ucoro_test::next_turn_of(*context));
        }
        REQUIRE(context->in_flight() == 1);
        const auto start = std::chrono::steady_clock::now();
        context.reset();
        took = std::chrono::steady_clock::now() - start;
    }
    // Ends the send, in the kernel, if it was left to run.
    ::shutdown(connection->sender.native_handle(), SHUT_RDWR);
    const std::string captured = capture.finish();
    INFO("stderr: " << captured << "; the destructor took "
                    << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                    << " ms");
    // Two seconds of draining and five of synchronous cancel at most, then the leak path
    // (a message, not a hang) if the kernel still holds the send.
    CHECK(took < 10s);
    // Settled (on 6.18 the synchronous cancel ends what the drain's cancels did not), or
    // leaked with the message: nothing else.
    CHECK((captured.empty() || captured.find("frames are leaked") != std::string::npos));
    connection.reset();
}

} // namespace
