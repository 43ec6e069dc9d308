// A randomized, seeded soak through the fault seam: random byte streams through in-process
// echo connections (recv + send_all, and recv_stream + send_all) while the seam injects
// EINTR from io_uring_enter, short sends and reads, and resets, and a chaos task cancels
// random connections' tasks through their handles (real ECANCELED races). Every connection
// that saw no error must get exactly its bytes back; every submission must complete exactly
// once; every suspended await must be resumed exactly once.
//
// The seed is printed on failure; UCORO_SOAK_SEED=<n> replays one run.
#include <liburing.h>
#include <signal.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <random>
#include <span>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "support/loopback.hpp"
#include "ucoro/buffer_ring.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/task_handle.hpp"
#include "ucoro/when_all.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro::task_handle;

// --- Counting resumes ----------------------------------------------------------------------

struct resume_tally {
    long suspended = 0;
    long resumed = 0;
    long resumed_twice = 0;
};

/// Wraps an awaitable and counts: a suspension, and the resume that follows it. A
/// coroutine resumed twice calls await_resume twice on the same awaiter; one never resumed
/// leaves suspended > resumed. The promise type is passed through, so scopes still work.
template <typename A>
struct tallied {
    A inner;
    resume_tally* tally;
    bool suspended = false;
    bool resumed = false;

    bool await_ready() { return inner.await_ready(); }
    template <typename Promise>
    auto await_suspend(std::coroutine_handle<Promise> waiter) {
        suspended = true;
        ++tally->suspended;
        return inner.await_suspend(waiter);
    }
    decltype(auto) await_resume() {
        if (suspended) {
            if (resumed) {
                ++tally->resumed_twice;
            }
            resumed = true;
            ++tally->resumed;
        }
        return inner.await_resume();
    }
};
template <typename A>
tallied(A&&, resume_tally*) -> tallied<A>;

// --- The faults ----------------------------------------------------------------------------

/// Injects faults at random, and checks every submission gets exactly one final CQE.
struct chaos_injector final : ucoro::detail::fault_injector {
    explicit chaos_injector(std::uint64_t seed) : rng(seed) {}

    std::mt19937_64 rng;
    bool active = false;
    std::unordered_map<std::uint64_t, long> outstanding; // submissions minus final CQEs
    std::unordered_map<std::uint64_t, std::uint8_t> opcode;
    long completed_twice = 0;
    long eintr = 0;
    long short_sends = 0;
    long short_recvs = 0;
    long resets = 0;

    bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }

    int before_enter() noexcept override {
        if (active && chance(0.05)) {
            ++eintr;
            return -EINTR; // the loop must simply enter again
        }
        return 0;
    }

    void on_submit(io_uring_sqe& sqe) noexcept override {
        ++outstanding[sqe.user_data];
        opcode[sqe.user_data] = sqe.opcode;
        if (!active || sqe.len <= 1 || !chance(0.3)) {
            return;
        }
        if (sqe.opcode == IORING_OP_SEND) {
            sqe.len = 1 + static_cast<unsigned>(rng() % (sqe.len - 1)); // a short send
            ++short_sends;
        } else if (sqe.opcode == IORING_OP_RECV && (sqe.flags & IOSQE_BUFFER_SELECT) == 0) {
            sqe.len = 1 + static_cast<unsigned>(rng() % (sqe.len - 1)); // a short read
            ++short_recvs;
        }
    }

    verdict on_completion(std::uint64_t user_data, int& result,
                          std::uint32_t& flags) noexcept override {
        if (user_data == 0) {
            return verdict::deliver; // a cancel's own CQE
        }
        if ((flags & IORING_CQE_F_MORE) == 0 && --outstanding[user_data] < 0) {
            ++completed_twice;
        }
        const auto op = opcode[user_data];
        if (active && result >= 0 && (op == IORING_OP_SEND || op == IORING_OP_RECV) &&
            chance(0.001)) {
            result = -ECONNRESET; // the connection is reset under this operation
            ++resets;
        }
        return verdict::deliver;
    }
};

// --- The connections -----------------------------------------------------------------------

struct connection_state {
    std::vector<std::byte> sent;
    std::vector<std::size_t> chunks; // sizes of the client's send_all calls
    std::vector<std::byte> received;
    std::error_code client_error;
    std::error_code server_error;
    bool use_stream = false;
    int client_finished = 0;
    int server_finished = 0;
};

struct soak {
    io_context& context;
    resume_tally tally{};
    ucoro::buffer_ring* ring = nullptr;
    std::size_t clients_left = 0;
    bool stuck = false;
};

void end_connection(ucoro::net::socket& sock) {
    ::shutdown(sock.native_handle(), SHUT_RDWR); // the other side sees the end too
}

task<void> echo_plain(soak& s, ucoro::net::socket& sock, connection_state& c) {
    std::array<std::byte, 4096> buffer{};
    for (std::size_t round = 0; round <= c.sent.size(); ++round) { // >= 1 byte per round
        auto [error, n] = co_await tallied{sock.recv(buffer), &s.tally};
        if (error) {
            c.server_error = error;
            break;
        }
        if (n == 0) {
            break;
        }
        auto [send_error, sent] =
            co_await tallied{sock.send_all(std::span(buffer).first(n)), &s.tally};
        (void)sent;
        if (send_error) {
            c.server_error = send_error;
            break;
        }
    }
    if (c.server_error) {
        end_connection(sock);
    } else {
        ::shutdown(sock.native_handle(), SHUT_WR); // end of the echo
    }
    ++c.server_finished;
}

task<void> echo_stream(soak& s, ucoro::net::socket& sock, connection_state& c) {
    auto stream = sock.recv_multishot(*s.ring);
    for (std::size_t round = 0; round <= c.sent.size(); ++round) {
        auto [error, buffer] = co_await tallied{stream.next(), &s.tally};
        if (error) {
            c.server_error = error;
            break;
        }
        if (buffer.empty()) {
            break;
        }
        auto [send_error, sent] = co_await tallied{sock.send_all(buffer.bytes()), &s.tally};
        (void)sent;
        if (send_error) {
            c.server_error = send_error;
            break;
        }
    }
    if (c.server_error) {
        end_connection(sock);
    } else {
        ::shutdown(sock.native_handle(), SHUT_WR);
    }
    ++c.server_finished;
}

task<void> client_send(soak& s, ucoro::net::socket& sock, connection_state& c) {
    std::size_t offset = 0;
    for (const std::size_t chunk : c.chunks) {
        auto [error, sent] = co_await tallied{
            sock.send_all(std::span<const std::byte>(c.sent).subspan(offset, chunk)), &s.tally};
        (void)sent;
        if (error) {
            c.client_error = error;
            end_connection(sock);
            co_return;
        }
        offset += chunk;
    }
    ::shutdown(sock.native_handle(), SHUT_WR); // the server's recv sees the end
}

task<void> client_receive(soak& s, ucoro::net::socket& sock, connection_state& c) {
    std::array<std::byte, 4096> buffer{};
    for (std::size_t round = 0; round <= c.sent.size() + 1; ++round) {
        auto [error, n] = co_await tallied{sock.recv(buffer), &s.tally};
        if (error) {
            c.client_error = error;
            end_connection(sock);
            break;
        }
        if (n == 0) {
            break;
        }
        c.received.insert(c.received.end(), buffer.begin(),
                          buffer.begin() + static_cast<std::ptrdiff_t>(n));
    }
}

task<void> client(soak& s, ucoro::net::socket& sock, connection_state& c) {
    co_await ucoro::when_all(client_send(s, sock, c), client_receive(s, sock, c));
    ++c.client_finished;
    --s.clients_left;
}

/// Cancels random tasks (servers and clients) while the streams flow: real cancels that
/// race with completions. Bounded: gives up, and stops the context, after 20,000 rounds.
task<void> chaos(soak& s, std::vector<task_handle>& handles, std::uint64_t seed, long& cancels) {
    std::mt19937_64 rng(seed);
    for (int round = 0; round < 20000 && s.clients_left > 0; ++round) {
        const auto slept = co_await ucoro::sleep_for(s.context, 100us); // pacing only
        (void)slept;
        if (std::uniform_int_distribution<int>(0, 9)(rng) == 0) {
            handles[rng() % handles.size()].cancel();
            ++cancels;
        }
    }
    if (s.clients_left > 0) {
        s.stuck = true;
        s.context.stop();
    }
}

task<void> run_round(soak& s, chaos_injector& faults, ucoro::net::listener& server,
                     std::vector<connection_state>& connections, std::uint64_t seed,
                     long& cancels) {
    std::vector<ucoro_test::connected_pair> pairs;
    for (std::size_t i = 0; i < connections.size(); ++i) {
        auto pair = co_await ucoro_test::connect_pair(s.context, server);
        pairs.push_back(std::move(pair));
    }
    faults.active = true;
    std::vector<task_handle> handles;
    s.clients_left = connections.size();
    for (std::size_t i = 0; i < connections.size(); ++i) {
        auto& c = connections[i];
        handles.push_back(c.use_stream ? s.context.spawn(echo_stream(s, pairs[i].server, c))
                                       : s.context.spawn(echo_plain(s, pairs[i].server, c)));
        handles.push_back(s.context.spawn(client(s, pairs[i].client, c)));
    }
    auto chaos_handle = s.context.spawn(chaos(s, handles, seed, cancels));
    for (auto& handle : handles) {
        co_await handle.join();
    }
    co_await chaos_handle.join();
    faults.active = false;
}

std::uint64_t soak_seed() {
    if (const char* text = std::getenv("UCORO_SOAK_SEED")) {
        return std::strtoull(text, nullptr, 10);
    }
    return std::random_device{}() * 0x100000000ull + std::random_device{}();
}

TEST_CASE("soak: random streams through echo connections survive injected faults byte for "
          "byte") {
    const std::uint64_t seed = soak_seed();
    CAPTURE(seed);              // replay with UCORO_SOAK_SEED=<seed>
    ::signal(SIGPIPE, SIG_IGN); // a send into a reset connection must fail, not kill us

    ucoro::io_context_options options;
    options.sq_entries = 16; // small: full SQs are flushed mid-turn too
    auto context = ucoro_test::make_context(options);
    if (!context) {
        return;
    }
    const bool rings = ucoro::buffer_ring::is_supported(*context);
    CAPTURE(rings);
    std::optional<ucoro::buffer_ring> ring;
    if (rings) {
        ucoro::buffer_ring_options ring_options;
        ring_options.count = 64;
        ring_options.buffer_size = 2048;
        ring.emplace(*context, ring_options);
    }
    chaos_injector faults(seed);
    ucoro::detail::set_fault_injector(*context, &faults);
    soak s{*context};
    s.ring = rings ? &*ring : nullptr;
    ucoro::net::listener server(*context, ucoro::net::address::ipv4_loopback(0));

    std::mt19937_64 rng(seed ^ 0x5eed);
    long cancels = 0;
    std::size_t checked = 0;
    std::size_t survived = 0;
    std::size_t bytes = 0;
    for (int round = 0; round < 16; ++round) {
        std::vector<connection_state> connections(24);
        for (std::size_t i = 0; i < connections.size(); ++i) {
            auto& c = connections[i];
            c.use_stream = rings && i % 2 == 1;
            const std::size_t size = 1 + rng() % (48 * 1024);
            c.sent = ucoro_test::make_pattern(size, static_cast<std::uint32_t>(rng()));
            for (std::size_t left = size; left > 0;) {
                const std::size_t chunk = std::min<std::size_t>(left, 1 + rng() % 8192);
                c.chunks.push_back(chunk);
                left -= chunk;
            }
        }
        context->block_on(run_round(s, faults, server, connections, rng(), cancels));
        REQUIRE_FALSE(s.stuck);
        for (std::size_t i = 0; i < connections.size(); ++i) {
            const auto& c = connections[i];
            CAPTURE(round, i, c.use_stream, c.client_error.message(), c.server_error.message());
            ++checked;
            CHECK(c.client_finished == 1);
            CHECK(c.server_finished == 1);
            if (!c.client_error && !c.server_error) {
                ++survived;
                bytes += c.sent.size();
                REQUIRE(c.received.size() == c.sent.size());
                CHECK(std::equal(c.received.begin(), c.received.end(), c.sent.begin()));
            }
        }
    }
    ucoro::detail::set_fault_injector(*context, nullptr);

    INFO("eintr " << faults.eintr << ", short sends " << faults.short_sends << ", short reads "
                  << faults.short_recvs << ", resets " << faults.resets << ", cancels " << cancels
                  << ", survived " << survived << "/" << checked << ", " << bytes << " bytes");
    CHECK(survived > 0);
    CHECK(faults.eintr > 0);
    CHECK(faults.short_sends > 0);
    // Every await that suspended was resumed exactly once.
    CHECK(s.tally.resumed_twice == 0);
    CHECK(s.tally.suspended == s.tally.resumed);
    // Every submission had exactly one final CQE.
    CHECK(faults.completed_twice == 0);
    long never_completed = 0;
    for (const auto& [user_data, count] : faults.outstanding) {
        never_completed += count != 0 ? 1 : 0;
    }
    CHECK(never_completed == 0);
    CHECK(context->in_flight() == 0);
    if (ring) {
        CHECK(ring->available() == ring->count());
    }
}

} // namespace
