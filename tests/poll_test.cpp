// poll(context, fd, events): readiness through the ring, and cancellation.
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <system_error>

#include "support/context.hpp"
#include "support/counting.hpp"
#include "support/unique_fd.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/poll.hpp"
#include "ucoro/task.hpp"

using ucoro::io_context;
using ucoro::task;
using ucoro_test::unique_fd;

TEST_CASE("poll reports POLLIN once an eventfd is written, not before") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    unique_fd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    REQUIRE(event.get() >= 0);
    bool written = false;
    const auto result = context->block_on([&]() -> task<ucoro::io_result<unsigned>> {
        auto wait = ucoro::poll(*context, event.get(), POLLIN);
        context->spawn([](io_context& c, int fd, bool& flag) -> task<void> {
            co_await ucoro_test::next_turn{c}; // the poll is in the kernel now
            flag = true;
            const std::uint64_t one = 1;
            REQUIRE(::write(fd, &one, sizeof(one)) == sizeof(one));
        }(*context, event.get(), written));
        auto outcome = co_await wait;
        CHECK(written); // it did not complete before the write
        co_return outcome;
    }());
    CHECK_FALSE(result.error);
    CHECK((result.value & POLLIN) != 0);
}

TEST_CASE("a poll that never becomes ready is cancelled by stop()") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    unique_fd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    REQUIRE(event.get() >= 0);
    std::error_code error;
    context->spawn([](io_context& c, int fd, std::error_code& out) -> task<void> {
        auto [poll_error, revents] = co_await ucoro::poll(c, fd, POLLIN);
        out = poll_error;
    }(*context, event.get(), error));
    context->spawn([](io_context& c) -> task<void> {
        co_await ucoro_test::next_turn{c};
        c.stop();
    }(*context));
    context->run();
    CHECK(error == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}
