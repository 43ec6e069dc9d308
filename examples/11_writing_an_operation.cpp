// 11_writing_an_operation: a new io_uring operation, written on ucoro's public contract.
//
// Shows: a read at an offset (IORING_OP_READ) as a class derived from ucoro::io_operation,
// then the same read in one call to ucoro::make_operation; an open (IORING_OP_OPENAT) whose
// result owns a descriptor, so it copies its path into itself and closes in discard() what
// nobody took; opcode_supported() checked once at start-up; the operations cancelled by a
// deadline like a built-in one. (ucoro's own versions are in include/ucoro/fs/.)
// Tutorial: docs/tutorial/11_writing_an_operation.md
// Needs: Linux >= 5.6 (IORING_OP_READ, IORING_OP_OPENAT).
// Try: build/debug/bin/11_writing_an_operation
#include <ucoro/ucoro.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <fmt/core.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace {

using namespace std::chrono_literals;

// ANCHOR: read_class
/// co_await read_at(context, fd, buffer, offset): up to buffer.size() bytes from `offset`.
class read_at_operation final : public ucoro::io_operation {
public:
    read_at_operation(ucoro::io_context& context, int fd, std::span<std::byte> buffer,
                      std::uint64_t offset) noexcept
        : io_operation(context), m_fd(fd), m_buffer(buffer), m_offset(offset) {}
    read_at_operation(read_at_operation&&) = delete; // rule 2: its address is the user_data

    // Rule 3: fill the SQE, nothing else. io_context sets user_data and submits.
    void prepare(io_uring_sqe& sqe) noexcept override {
        io_uring_prep_read(&sqe, m_fd, m_buffer.data(), static_cast<unsigned>(m_buffer.size()),
                           m_offset);
    }

    // The CQE's res, as every ucoro operation reports it: an error, or the byte count.
    ucoro::io_result<std::size_t> await_resume() const noexcept { return result_as<std::size_t>(); }

private:
    // Rule 1: what the SQE points to outlives the request. The span's bytes live in the
    // caller's frame, which is suspended in this co_await until the CQE.
    int m_fd;
    std::span<std::byte> m_buffer;
    std::uint64_t m_offset;
};

// A prvalue, built in place in the awaiting coroutine's frame: no move (rule 2).
read_at_operation read_at(ucoro::io_context& context, int fd, std::span<std::byte> buffer,
                          std::uint64_t offset) noexcept {
    return {context, fd, buffer, offset};
}
// ANCHOR_END: read_class

// ANCHOR: read_lambda
// The same operation from its io_uring_prep_* call: the lambda is kept in the operation,
// so what it captures by value lives as long as the request.
auto read_at_v2(ucoro::io_context& context, int fd, std::span<std::byte> buffer,
                std::uint64_t offset) {
    return ucoro::make_operation(
        context,
        [fd, buffer, offset](io_uring_sqe& sqe) {
            io_uring_prep_read(&sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()),
                               offset);
        },
        [](int n) { return static_cast<std::size_t>(n); });
}
// ANCHOR_END: read_lambda

// ANCHOR: open_class
/// co_await open_file(context, path, flags): the result owns a descriptor.
class open_operation final : public ucoro::io_operation {
public:
    open_operation(ucoro::io_context& context, std::string path, int flags)
        : io_operation(context), m_path(std::move(path)), m_flags(flags) {}
    open_operation(open_operation&&) = delete;

    void prepare(io_uring_sqe& sqe) noexcept override {
        // Rule 1: the kernel may read the path later, in an io-wq worker: our own copy.
        io_uring_prep_openat(&sqe, AT_FDCWD, m_path.c_str(), m_flags | O_CLOEXEC, 0);
    }

    // Rule 4: ~io_context calls this instead of resuming anybody. An open that succeeded
    // then holds a descriptor that no coroutine will ever see: close it here.
    void discard(int result, std::uint32_t /*flags*/) noexcept override {
        if (result >= 0) {
            ::close(result);
        }
    }

    // The awaiter takes the descriptor: from here on the caller owns it.
    ucoro::io_result<int> await_resume() const noexcept { return result_as<int>(); }

private:
    std::string m_path;
    int m_flags;
};

open_operation open_file(ucoro::io_context& context, std::string path, int flags) {
    return {context, std::move(path), flags};
}
// ANCHOR_END: open_class

// ANCHOR: use
void show(std::string_view what, const ucoro::io_result<std::size_t>& read,
          std::span<const std::byte> buffer) {
    if (read.error) {
        fmt::print("{}: {}\n", what, read.error.message());
    } else {
        fmt::print("{}: {} bytes: \"{}\"\n", what, read.value,
                   std::string_view(reinterpret_cast<const char*>(buffer.data()), read.value));
    }
}

ucoro::task<void> read_it_back(ucoro::io_context& context, std::string path) {
    auto [open_error, fd] = co_await open_file(context, std::move(path), O_RDONLY);
    if (open_error) {
        fmt::print("open failed: {}\n", open_error.message());
        co_return;
    }
    std::array<std::byte, 5> buffer{};
    show("read_at (a class) at offset 7", co_await read_at(context, fd, buffer, 7), buffer);
    show("read_at_v2 (make_operation) at offset 0", co_await read_at_v2(context, fd, buffer, 0),
         buffer);
    show("read_at at offset 1000, past the end", co_await read_at(context, fd, buffer, 1000),
         buffer);
    ::close(fd);

    // Like a built-in operation, it can be timed: a read of an empty pipe waits for bytes.
    std::array<int, 2> pipe_ends{};
    if (::pipe2(pipe_ends.data(), O_CLOEXEC) == 0) {
        show("read_at on an empty pipe, 20 ms deadline",
             co_await ucoro::with_timeout(read_at(context, pipe_ends[0], buffer, 0), 20ms), buffer);
        ::close(pipe_ends[0]);
        ::close(pipe_ends[1]);
    }
}
// ANCHOR_END: use

} // namespace

// ANCHOR: main
int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        ucoro::io_context context;
        // Rule 5: ask once, at start-up, and say what is missing.
        for (const auto opcode : {IORING_OP_READ, IORING_OP_OPENAT}) {
            if (!ucoro::opcode_supported(context, opcode)) {
                fmt::print(stderr, "11_writing_an_operation: this kernel lacks opcode {}\n",
                           static_cast<int>(opcode));
                return 1;
            }
        }
        char path[] = "/tmp/ucoro-11-XXXXXX";
        const int fd = ::mkstemp(path);
        if (fd < 0 || ::write(fd, "hello, world", 12) != 12) {
            fmt::print(stderr, "11_writing_an_operation: cannot write a temporary file\n");
            return 1;
        }
        ::close(fd);
        context.block_on(read_it_back(context, path));
        ::unlink(path);
        fmt::print("{} operations in flight at the end\n", context.in_flight());
    } catch (const std::system_error& e) {
        fmt::print(stderr, "11_writing_an_operation: {}\n", e.what());
        return 1;
    }
}
// ANCHOR_END: main
