// recv_stream fairness on one small shared ring: streams whose coroutines hoard buffers
// (one stops asking after its first buffer, one holds every buffer it gets) while their
// peers have pushed far more than the ring holds, next to streams whose coroutines consume
// at once. Whatever the hoarders do, the consumers get every byte, in order, without a
// long wait; and once every stream is gone every buffer is back in the ring.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

#include "support/loopback.hpp"
#include "support/ring_support.hpp"
#include "support/unique_fd.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/poll.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/task_handle.hpp"

using ucoro::buffer_ring;
using ucoro::task;
using ucoro::task_handle;
using ucoro::net::address;
using ucoro::net::listener;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// 16 buffers of 4 KiB: each hoarder's peer alone has pushed more than the whole ring.
constexpr unsigned ring_count = 16;
constexpr std::size_t ring_buffer_size = 4096;
constexpr unsigned queue_limit = 4;

constexpr std::size_t stopped_readers = 3; // take one buffer, then never call next() again
constexpr std::size_t greedy_readers = 3;  // call next() and keep every buffer they get
constexpr std::size_t hoarders = stopped_readers + greedy_readers;
constexpr std::size_t consumers = 6;
constexpr std::size_t flood_cap = 1024 * 1024; // what a hoarder's peer pushes, at most

// Each consumer's peer sends 256 KiB in 16 KiB chunks, noting when each send completed;
// the consumer notes when next() delivered each chunk's last byte. The gap between the two
// is how long sent data waited for a buffer. With buffers to spare (this scene on a ring of
// 1024, which the hoarders cannot empty) it is at most 4 ms in the debug and ASan builds;
// on a ring the hoarders have emptied, with nothing to stop them, it is forever. Half a
// second tells the two apart with room for a loaded 2-core CI machine running ASan.
constexpr std::size_t payload_size = 256 * 1024;
constexpr std::size_t chunk_size = 16 * 1024;
constexpr std::size_t chunks = payload_size / chunk_size;
constexpr auto gap_bound = 500ms;

// A safety net, not a wait: the scene takes milliseconds when the ring is fair. When it is
// not, the consumers are cancelled (and their sockets shut down, which also ends a send
// stuck on a full window) so that the test fails instead of hanging.
constexpr auto scene_limit = 10s;

double milliseconds(steady::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

struct hoarder {
    std::vector<std::byte> flood;
    std::size_t pushed = 0;
    std::vector<buffer_ring::buffer> held;
    std::error_code error;
};

struct consumer {
    std::vector<std::byte> payload;
    std::vector<steady::time_point> sent_at;      // per chunk: its send completed
    std::vector<steady::time_point> delivered_at; // per chunk: next() gave its last byte
    std::vector<std::byte> received;
    std::error_code send_error;
    std::error_code error;
    bool end_of_stream = false;
    steady::duration longest_next{};
};

struct scene {
    ucoro::io_context& context;
    buffer_ring& ring;
    std::vector<ucoro_test::connected_pair>& pairs; // hoarders first, then consumers
    std::vector<hoarder>& hoarding;
    std::vector<consumer>& consuming;
    int never_ready; // an eventfd nobody writes: a stopped reader parks on it
    bool timed_out = false;
    unsigned available_while_hoarding = 0; // ring.available() once the consumers were done

    ucoro_test::connected_pair& consumer_pair(std::size_t i) { return pairs[hoarders + i]; }
};

// Takes the first buffer, then holds it and the armed stream without asking again until
// cancelled.
task<void> stop_after_first(scene& s, std::size_t i) {
    hoarder& h = s.hoarding[i];
    auto stream = s.pairs[i].server.recv_multishot(s.ring);
    auto [error, first] = co_await stream.next();
    if (error || first.empty()) {
        h.error = error;
        co_return;
    }
    h.held.push_back(std::move(first));
    (void)co_await ucoro::poll(s.context, s.never_ready, POLLIN);
}

// Keeps every buffer it receives, asking for more until cancelled. Every buffer holds a
// byte at least, so the flood's size bounds the loop.
task<void> hold_everything(scene& s, std::size_t i) {
    hoarder& h = s.hoarding[i];
    auto stream = s.pairs[i].server.recv_multishot(s.ring);
    for (std::size_t round = 0; round <= h.pushed; ++round) {
        auto [error, buffer] = co_await stream.next();
        if (error || buffer.empty()) {
            h.error = error;
            break;
        }
        h.held.push_back(std::move(buffer));
    }
}

task<void> send_in_chunks(scene& s, std::size_t i) {
    consumer& c = s.consuming[i];
    ucoro::net::socket& connection = s.consumer_pair(i).client;
    for (std::size_t k = 0; k < chunks; ++k) {
        auto [error, sent] =
            co_await connection.send_all(std::span(c.payload).subspan(k * chunk_size, chunk_size));
        if (error) {
            c.send_error = error;
            break;
        }
        c.sent_at[k] = steady::now();
    }
    if (const auto close_error = co_await connection.close(); !c.send_error) {
        c.send_error = close_error;
    }
}

// Gives each buffer back as soon as its bytes are copied.
task<void> consume(scene& s, std::size_t i) {
    consumer& c = s.consuming[i];
    auto stream = s.consumer_pair(i).server.recv_multishot(s.ring);
    std::size_t next_chunk = 0;
    for (std::size_t round = 0; round <= payload_size; ++round) {
        const auto asked = steady::now();
        auto [error, buffer] = co_await stream.next();
        const auto now = steady::now();
        c.longest_next = std::max(c.longest_next, now - asked);
        if (error) {
            c.error = error;
            break;
        }
        if (buffer.empty()) {
            c.end_of_stream = true;
            break;
        }
        c.received.insert(c.received.end(), buffer.bytes().begin(), buffer.bytes().end());
        while (next_chunk < chunks && c.received.size() >= (next_chunk + 1) * chunk_size) {
            c.delivered_at[next_chunk++] = now;
        }
    }
}

task<void> watchdog(scene& s, std::vector<task_handle>& serving) {
    if (const auto cancelled = co_await ucoro::sleep_for(s.context, scene_limit); cancelled) {
        co_return; // cancelled: the consumers finished in time
    }
    s.timed_out = true;
    for (std::size_t i = 0; i < consumers; ++i) {
        for (const auto* side : {&s.consumer_pair(i).client, &s.consumer_pair(i).server}) {
            if (side->is_open()) {
                (void)::shutdown(side->native_handle(), SHUT_RDWR);
            }
        }
    }
    for (auto& handle : serving) {
        handle.cancel();
    }
}

task<void> run_scene(scene& s) {
    // The hoarders first, so that their streams are armed (and take the ring) before any
    // consumer's is.
    std::vector<task_handle> hoarding;
    for (std::size_t i = 0; i < hoarders; ++i) {
        hoarding.push_back(
            s.context.spawn(i < stopped_readers ? stop_after_first(s, i) : hold_everything(s, i)));
    }
    std::vector<task_handle> serving;
    for (std::size_t i = 0; i < consumers; ++i) {
        serving.push_back(s.context.spawn(consume(s, i)));
        serving.push_back(s.context.spawn(send_in_chunks(s, i)));
    }
    task_handle dog = s.context.spawn(watchdog(s, serving));
    for (auto& handle : serving) {
        co_await handle.join();
    }
    dog.cancel();
    co_await dog.join();
    s.available_while_hoarding = s.ring.available();
    for (auto& handle : hoarding) {
        handle.cancel();
    }
    for (auto& handle : hoarding) {
        co_await handle.join();
    }
}

} // namespace

TEST_CASE("recv_stream fairness: streams that hoard buffers of a small shared ring leave "
          "the other streams every byte, in order, without a long wait") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    buffer_ring ring(
        *context,
        {.count = ring_count, .buffer_size = ring_buffer_size, .stream_queue_limit = queue_limit});
    listener server(*context, address::ipv4_loopback(0));
    std::vector<ucoro_test::connected_pair> pairs;
    for (std::size_t i = 0; i < hoarders + consumers; ++i) {
        pairs.push_back(context->block_on(ucoro_test::connect_pair(*context, server)));
    }

    // The hoarders' peers push until their sockets take no more (bounded by flood_cap):
    // the data waits in the server side's socket, more than the whole ring for each.
    std::vector<hoarder> hoarding(hoarders);
    for (std::size_t i = 0; i < hoarders; ++i) {
        hoarder& h = hoarding[i];
        h.flood = ucoro_test::make_pattern(flood_cap, static_cast<std::uint32_t>(100 + i));
        while (h.pushed < h.flood.size()) {
            const ssize_t n = ::send(pairs[i].client.native_handle(), h.flood.data() + h.pushed,
                                     std::min<std::size_t>(64 * 1024, h.flood.size() - h.pushed),
                                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n <= 0) {
                REQUIRE((n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)));
                break;
            }
            h.pushed += static_cast<std::size_t>(n);
        }
        INFO("hoarder " << i << " pushed " << h.pushed << " bytes");
        REQUIRE(h.pushed > std::size_t{ring_count} * ring_buffer_size);
    }
    std::vector<consumer> consuming(consumers);
    for (std::size_t i = 0; i < consumers; ++i) {
        consumer& c = consuming[i];
        c.payload = ucoro_test::make_pattern(payload_size, static_cast<std::uint32_t>(200 + i));
        c.sent_at.resize(chunks);
        c.delivered_at.resize(chunks);
    }
    const ucoro_test::unique_fd never_ready(::eventfd(0, EFD_CLOEXEC));
    REQUIRE(never_ready);

    scene s{*context, ring, pairs, hoarding, consuming, never_ready.get()};
    const auto started = steady::now();
    context->block_on(run_scene(s));
    const auto ended = steady::now();

    INFO("scene took " << milliseconds(ended - started)
                       << " ms; buffers in the ring when the consumers were done: "
                       << s.available_while_hoarding << " of " << ring.count());
    CHECK_FALSE(s.timed_out);
    steady::duration longest_gap{};
    for (std::size_t i = 0; i < consumers; ++i) {
        const consumer& c = consuming[i];
        INFO("consumer " << i << ": longest wait in next() " << milliseconds(c.longest_next)
                         << " ms, error " << c.error.message());
        CHECK_FALSE(c.send_error);
        CHECK_FALSE(c.error);
        CHECK(c.end_of_stream);
        UCORO_CHECK_SAME_BYTES(c.received, c.payload);
        for (std::size_t k = 0; k < chunks; ++k) {
            if (c.sent_at[k] == steady::time_point{}) {
                continue; // never sent: the failure shows above
            }
            // A chunk never delivered waited until the scene ended.
            const auto delivered =
                c.delivered_at[k] == steady::time_point{} ? ended : c.delivered_at[k];
            longest_gap = std::max(longest_gap, delivered - c.sent_at[k]);
        }
    }
    INFO("longest gap between a chunk's send and its delivery: " << milliseconds(longest_gap)
                                                                 << " ms");
    CHECK(longest_gap < gap_bound);

    // The hoarders held the beginning of their floods, in order; the private buffer a
    // stream holding none receives into gave each at least its first buffer.
    for (std::size_t i = 0; i < hoarders; ++i) {
        hoarder& h = hoarding[i];
        INFO("hoarder " << i << " held " << h.held.size() << " buffers, error "
                        << h.error.message());
        CHECK_FALSE(h.held.empty());
        std::vector<std::byte> held_bytes;
        for (const auto& buffer : h.held) {
            held_bytes.insert(held_bytes.end(), buffer.bytes().begin(), buffer.bytes().end());
        }
        UCORO_CHECK_SAME_BYTES(held_bytes, std::span(h.flood).first(held_bytes.size()));
        h.held.clear();
    }

    // Every stream is gone; their requests, cancelled, end with the loop, and everything
    // that still arrived for them goes back.
    context->run();
    CHECK(context->in_flight() == 0);
    CHECK(ring.available() == ring.count());
}
