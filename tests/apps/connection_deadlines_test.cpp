// connection_deadlines in-process: which connections a sweep shuts down, and how.
#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <optional>

#include "connection_deadlines.hpp"
#include "support/context.hpp"
#include "support/unique_fd.hpp"
#include "ucoro/poll.hpp"
#include "ucoro/task.hpp"

namespace {

using ucoro::apps::connection_deadlines;
using ucoro_test::unique_fd;
using namespace std::chrono_literals;

struct stream_pair {
    unique_fd ours;   // the server's side, registered with the deadlines
    unique_fd theirs; // the peer's side, where a shutdown shows as end of stream
};

stream_pair make_pair() {
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    return {unique_fd(fds[0]), unique_fd(fds[1])};
}

// Waits (in the loop) for the peer to see end of stream, then stops the context, which
// ends the sweeper.
ucoro::task<void> wait_for_end_of_stream(ucoro::io_context& context, int fd) {
    auto [error, events] = co_await ucoro::poll(context, fd, POLLIN);
    REQUIRE(!error);
    char byte = 0;
    REQUIRE(::recv(fd, &byte, 1, MSG_DONTWAIT) == 0);
    context.stop();
}

bool at_end_of_stream(int fd) {
    char byte = 0;
    return ::recv(fd, &byte, 1, MSG_DONTWAIT) == 0;
}

} // namespace

TEST_CASE("connection_deadlines shuts down an idle connection but not one that is sending",
          "[connection_deadlines]") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    connection_deadlines deadlines(*context, 40ms, std::chrono::milliseconds(0));
    stream_pair idle = make_pair();
    stream_pair busy = make_pair();
    {
        connection_deadlines::entry idle_entry(deadlines, idle.ours.get());
        connection_deadlines::entry busy_entry(deadlines, busy.ours.get());
        busy_entry.sending(); // in a send with no send timeout: never expires
        CHECK(deadlines.size() == 2);
        context->spawn(deadlines.sweep());
        context->spawn(wait_for_end_of_stream(*context, idle.theirs.get()));
        context->run();
        CHECK(deadlines.idle_expired() == 1);
        CHECK(deadlines.send_expired() == 0);
        CHECK(!at_end_of_stream(busy.theirs.get()));
        CHECK(errno == EAGAIN);
    }
    CHECK(deadlines.size() == 0);
}

TEST_CASE("connection_deadlines resets a connection stuck in a send past the send timeout",
          "[connection_deadlines]") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    connection_deadlines deadlines(*context, std::chrono::milliseconds(0), 40ms);
    stream_pair stuck = make_pair();
    stream_pair quiet = make_pair();
    connection_deadlines::entry stuck_entry(deadlines, stuck.ours.get());
    connection_deadlines::entry quiet_entry(deadlines, quiet.ours.get()); // idle: no idle timeout
    stuck_entry.sending();
    context->spawn(deadlines.sweep());
    context->spawn(wait_for_end_of_stream(*context, stuck.theirs.get()));
    context->run();
    CHECK(deadlines.send_expired() == 1);
    CHECK(deadlines.idle_expired() == 0);
    // Lingering 0 s: closing it will discard what the peer never read.
    linger option{};
    socklen_t length = sizeof(option);
    REQUIRE(::getsockopt(stuck.ours.get(), SOL_SOCKET, SO_LINGER, &option, &length) == 0);
    CHECK(option.l_onoff == 1);
    CHECK(option.l_linger == 0);
    CHECK(!at_end_of_stream(quiet.theirs.get()));
}

TEST_CASE("connection_deadlines leaves a closing connection alone and drains the live ones",
          "[connection_deadlines]") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    connection_deadlines deadlines(*context, 1h, 1h);
    stream_pair live = make_pair();
    stream_pair closing = make_pair();
    connection_deadlines::entry live_entry(deadlines, live.ours.get());
    connection_deadlines::entry closing_entry(deadlines, closing.ours.get());
    closing_entry.closing(); // its descriptor number may already belong to someone else
    deadlines.shut_down_receives();
    // The live one's receive side is shut: it reads end of stream (but can still send).
    char byte = 0;
    CHECK(::recv(live.ours.get(), &byte, 1, MSG_DONTWAIT) == 0);
    CHECK(::send(live.ours.get(), "x", 1, MSG_NOSIGNAL) == 1);
    CHECK(::recv(closing.ours.get(), &byte, 1, MSG_DONTWAIT) == -1);
    CHECK(errno == EAGAIN);
}

TEST_CASE("connection_deadlines destroyed first detaches its entries", "[connection_deadlines]") {
    // ~io_context destroys unfinished connection frames (and their entries) after the
    // server's locals when run() throws; an entry must not then write into the dead list.
    // A new list at the same address shows any such write.
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    auto a = make_pair();
    auto b = make_pair();
    auto c = make_pair();
    std::optional<connection_deadlines> deadlines(std::in_place, *context, 1h, 1h);
    std::optional<connection_deadlines::entry> first(std::in_place, *deadlines, a.ours.get());
    std::optional<connection_deadlines::entry> second(std::in_place, *deadlines, b.ours.get());
    REQUIRE(deadlines->size() == 2);
    deadlines.reset();
    deadlines.emplace(*context, 1h, 1h); // the same storage
    connection_deadlines::entry third(*deadlines, c.ours.get());
    first.reset();
    second.reset();
    CHECK(deadlines->size() == 1);
    // The surviving entry is still listed: the drain reaches it, and only it.
    deadlines->shut_down_receives();
    CHECK(at_end_of_stream(c.theirs.get()) == false); // SHUT_RD on ours: the peer sees nothing
    char byte = 0;
    CHECK(::recv(c.ours.get(), &byte, 1, MSG_DONTWAIT) == 0);  // ours reads end of stream
    CHECK(::recv(a.ours.get(), &byte, 1, MSG_DONTWAIT) == -1); // untouched: would block
}
