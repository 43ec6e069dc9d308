// task_handle: what io_context::spawn returns. Joining before and after the task finished,
// cancelling a task however deep it waits (a recv, a recv_stream, an accept_stream), cancel
// before start and after finish, stop() as the same mechanism over everything, and the
// ordering argument that keeps a late cancel from hitting an operation that reuses the
// address of the one it was meant for.
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

#include "support/counting.hpp"
#include "support/loopback.hpp"
#include "support/ring_support.hpp"
#include "support/stream_pair.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/accept_stream.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/operation.hpp"
#include "ucoro/task.hpp"
#include "ucoro/task_handle.hpp"

namespace {

using ucoro::io_context;
using ucoro::task;
using ucoro::task_handle;
using ucoro_test::counted;
using ucoro_test::lifetime_counts;
using ucoro_test::make_context;
using ucoro_test::make_stream_pair;
using ucoro_test::next_turn;

/// How a cancelled task ended.
struct unwound {
    std::error_code error;
    int finished = 0;
};

/// Nests `depth` task awaits, each frame holding a counted local, then waits in a recv on a
/// peer that never speaks: only a cancel ends it.
task<void> recv_at_depth(ucoro::net::socket& sock, int depth, unwound& out,
                         lifetime_counts& counts) {
    counted local(counts);
    if (depth == 0) {
        std::array<std::byte, 64> buffer{};
        auto [error, n] = co_await sock.recv(buffer);
        out.error = error;
        ++out.finished;
        (void)n;
        co_return;
    }
    co_await recv_at_depth(sock, depth - 1, out, counts);
}

/// Turns the loop until `done` or `limit` turns: waits on an event without sleeping.
task<bool> turns_until(io_context& context, const bool& done, int limit = 1000) {
    for (int i = 0; i < limit && !done; ++i) {
        co_await next_turn{context};
    }
    co_return done;
}

task<void> cancel_deep_and_join(io_context& context, task_handle& handle,
                                const lifetime_counts& counts, int& alive_while_waiting) {
    co_await next_turn{context};
    co_await next_turn{context}; // the recv is in the kernel now
    alive_while_waiting = counts.alive();
    CHECK_FALSE(handle.done());
    handle.cancel();
    co_await handle.join();
    CHECK(handle.done());
}

TEST_CASE("a task ten awaits deep in a recv is cancelled by its handle and unwinds") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    unwound out;
    lifetime_counts counts;
    int alive_while_waiting = 0;
    auto handle = context->spawn(recv_at_depth(pair.ours, 10, out, counts));
    context->block_on(cancel_deep_and_join(*context, handle, counts, alive_while_waiting));
    CHECK(alive_while_waiting == 11); // eleven frames, all suspended
    CHECK(out.finished == 1);
    CHECK(out.error == std::errc::operation_canceled);
    CHECK(counts.constructed == 11);
    CHECK(counts.alive() == 0); // every frame's destructors ran
    CHECK(handle.done());
    CHECK(context->in_flight() == 0);
}

task<void> finish_after_turns(io_context& context, int turns, bool& finished) {
    for (int i = 0; i < turns; ++i) {
        co_await next_turn{context};
    }
    finished = true;
}

task<void> join_before_finish(io_context& context, bool& finished, bool& seen_finished) {
    auto handle = context.spawn(finish_after_turns(context, 3, finished));
    CHECK_FALSE(handle.done());
    co_await handle.join();
    seen_finished = finished;
    CHECK(handle.done());
}

task<void> join_after_finish(io_context& context, bool& finished, bool& joined) {
    auto handle = context.spawn(finish_after_turns(context, 1, finished));
    const bool done = co_await turns_until(context, finished);
    REQUIRE(done);
    co_await next_turn{context}; // its frame is gone by now
    CHECK(handle.done());
    co_await handle.join(); // ready at once
    joined = true;
    co_await handle.join(); // and again
}

TEST_CASE("join resumes once the task finished, whether awaited before or after") {
    auto context = make_context();
    if (!context) {
        return;
    }
    bool finished = false;
    SECTION("before it finished") {
        bool seen_finished = false;
        context->block_on(join_before_finish(*context, finished, seen_finished));
        CHECK(seen_finished);
    }
    SECTION("after it finished") {
        bool joined = false;
        context->block_on(join_after_finish(*context, finished, joined));
        CHECK(joined);
    }
    CHECK(finished);
}

task<void> receive_one(ucoro::net::socket& sock, std::vector<std::byte>& got,
                       std::error_code& error) {
    std::array<std::byte, 64> buffer{};
    auto [e, n] = co_await sock.recv(buffer);
    error = e;
    got.assign(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
}

task<void> cancel_finished_then_receive(io_context& context, ucoro::net::socket& sock, int peer,
                                        std::vector<std::byte>& got, std::error_code& error) {
    bool finished = false;
    auto handle = context.spawn(finish_after_turns(context, 1, finished));
    const bool done = co_await turns_until(context, finished);
    REQUIRE(done);
    co_await next_turn{context};
    REQUIRE(handle.done());
    handle.cancel(); // nothing to cancel: must touch nobody
    handle.cancel();
    const auto bytes = ucoro_test::to_bytes("after");
    ucoro_test::write_all(peer, bytes);
    auto receiver = context.spawn(receive_one(sock, got, error));
    co_await receiver.join();
}

TEST_CASE("cancelling a finished task is harmless") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    std::vector<std::byte> got;
    std::error_code error;
    context->block_on(
        cancel_finished_then_receive(*context, pair.ours, pair.peer.get(), got, error));
    CHECK_FALSE(error);
    CHECK(ucoro_test::as_text(got) == "after");
    CHECK(context->in_flight() == 0);
}

TEST_CASE("cancelling a task before it started cancels its first operation") {
    auto context = make_context();
    if (!context) {
        return;
    }
    auto pair = make_stream_pair(*context);
    unwound out;
    lifetime_counts counts;
    auto handle = context->spawn(recv_at_depth(pair.ours, 3, out, counts));
    handle.cancel();
    context->run();
    CHECK(out.finished == 1);
    CHECK(out.error == std::errc::operation_canceled);
    CHECK(counts.alive() == 0);
    CHECK(handle.done());
}

TEST_CASE("a dropped handle detaches: the task runs on to its end") {
    auto context = make_context();
    if (!context) {
        return;
    }
    bool finished = false;
    context->spawn(finish_after_turns(*context, 3, finished)); // handle ignored
    {
        auto handle = context->spawn(finish_after_turns(*context, 2, finished));
        task_handle moved = std::move(handle);
        CHECK(handle.done()); // moved from: empty
        CHECK_FALSE(moved.done());
    } // dropped while the task runs
    context->run();
    CHECK(finished);
}

// --- Multishot streams -------------------------------------------------------------------

struct stream_outcome {
    std::vector<std::byte> bytes;
    std::error_code error;
    int finished = 0;
};

/// Receives until an error or end of stream; with `hold`, keeps the first buffer while it
/// waits for more (so a one-buffer ring runs empty and the stream parks).
task<void> stream_until_error(ucoro::net::socket& sock, ucoro::buffer_ring& ring,
                              stream_outcome& out, bool hold) {
    auto stream = sock.recv_multishot(ring);
    ucoro::buffer_ring::buffer held;
    for (int i = 0; i < 1000; ++i) {
        auto [error, buffer] = co_await stream.next();
        if (error) {
            out.error = error;
            break;
        }
        if (buffer.empty()) {
            break;
        }
        out.bytes.insert(out.bytes.end(), buffer.bytes().begin(), buffer.bytes().end());
        if (hold && !held.size()) {
            held = std::move(buffer);
        }
    }
    ++out.finished;
}

task<void> cancel_stream_after_bytes(io_context& context, task_handle& handle, int peer,
                                     const stream_outcome& out, bool wait_for_park) {
    const auto hello = ucoro_test::to_bytes("hello");
    ucoro_test::write_all(peer, hello);
    for (int i = 0; i < 1000 && out.bytes.size() < hello.size(); ++i) {
        co_await next_turn{context};
    }
    REQUIRE(out.bytes.size() == hello.size());
    if (wait_for_park) {
        // The only buffer is held: more data ends the request with ENOBUFS, and the stream
        // (under its share) receives it into a buffer of its own instead of waiting for
        // the ring (buffer_ring.hpp, "Fairness"); then it waits in the ring again.
        ucoro_test::write_all(peer, ucoro_test::to_bytes("more"));
        for (int i = 0; i < 1000 && out.bytes.size() < hello.size() + 4; ++i) {
            co_await next_turn{context};
        }
        REQUIRE(ucoro_test::as_text(out.bytes) == "hellomore");
    } else {
        co_await next_turn{context};
    }
    REQUIRE(out.finished == 0);
    handle.cancel();
    co_await handle.join();
}

TEST_CASE("cancelling a task suspended in recv_stream::next() ends it with operation_canceled") {
    const bool park = GENERATE(false, true);
    CAPTURE(park);
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    ucoro::buffer_ring_options options;
    options.count = park ? 1 : 8;
    options.buffer_size = 64;
    ucoro::buffer_ring ring(*context, options);
    auto pair = make_stream_pair(*context);
    stream_outcome out;
    auto handle = context->spawn(stream_until_error(pair.ours, ring, out, park));
    context->block_on(cancel_stream_after_bytes(*context, handle, pair.peer.get(), out, park));
    CHECK(out.finished == 1);
    CHECK(out.error == std::errc::operation_canceled);
    CHECK(ucoro_test::as_text(out.bytes) == (park ? "hellomore" : "hello"));
    if (park) {
        CHECK(ring.private_receives() == 1);
    }
    context->run(); // the stream, dropped as the task unwound, ends its request
    CHECK(context->in_flight() == 0);
    CHECK(ring.available() == ring.count()); // every buffer is back in the ring
}

task<void> accept_until_error(ucoro::net::listener& server, stream_outcome& out, int& accepted) {
    auto connections = server.accept_multishot();
    for (int i = 0; i < 100; ++i) {
        auto [error, connection] = co_await connections.next();
        if (error) {
            out.error = error;
            break;
        }
        ++accepted;
    }
    ++out.finished;
}

task<void> connect_then_cancel(io_context& context, ucoro::net::listener& server,
                               task_handle& handle, const int& accepted) {
    auto [error, client] = co_await ucoro::net::connect(context, server.local_address());
    REQUIRE_FALSE(error);
    for (int i = 0; i < 1000 && accepted == 0; ++i) {
        co_await next_turn{context};
    }
    REQUIRE(accepted == 1); // the stream works, and now waits for the next connection
    co_await next_turn{context};
    handle.cancel();
    co_await handle.join();
}

TEST_CASE("cancelling a task suspended in accept_stream::next() ends it with operation_canceled") {
    const bool multishot = GENERATE(true, false);
    CAPTURE(multishot);
    ucoro::io_context_options options;
    options.multishot_accept = multishot;
    auto context = make_context(options);
    if (!context) {
        return;
    }
    ucoro::net::listener server(*context, ucoro::net::address::ipv4_loopback(0));
    stream_outcome out;
    int accepted = 0;
    auto handle = context->spawn(accept_until_error(server, out, accepted));
    context->block_on(connect_then_cancel(*context, server, handle, accepted));
    CHECK(out.finished == 1);
    CHECK(out.error == std::errc::operation_canceled);
    CHECK(context->in_flight() == 0);
}

// --- stop() ------------------------------------------------------------------------------

/// A coroutine that is not a task: what it awaits belongs to no cancellation scope.
struct bare_coroutine {
    struct promise_type {
        bare_coroutine get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
};

bare_coroutine bare_recv(ucoro::net::socket& sock, unwound& out) {
    std::array<std::byte, 16> buffer{};
    auto [error, n] = co_await sock.recv(buffer);
    (void)n;
    out.error = error;
    ++out.finished;
}

task<void> stop_after_turns(io_context& context, int turns) {
    for (int i = 0; i < turns; ++i) {
        co_await next_turn{context};
    }
    context.stop();
}

TEST_CASE("stop() cancels through the same scopes: deep chains, streams, and unscoped operations") {
    auto context = ucoro_test::make_ring_context();
    if (!context) {
        return;
    }
    ucoro::buffer_ring_options options;
    options.count = 8;
    options.buffer_size = 64;
    ucoro::buffer_ring ring(*context, options);
    auto deep = make_stream_pair(*context);
    auto streamed = make_stream_pair(*context);
    auto bare = make_stream_pair(*context);
    unwound deep_out;
    unwound bare_out;
    stream_outcome stream_out;
    lifetime_counts counts;
    auto deep_handle = context->spawn(recv_at_depth(deep.ours, 10, deep_out, counts));
    auto stream_handle = context->spawn(stream_until_error(streamed.ours, ring, stream_out, false));
    bare_recv(bare.ours, bare_out); // in flight from here, in no scope
    context->spawn(stop_after_turns(*context, 2));
    context->run();
    CHECK(deep_out.error == std::errc::operation_canceled);
    CHECK(stream_out.error == std::errc::operation_canceled);
    CHECK(bare_out.error == std::errc::operation_canceled);
    CHECK(deep_out.finished == 1);
    CHECK(stream_out.finished == 1);
    CHECK(bare_out.finished == 1);
    CHECK(counts.alive() == 0);
    CHECK(deep_handle.done());
    CHECK(stream_handle.done());
    CHECK_FALSE(context->stop_requested());
    CHECK(ring.available() == ring.count());

    // The stop is over: a task spawned now is not cancelled.
    ucoro_test::write_all(deep.peer.get(), ucoro_test::to_bytes("later"));
    std::vector<std::byte> got;
    std::error_code error;
    context->spawn(receive_one(deep.ours, got, error));
    context->run();
    CHECK_FALSE(error);
    CHECK(ucoro_test::as_text(got) == "later");
}

// --- A late cancel never hits an operation that reuses its target's address ------------

/// A recv whose storage the test places itself, so that a second one can be built at the
/// very address (the user_data) of the first.
class probe final : public ucoro::io_operation {
public:
    probe(io_context& context, int fd) noexcept : io_operation(context), m_fd(fd) {}
    void prepare(io_uring_sqe& sqe) noexcept override {
        io_uring_prep_recv(&sqe, m_fd, m_buffer.data(), m_buffer.size(), 0);
    }
    int await_resume() const noexcept { return result(); }

private:
    int m_fd;
    std::array<std::byte, 16> m_buffer{};
};

/// Requests the victim's cancellation at the moment its recv's CQE has been taken from the
/// ring but not yet dispatched: the state a cancel from a coroutine resumed earlier in the
/// same batch leaves. Records every cancel CQE (user_data 0).
struct cancel_when_target_completes final : ucoro::detail::fault_injector {
    std::uint64_t target = 0;
    task_handle* victim = nullptr;
    bool fired = false;
    std::vector<int> cancel_results;

    verdict on_completion(std::uint64_t user_data, int& result, std::uint32_t&) noexcept override {
        if (user_data == 0) {
            cancel_results.push_back(result);
        } else if (!fired && user_data == target && victim != nullptr) {
            fired = true;
            victim->cancel(); // queues IORING_OP_ASYNC_CANCEL naming `target`
        }
        return verdict::deliver;
    }
};

struct aba_state {
    alignas(probe) std::byte storage[sizeof(probe)];
    int victim_result = 1;
    int reuser_result = 1;
    bool reuse_submitted = false;
    bool control = false; // queue a cancel for the address after the reuse, by hand
};

task<void> victim(io_context& context, aba_state& state, int fd) {
    auto* first = new (state.storage) probe(context, fd);
    state.victim_result = co_await *first;
    first->~probe();
}

task<void> write_when_reused(io_context& context, aba_state& state, int peer) {
    for (int i = 0; i < 1000 && !state.reuse_submitted; ++i) {
        co_await next_turn{context};
    }
    REQUIRE(state.reuse_submitted);
    co_await next_turn{context}; // the reuse (and, in order, the cancel before it) submitted
    if (state.control) {
        // What a broken ordering would do: the cancel for the old address reaches the
        // kernel after the SQE that reuses it.
        io_uring_sqe* sqe = io_uring_get_sqe(&ucoro::detail::native_ring(context));
        REQUIRE(sqe != nullptr);
        io_uring_prep_cancel64(sqe, reinterpret_cast<std::uintptr_t>(state.storage), 0);
        io_uring_sqe_set_data64(sqe, 0);
        co_await next_turn{context};
    }
    ucoro_test::write_all(peer, ucoro_test::to_bytes("B"));
}

task<void> reuse_address(io_context& context, aba_state& state, task_handle& victim_handle,
                         int victim_peer, int reuser_fd) {
    co_await next_turn{context};
    co_await next_turn{context}; // the victim's recv is in the kernel
    ucoro_test::write_all(victim_peer, ucoro_test::to_bytes("A"));
    co_await victim_handle.join(); // resumes on the turn after it finished, before any submit
    auto* second = new (state.storage) probe(context, reuser_fd);
    REQUIRE(static_cast<void*>(second) == static_cast<void*>(state.storage));
    state.reuse_submitted = true;
    state.reuser_result = co_await *second;
    second->~probe();
}

TEST_CASE("a cancel still queued when its target completes never cancels a reuse of the address") {
    const unsigned sq_entries = GENERATE(1u, 64u); // 1: the reuse's SQE must flush the cancel
    const bool control = GENERATE(false, true);
    CAPTURE(sq_entries, control);
    ucoro::io_context_options options;
    options.sq_entries = sq_entries;
    auto context = make_context(options);
    if (!context) {
        return;
    }
    auto first = make_stream_pair(*context);
    auto second = make_stream_pair(*context);
    aba_state state;
    state.control = control;
    cancel_when_target_completes injector;
    injector.target = reinterpret_cast<std::uintptr_t>(state.storage);
    ucoro::detail::set_fault_injector(*context, &injector);
    auto victim_handle = context->spawn(victim(*context, state, first.ours.native_handle()));
    injector.victim = &victim_handle;
    context->spawn(write_when_reused(*context, state, second.peer.get()));
    context->block_on(reuse_address(*context, state, victim_handle, first.peer.get(),
                                    second.ours.native_handle()));
    ucoro::detail::set_fault_injector(*context, nullptr);

    CHECK(injector.fired);
    CHECK(state.victim_result == 1); // its data had arrived: the cancel came too late
    if (!control) {
        // The cancel reached the kernel before the reuse and found nothing there.
        REQUIRE(injector.cancel_results.size() == 1);
        CHECK(injector.cancel_results[0] == -ENOENT);
        CHECK(state.reuser_result == 1);
    } else {
        // The same cancel after the reuse does hit it: the test can tell the difference.
        CHECK(state.reuser_result == -ECANCELED);
    }
    CHECK(context->in_flight() == 0);
}

} // namespace
