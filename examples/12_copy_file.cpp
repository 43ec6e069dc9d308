// 12_copy_file: copies a file with a fixed number of reads in flight.
//
// Shows: fs::open, read_exactly_at and write_all_at on an fs::file (operations written on the
// public contract of chapter 11); N worker coroutines that each take the next block, read
// it at its offset and write it at the same offset in the copy, so that N reads or writes
// are in the ring at once (the idea of liburing's io_uring-cp, without its bookkeeping:
// each block's state is a coroutine's local variables); when_all to wait for them all;
// statx to size the copy and to refuse copying a file onto itself; a destination that
// cannot seek refused (its blocks would arrive shuffled); bad input as one line and a
// non-zero exit.
// Tutorial: docs/tutorial/12_copying_a_file.md
// Needs: Linux >= 5.6 (IORING_OP_OPENAT, READ, WRITE, STATX).
// Try: build/debug/bin/12_copy_file /etc/services /tmp/services.copy --in-flight 4
#include <ucoro/ucoro.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

constexpr std::string_view usage =
    "usage: 12_copy_file SRC DST [--in-flight N] [--block-size BYTES]";

constexpr std::size_t max_buffered = 1024 * 1024 * 1024; // the blocks of all workers together

struct options {
    std::string source;
    std::string destination;
    std::size_t in_flight = 8;
    std::size_t block_size = 64 * 1024;
};

/// A whole number in [low, high], or nothing.
std::optional<std::size_t> parse_count(std::string_view text, std::size_t low, std::size_t high) {
    std::size_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || value < low || value > high) {
        return std::nullopt;
    }
    return value;
}

/// The options, or a one-line complaint.
std::optional<options> parse(int argc, char** argv, std::string& complaint) {
    options parsed;
    std::vector<std::string_view> positional;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--in-flight" || arg == "--block-size") {
            if (i + 1 == argc) {
                complaint = fmt::format("{} needs a value", arg);
                return std::nullopt;
            }
            const bool in_flight = arg == "--in-flight";
            const auto value = in_flight ? parse_count(argv[++i], 1, 1024)
                                         : parse_count(argv[++i], 1, 64 * 1024 * 1024);
            if (!value) {
                complaint = fmt::format("{} wants a whole number from 1 to {}, not '{}'", arg,
                                        in_flight ? 1024 : 64 * 1024 * 1024, argv[i]);
                return std::nullopt;
            }
            (in_flight ? parsed.in_flight : parsed.block_size) = *value;
        } else if (arg.starts_with("-") && arg != "-") {
            complaint = fmt::format("unknown option '{}'", arg);
            return std::nullopt;
        } else {
            positional.push_back(arg);
        }
    }
    // Every worker holds a block: bound what N workers can ask for together.
    if (parsed.in_flight * parsed.block_size > max_buffered) {
        complaint =
            fmt::format("--in-flight times --block-size must be at most {} bytes", max_buffered);
        return std::nullopt;
    }
    if (positional.size() != 2) {
        complaint = "expected a source and a destination";
        return std::nullopt;
    }
    parsed.source = positional[0];
    parsed.destination = positional[1];
    return parsed;
}

// ANCHOR: state
// What the workers share. One thread runs them all, so no lock: a worker takes the next
// block between two co_awaits, and nothing else runs meanwhile.
struct copy_state {
    ucoro::fs::file& source;
    ucoro::fs::file& destination;
    std::uint64_t size;
    std::size_t block_size;
    std::uint64_t next = 0; // the offset of the first block nobody has taken
    std::string failure;    // the first error; the other workers stop at their next block
};
// ANCHOR_END: state

// ANCHOR: worker
// One block in flight at a time: read it, write it at the same offset, take the next one.
// Every worker has its own buffer, so N workers keep N reads or writes in the ring.
ucoro::task<void> copy_blocks(copy_state& copy) {
    std::vector<std::byte> buffer(copy.block_size);
    while (copy.failure.empty() && copy.next < copy.size) {
        const std::uint64_t offset = copy.next;
        const auto length =
            static_cast<std::size_t>(std::min<std::uint64_t>(copy.block_size, copy.size - offset));
        copy.next += length;
        const auto block = std::span(buffer).first(length);
        auto [read_error, n] = co_await copy.source.read_exactly_at(block, offset);
        if (read_error) {
            copy.failure = fmt::format("cannot read at offset {}: {}", offset,
                                       read_error == std::errc::no_message_available
                                           ? "the file shrank while being copied"
                                           : read_error.message());
            co_return;
        }
        auto [write_error, written] = co_await copy.destination.write_all_at(block, offset);
        if (write_error) {
            copy.failure =
                fmt::format("cannot write at offset {}: {}", offset, write_error.message());
            co_return;
        }
    }
}

// N workers as a balanced tree of when_all: when_all takes its tasks as arguments, and
// this splits a count known only at run time into pairs.
ucoro::task<void> run_workers(copy_state& copy, std::size_t count) {
    if (count == 1) {
        co_await copy_blocks(copy);
    } else {
        (void)co_await ucoro::when_all(run_workers(copy, count / 2),
                                       run_workers(copy, count - count / 2));
    }
}
// ANCHOR_END: worker

// ANCHOR: copy
// Returns the error message, or an empty string once every byte is written and closed.
ucoro::task<std::string> copy_file(ucoro::io_context& context, const options& opts) {
    auto [source_error, source] = co_await ucoro::fs::open(context, opts.source, O_RDONLY);
    if (source_error) {
        co_return fmt::format("cannot open {}: {}", opts.source, source_error.message());
    }
    auto [stat_error, status] = co_await source.stat();
    if (stat_error) {
        co_return fmt::format("cannot stat {}: {}", opts.source, stat_error.message());
    }
    if (!S_ISREG(status.stx_mode)) {
        co_return fmt::format("{} is not a regular file", opts.source);
    }
    // No O_TRUNC yet: if DST is SRC under another name, truncating it would lose the data.
    auto [destination_error, destination] =
        co_await ucoro::fs::open(context, opts.destination, O_WRONLY | O_CREAT);
    if (destination_error) {
        co_return fmt::format("cannot open {}: {}", opts.destination, destination_error.message());
    }
    auto [target_error, target] = co_await destination.stat();
    if (target_error) {
        co_return fmt::format("cannot stat {}: {}", opts.destination, target_error.message());
    }
    if (target.stx_dev_major == status.stx_dev_major &&
        target.stx_dev_minor == status.stx_dev_minor && target.stx_ino == status.stx_ino) {
        co_return fmt::format("{} and {} are the same file", opts.source, opts.destination);
    }
    // The blocks go in at their offsets in whatever order the workers finish: a pipe, a
    // socket or a terminal, which cannot seek, would get them shuffled.
    if (::lseek(destination.native_handle(), 0, SEEK_CUR) < 0 && errno == ESPIPE) {
        co_return fmt::format("{} cannot be written at an offset (a pipe, socket or terminal)",
                              opts.destination);
    }
    // The copy's final length at once, so that a longer old file leaves no tail behind (a
    // plain syscall: IORING_OP_FTRUNCATE needs Linux 6.9). Not for /dev/null and the like.
    if (S_ISREG(target.stx_mode) &&
        ::ftruncate(destination.native_handle(), static_cast<off_t>(status.stx_size)) != 0) {
        co_return fmt::format("cannot resize {}: {}", opts.destination,
                              std::error_code(errno, std::system_category()).message());
    }

    copy_state copy{source, destination, status.stx_size, opts.block_size, 0, {}};
    co_await run_workers(copy, opts.in_flight);
    if (!copy.failure.empty()) {
        co_return fmt::format("{} to {}: {}", opts.source, opts.destination, copy.failure);
    }
    // The size came from statx: bytes past it (a file that grew meanwhile, or one whose size
    // means nothing, as in /proc) would be left out without a word. One more read says.
    std::array<std::byte, 1> past_end{};
    auto [end_error, extra] = co_await source.read_at(past_end, status.stx_size);
    if (end_error || extra != 0) {
        co_return fmt::format("{} has more bytes than the {} its size said (it grew, or its size "
                              "means nothing, as in /proc): the copy is incomplete",
                              opts.source, status.stx_size);
    }
    // Some filesystems (NFS) report a write error the page cache held back only at close:
    // report it too. (On a local one only an fsync would; a copy like cp(1) does none.)
    if (auto error = co_await destination.close()) {
        co_return fmt::format("cannot close {}: {}", opts.destination, error.message());
    }
    fmt::print("copied {} bytes from {} to {} in blocks of {} bytes, {} in flight\n",
               status.stx_size, opts.source, opts.destination, opts.block_size, opts.in_flight);
    co_return std::string();
}
// ANCHOR_END: copy

} // namespace

int main(int argc, char** argv) {
    std::string complaint;
    const auto opts = parse(argc, argv, complaint);
    if (!opts) {
        fmt::print(stderr, "12_copy_file: {}\n{}\n", complaint, usage);
        return 2;
    }
    try {
        ucoro::io_context context;
        const std::string failure = context.block_on(copy_file(context, *opts));
        if (!failure.empty()) {
            fmt::print(stderr, "12_copy_file: {}\n", failure);
            return 1;
        }
    } catch (const std::exception& e) { // the ring's failures (system_error), out of memory
        fmt::print(stderr, "12_copy_file: {}\n", e.what());
        return 1;
    }
    return 0;
}
