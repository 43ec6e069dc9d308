// Cancels and deadlines on fs operations: an open that a cancel interrupts in an io-wq worker
// reports operation_canceled (not the kernel's internal ERESTARTSYS) and leaks nothing, the
// later rounds of read_exactly_at and write_all_at stay under the deadline and the cancel,
// and a timed open that succeeds as the context is destroyed is closed by its discard().
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "support/context.hpp"
#include "support/loopback.hpp" // UCORO_CHECK_SAME_BYTES
#include "support/unique_fd.hpp"
#include "ucoro/fs/file.hpp"
#include "ucoro/fs/open.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/operation.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/task_handle.hpp"
#include "ucoro/timeout.hpp"
#include "ucoro/when_any.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro::fs::file;
using ucoro_test::make_context;

std::size_t open_descriptors() {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/self/fd")) {
        ++count;
    }
    return count;
}

/// A FIFO in a directory of its own, removed with it.
class temp_fifo {
public:
    temp_fifo() {
        std::string pattern = (std::filesystem::temp_directory_path() / "ucoro-fs-XXXXXX");
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        m_dir = pattern;
        REQUIRE(::mkfifo(path().c_str(), 0600) == 0);
    }
    temp_fifo(const temp_fifo&) = delete;
    temp_fifo& operator=(const temp_fifo&) = delete;
    ~temp_fifo() {
        std::error_code ignored;
        std::filesystem::remove_all(m_dir, ignored);
    }
    std::string path() const { return (m_dir / "fifo").string(); }

private:
    std::filesystem::path m_dir;
};

// O_CREAT makes the kernel hand the open to an io-wq worker, where opening a FIFO to read
// waits for a writer: an open that is really running when the cancel comes.
constexpr int waiting_open = O_RDONLY | O_CREAT;

task<void> nop(io_context& context) {
    (void)co_await ucoro::make_operation(context,
                                         [](io_uring_sqe& sqe) { io_uring_prep_nop(&sqe); });
}

} // namespace

TEST_CASE("when_any: an open waiting in io-wq that loses reports operation_canceled") {
    temp_fifo fifo;
    const std::size_t before = open_descriptors();
    std::error_code loser = std::make_error_code(std::errc::io_error);
    bool loser_opened = true;
    {
        auto context = make_context();
        if (!context) {
            return;
        }
        context->block_on([](io_context& ctx, std::string path, std::error_code& error,
                             bool& opened) -> task<void> {
            auto opener = [](io_context& c, std::string p, std::error_code& e,
                             bool& o) -> task<int> {
                auto [open_error, f] = co_await ucoro::fs::open(c, p, waiting_open);
                e = open_error;
                o = f.is_open();
                co_return 1;
            };
            auto timer = [](io_context& c) -> task<int> {
                (void)co_await ucoro::sleep_for(c, 10ms);
                co_return 2;
            };
            auto result = co_await ucoro::when_any(opener(ctx, path, error, opened), timer(ctx));
            CHECK(result.index == 1);
        }(*context, fifo.path(), loser, loser_opened));
        CHECK(context->in_flight() == 0);
    }
    INFO("the loser's error: " << loser.message());
    CHECK(loser == std::errc::operation_canceled);
    CHECK_FALSE(loser_opened);
    CHECK(open_descriptors() == before);
}

TEST_CASE("stop() ends an open waiting in io-wq with operation_canceled") {
    temp_fifo fifo;
    auto context = make_context();
    if (!context) {
        return;
    }
    std::error_code error = std::make_error_code(std::errc::io_error);
    context->spawn([](io_context& ctx, std::string path, std::error_code& out) -> task<void> {
        auto [open_error, f] = co_await ucoro::fs::open(ctx, path, waiting_open);
        out = open_error;
    }(*context, fifo.path(), error));
    // Stopped after a while, so that the worker has usually started waiting (a cancel that
    // comes before it starts gives operation_canceled too, without interrupting anything).
    context->spawn([](io_context& ctx) -> task<void> {
        (void)co_await ucoro::sleep_for(ctx, 10ms);
        ctx.stop();
    }(*context));
    context->run();
    INFO("the open's error: " << error.message());
    CHECK(error == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("with_timeout bounds the later rounds of read_exactly_at, bytes kept") {
    auto context = make_context();
    if (!context) {
        return;
    }
    std::array<int, 2> ends{};
    REQUIRE(::pipe2(ends.data(), O_CLOEXEC) == 0);
    file reader(*context, ends[0]);
    ucoro_test::unique_fd writer(ends[1]);
    const std::array<std::byte, 3> sent{std::byte{'a'}, std::byte{'b'}, std::byte{'c'}};
    REQUIRE(::write(writer.get(), sent.data(), sent.size()) == 3);
    std::array<std::byte, 16> buffer{};
    // The first round takes the 3 bytes; the second waits for more until the deadline.
    auto [error, n] = context->block_on(
        [](file& f, std::span<std::byte> into) -> task<ucoro::io_result<std::size_t>> {
            co_return co_await ucoro::with_timeout(f.read_exactly_at(into, 0), 20ms);
        }(reader, buffer));
    CHECK(error == std::errc::timed_out);
    REQUIRE(n == 3);
    UCORO_CHECK_SAME_BYTES(std::span(buffer).first(3), sent);
    CHECK(context->in_flight() == 0);
}

TEST_CASE("task_handle::cancel reaches a later round of write_all_at on a full pipe") {
    auto context = make_context();
    if (!context) {
        return;
    }
    std::array<int, 2> ends{};
    REQUIRE(::pipe2(ends.data(), O_CLOEXEC) == 0);
    ucoro_test::unique_fd reader(ends[0]);
    file writer(*context, ends[1]);
    const std::vector<std::byte> bytes(1 << 20, std::byte{7}); // far more than a pipe holds
    ucoro::io_result<std::size_t> written{};
    auto handle = context->spawn([](file& f, std::span<const std::byte> b,
                                    ucoro::io_result<std::size_t>& out) -> task<void> {
        out = co_await f.write_all_at(b, 0);
    }(writer, bytes, written));
    context->spawn([](io_context& ctx, ucoro::task_handle& h) -> task<void> {
        (void)co_await ucoro::sleep_for(ctx, 10ms);
        h.cancel();
    }(*context, handle));
    context->run();
    CHECK(written.error == std::errc::operation_canceled);
    CHECK(written.value > 0); // the first round filled the pipe
    CHECK(written.value < bytes.size());
    CHECK(context->in_flight() == 0);
    // What the value says went is what the pipe holds, no more.
    std::vector<std::byte> drained(bytes.size());
    const ssize_t got = ::read(reader.get(), drained.data(), drained.size());
    CHECK(got == static_cast<ssize_t>(written.value));
}

TEST_CASE("a timed open that succeeds as the context is destroyed is closed (discard)") {
    temp_fifo fifo;
    const std::size_t before = open_descriptors();
    {
        auto context = make_context();
        if (!context) {
            return;
        }
        bool resumed = false;
        context->spawn([](io_context& ctx, std::string path, bool& done) -> task<void> {
            auto result =
                co_await ucoro::with_timeout(ucoro::fs::open(ctx, path, waiting_open), 1h);
            done = true;
        }(*context, fifo.path(), resumed));
        context->block_on(nop(*context));
        REQUIRE(context->in_flight() == 2); // the open and its linked timer
        ucoro_test::unique_fd writer(::open(fifo.path().c_str(), O_RDWR | O_CLOEXEC));
        REQUIRE(writer);
        io_uring_cqe* cqe = nullptr;
        __kernel_timespec wait{10, 0};
        REQUIRE(io_uring_wait_cqe_timeout(&ucoro::detail::native_ring(*context), &cqe, &wait) == 0);
        CHECK(cqe->res >= 0);
        CHECK_FALSE(resumed);
    }
    CHECK(open_descriptors() == before);
}
