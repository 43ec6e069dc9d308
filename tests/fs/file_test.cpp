// fs::open and fs::file (include/ucoro/fs/): reads and writes at offsets compared byte for
// byte, end of file, the kernel's errors, fsync, statx, the discard of an open nobody takes,
// and cancelling a read that really waits (a pipe).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include "support/context.hpp"
#include "support/loopback.hpp"
#include "support/unique_fd.hpp"
#include "ucoro/fs/file.hpp"
#include "ucoro/fs/open.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/operation.hpp"
#include "ucoro/task.hpp"
#include "ucoro/task_handle.hpp"
#include "ucoro/timeout.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro::fs::file;
using ucoro_test::make_context;

/// A directory of its own under the system's temp dir, removed with everything in it.
class temp_dir {
public:
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "ucoro-fs-XXXXXX");
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        m_path = pattern;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ignored;
        std::filesystem::remove_all(m_path, ignored);
    }
    std::string operator/(const char* name) const { return (m_path / name).string(); }

private:
    std::filesystem::path m_path;
};

std::vector<std::byte> pattern_bytes(std::size_t size, unsigned seed) {
    std::vector<std::byte> bytes(size);
    for (std::size_t i = 0; i < size; ++i) {
        bytes[i] = static_cast<std::byte>((i * 131 + seed) % 251);
    }
    return bytes;
}

std::size_t open_descriptors() {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/self/fd")) {
        ++count;
    }
    return count;
}

task<file> open_or_fail(io_context& context, std::string path, int flags) {
    auto [error, opened] = co_await ucoro::fs::open(context, std::move(path), flags);
    REQUIRE_FALSE(error);
    co_return std::move(opened);
}

} // namespace

TEST_CASE("bytes written at offsets read back byte for byte at those offsets") {
    auto context = make_context();
    if (!context) {
        return;
    }
    temp_dir dir;
    const auto first = pattern_bytes(4096, 1);
    const auto second = pattern_bytes(100'000, 2); // past the first, with a hole between
    constexpr std::uint64_t second_at = 10'000;
    context->block_on([](io_context& ctx, std::string path, const std::vector<std::byte>& a,
                         const std::vector<std::byte>& b) -> task<void> {
        file out = co_await open_or_fail(ctx, path, O_WRONLY | O_CREAT | O_TRUNC);
        // Written in reverse order: each lands at its own offset, not at a file position.
        auto [b_error, b_written] = co_await out.write_all_at(b, second_at);
        REQUIRE_FALSE(b_error);
        CHECK(b_written == b.size());
        auto [a_error, a_written] = co_await out.write_at(a, 0);
        REQUIRE_FALSE(a_error);
        CHECK(a_written == a.size());
        CHECK_FALSE(co_await out.close());
    }(*context, dir / "data", first, second));

    auto [read_first, read_second, hole] = context->block_on(
        [](io_context& ctx,
           std::string path) -> task<std::tuple<std::vector<std::byte>, std::vector<std::byte>,
                                                std::vector<std::byte>>> {
            file in = co_await open_or_fail(ctx, path, O_RDONLY);
            std::vector<std::byte> a(4096);
            std::vector<std::byte> b(100'000);
            std::vector<std::byte> gap(second_at - 4096, std::byte{0xff});
            auto [b_error, b_read] = co_await in.read_exactly_at(b, second_at);
            REQUIRE_FALSE(b_error);
            CHECK(b_read == b.size());
            auto [a_error, a_read] = co_await in.read_at(a, 0);
            REQUIRE_FALSE(a_error);
            CHECK(a_read == a.size());
            auto [gap_error, gap_read] = co_await in.read_exactly_at(gap, 4096);
            REQUIRE_FALSE(gap_error);
            CHECK(gap_read == gap.size());
            co_return std::tuple{a, b, gap};
        }(*context, dir / "data"));
    UCORO_CHECK_SAME_BYTES(read_first, first);
    UCORO_CHECK_SAME_BYTES(read_second, second);
    const std::vector<std::byte> zeros(second_at - 4096, std::byte{0}); // a hole reads as zeros
    UCORO_CHECK_SAME_BYTES(hole, zeros);
    CHECK(std::filesystem::file_size(dir / "data") == second_at + second.size());
    CHECK(context->in_flight() == 0);
}

TEST_CASE("a read at end of file is short, then 0, and read_exactly reports ENODATA") {
    auto context = make_context();
    if (!context) {
        return;
    }
    temp_dir dir;
    const auto content = pattern_bytes(1000, 3);
    context->block_on(
        [](io_context& ctx, std::string path, const std::vector<std::byte>& bytes) -> task<void> {
            file f = co_await open_or_fail(ctx, path, O_RDWR | O_CREAT | O_EXCL);
            auto [error, written] = co_await f.write_all_at(bytes, 0);
            REQUIRE_FALSE(error);
            REQUIRE(written == bytes.size());

            std::array<std::byte, 100> buffer{};
            auto [short_error, short_read] = co_await f.read_at(buffer, 990);
            CHECK_FALSE(short_error); // a short read is not an error
            REQUIRE(short_read == 10);
            UCORO_CHECK_SAME_BYTES(std::span(buffer).first(10), std::span(bytes).subspan(990));
            auto [eof_error, eof_read] = co_await f.read_at(buffer, 1000);
            CHECK_FALSE(eof_error);
            CHECK(eof_read == 0);
            auto [past_error, past_read] = co_await f.read_at(buffer, 5000);
            CHECK_FALSE(past_error);
            CHECK(past_read == 0);

            // Fewer bytes than asked: the error says so, the value says how many came.
            auto [exact_error, exact_read] = co_await f.read_exactly_at(buffer, 950);
            CHECK(exact_error == std::errc::no_message_available);
            CHECK(exact_read == 50);
            UCORO_CHECK_SAME_BYTES(std::span(buffer).first(50), std::span(bytes).subspan(950));
        }(*context, dir / "data", content));
}

TEST_CASE("opening a missing file gives no_such_file_or_directory") {
    auto context = make_context();
    if (!context) {
        return;
    }
    temp_dir dir;
    auto [error, opened] =
        context->block_on([](io_context& ctx, std::string path) -> task<ucoro::io_result<file>> {
            co_return co_await ucoro::fs::open(ctx, std::move(path), O_RDONLY);
        }(*context, dir / "missing"));
    CHECK(error == std::errc::no_such_file_or_directory);
    CHECK_FALSE(opened.is_open());
    // O_EXCL on a file that exists is the kernel's EEXIST, passed through.
    auto exists = context->block_on([](io_context& ctx, std::string path) -> task<std::error_code> {
        (void)co_await open_or_fail(ctx, path, O_WRONLY | O_CREAT);
        auto [again, second] = co_await ucoro::fs::open(ctx, path, O_WRONLY | O_CREAT | O_EXCL);
        co_return again;
    }(*context, dir / "once"));
    CHECK(exists == std::errc::file_exists);
}

TEST_CASE("writing through a read-only descriptor fails and changes nothing") {
    auto context = make_context();
    if (!context) {
        return;
    }
    temp_dir dir;
    const auto content = pattern_bytes(64, 4);
    auto [error, written, size] =
        context->block_on([](io_context& ctx, std::string path, const std::vector<std::byte>& bytes)
                              -> task<std::tuple<std::error_code, std::size_t, std::size_t>> {
            file out = co_await open_or_fail(ctx, path, O_WRONLY | O_CREAT);
            (void)co_await out.write_all_at(bytes, 0);
            file in = co_await open_or_fail(ctx, path, O_RDONLY);
            auto [e, n] = co_await in.write_all_at(bytes, 64);
            co_return std::tuple{e, n, std::filesystem::file_size(path)};
        }(*context, dir / "data", content));
    CHECK(error == std::errc::bad_file_descriptor);
    CHECK(written == 0);
    CHECK(size == 64);

    if (::geteuid() == 0) {
        WARN("root ignores file permissions: the mode 0444 half of this test is left out");
        return;
    }
    auto denied = context->block_on([](io_context& ctx, std::string path) -> task<std::error_code> {
        auto [e, f] = co_await ucoro::fs::open(ctx, path, O_WRONLY | O_CREAT, 0444);
        REQUIRE_FALSE(e); // creating it read-only still gives this one descriptor
        auto [again, g] = co_await ucoro::fs::open(ctx, path, O_WRONLY);
        co_return again;
    }(*context, dir / "read-only"));
    CHECK(denied == std::errc::permission_denied);
}

TEST_CASE("fsync and fdatasync succeed, and statx reports the size written") {
    auto context = make_context();
    if (!context) {
        return;
    }
    temp_dir dir;
    const auto content = pattern_bytes(12'345, 5);
    auto [all, data, status] = context->block_on(
        [](io_context & ctx, std::string path, const std::vector<std::byte>& bytes)
            -> task<std::tuple<std::error_code, std::error_code, ucoro::io_result<struct statx>>> {
            file f = co_await open_or_fail(ctx, path, O_RDWR | O_CREAT);
            auto [error, written] = co_await f.write_all_at(bytes, 0);
            REQUIRE_FALSE(error);
            auto all_error = co_await f.sync();
            auto data_error = co_await f.sync(ucoro::fs::sync_kind::data);
            auto stat_result = co_await f.stat();
            co_return std::tuple{all_error, data_error, stat_result};
        }(*context, dir / "data", content));
    CHECK_FALSE(all);
    CHECK_FALSE(data);
    REQUIRE_FALSE(status.error);
    CHECK((status.value.stx_mask & STATX_SIZE) != 0);
    CHECK(status.value.stx_size == content.size());
    CHECK(S_ISREG(status.value.stx_mode));
}

TEST_CASE("a default-constructed file reports bad_file_descriptor for every operation") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto errors = context->block_on([]() -> task<std::vector<std::error_code>> {
        file none;
        std::array<std::byte, 4> buffer{};
        std::vector<std::error_code> out;
        out.push_back((co_await none.read_at(buffer, 0)).error);
        out.push_back((co_await none.read_exactly_at(buffer, 0)).error);
        out.push_back((co_await none.write_at(buffer, 0)).error);
        out.push_back((co_await none.write_all_at(buffer, 0)).error);
        out.push_back(co_await none.sync());
        out.push_back((co_await none.stat()).error);
        co_return out;
    }());
    for (const auto& error : errors) {
        CHECK(error == std::errc::bad_file_descriptor);
    }
}

TEST_CASE("a context destroyed with an open in flight closes the descriptor (discard)") {
    temp_dir dir;
    const std::string fifo = dir / "fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const std::size_t before = open_descriptors();
    {
        auto context = make_context();
        if (!context) {
            return;
        }
        bool resumed = false;
        // O_CREAT makes the kernel hand the open to an io-wq worker, where opening a FIFO to
        // read waits for a writer: the open is in flight, and its CQE is not reaped below.
        context->spawn([](io_context& ctx, std::string path, bool& done) -> task<void> {
            auto [error, opened] = co_await ucoro::fs::open(ctx, path, O_RDONLY | O_CREAT);
            done = true;
        }(*context, fifo, resumed));
        // Runs in the same turn as the opener, so both SQEs go in together.
        context->block_on([](io_context& ctx) -> task<void> {
            (void)co_await ucoro::make_operation(
                ctx, [](io_uring_sqe& sqe) { io_uring_prep_nop(&sqe); });
        }(*context));
        REQUIRE(context->in_flight() == 1);
        // A writer arrives: the worker's open returns a descriptor. Wait for its CQE without
        // taking it, so that only the context's teardown sees it.
        ucoro_test::unique_fd writer(::open(fifo.c_str(), O_RDWR | O_CLOEXEC));
        REQUIRE(writer);
        io_uring_cqe* cqe = nullptr;
        __kernel_timespec wait{10, 0};
        REQUIRE(io_uring_wait_cqe_timeout(&ucoro::detail::native_ring(*context), &cqe, &wait) == 0);
        CHECK(cqe->res >= 0);
        CHECK_FALSE(resumed);
    }
    CHECK(open_descriptors() == before);
}

TEST_CASE("task_handle::cancel ends a read that waits on a pipe, and no byte is lost") {
    auto context = make_context();
    if (!context) {
        return;
    }
    std::array<int, 2> ends{};
    REQUIRE(::pipe2(ends.data(), O_CLOEXEC) == 0);
    file reader(*context, ends[0]);
    ucoro_test::unique_fd writer(ends[1]);

    ucoro::io_result<std::size_t> cancelled{};
    std::array<std::byte, 16> buffer{};
    auto handle = context->spawn(
        [](file& f, std::span<std::byte> into, ucoro::io_result<std::size_t>& out) -> task<void> {
            out = co_await f.read_at(into, 0);
        }(reader, buffer, cancelled));
    context->block_on([](io_context& ctx) -> task<void> {
        (void)co_await ucoro::make_operation(ctx,
                                             [](io_uring_sqe& sqe) { io_uring_prep_nop(&sqe); });
    }(*context));
    REQUIRE(context->in_flight() == 1); // the read is waiting for bytes
    handle.cancel();
    context->run();
    CHECK(cancelled.error == std::errc::operation_canceled);
    CHECK(cancelled.value == 0);
    CHECK(context->in_flight() == 0);

    // The bytes written after the cancel all go to the next read.
    const std::array<std::byte, 3> sent{std::byte{'a'}, std::byte{'b'}, std::byte{'c'}};
    REQUIRE(::write(writer.get(), sent.data(), sent.size()) == 3);
    auto [error, n] = context->block_on(
        [](file& f, std::span<std::byte> into) -> task<ucoro::io_result<std::size_t>> {
            co_return co_await f.read_at(into, 0);
        }(reader, buffer));
    REQUIRE_FALSE(error);
    REQUIRE(n == 3);
    UCORO_CHECK_SAME_BYTES(std::span(buffer).first(3), sent);
}

TEST_CASE("with_timeout ends a read that waits on a pipe with timed_out") {
    auto context = make_context();
    if (!context) {
        return;
    }
    std::array<int, 2> ends{};
    REQUIRE(::pipe2(ends.data(), O_CLOEXEC) == 0);
    file reader(*context, ends[0]);
    ucoro_test::unique_fd writer(ends[1]);
    auto [error, n] = context->block_on([](file& f) -> task<ucoro::io_result<std::size_t>> {
        std::array<std::byte, 16> buffer{};
        co_return co_await ucoro::with_timeout(f.read_exactly_at(buffer, 0), 20ms);
    }(reader));
    CHECK(error == std::errc::timed_out);
    CHECK(n == 0);
    CHECK(context->in_flight() == 0);
}
