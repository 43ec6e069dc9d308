// remote_context: callables posted from other threads, on both wake-up paths (MSG_RING and
// the eventfd fallback): per-poster order, nothing lost or run twice under contention, what
// happens to a post once the context is gone, exceptions, and run() with a handle out.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/context.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/remote_context.hpp"

namespace {

using ucoro::io_context_options;
using ucoro::remote_context;
using ucoro_test::make_context;

/// The options for one wake-up path, or nothing (after a SKIPPED warning) when this kernel
/// lacks it. The context is made to check: the probe decides.
std::unique_ptr<ucoro_test::test_context> context_for(bool msg_ring) {
    io_context_options options;
    options.msg_ring = msg_ring;
    auto context = make_context(options);
    if (context && context->features().msg_ring != msg_ring) {
        WARN("SKIPPED: IORING_OP_MSG_RING (Linux 5.18) is not available here");
        return nullptr;
    }
    return context;
}

const char* path_name(bool msg_ring) {
    return msg_ring ? "MSG_RING" : "eventfd";
}

} // namespace

TEST_CASE("remote_context: many posting threads, each poster's order kept, nothing lost or "
          "run twice") {
    for (const bool msg_ring : {true, false}) {
        SECTION(path_name(msg_ring)) {
            auto context = context_for(msg_ring);
            if (!context) {
                return;
            }
            constexpr int posters = 4;
            constexpr int per_poster = 20'000;
            // Touched only on the context's thread, by the callables.
            std::vector<int> next_expected(posters, 0);
            int out_of_order = 0;
            int received = 0;
            std::atomic<int> refused{0};

            context->hold();
            const remote_context remote = context->remote();
            std::vector<std::thread> threads;
            for (int p = 0; p < posters; ++p) {
                threads.emplace_back([&, p] {
                    for (int i = 0; i < per_poster; ++i) {
                        const bool accepted = remote.post([&, p, i] {
                            if (next_expected[p] != i) {
                                ++out_of_order;
                            }
                            next_expected[p] = i + 1;
                            ++received;
                        });
                        if (!accepted) {
                            ++refused;
                        }
                    }
                });
            }
            // A plain thread ends the wait once every poster is done: its release comes
            // after every message, so run() returns only when all of them ran.
            std::thread closer([&] {
                for (std::thread& t : threads) {
                    t.join();
                }
                remote.post([&] { context->release(); });
            });
            context->run();
            closer.join();
            CHECK(refused == 0);
            CHECK(out_of_order == 0);
            CHECK(received == posters * per_poster);
            for (int p = 0; p < posters; ++p) {
                CHECK(next_expected[p] == per_poster);
            }
        }
    }
}

TEST_CASE("remote_context: a context that is gone refuses the post and never runs it") {
    for (const bool msg_ring : {true, false}) {
        SECTION(path_name(msg_ring)) {
            auto context = context_for(msg_ring);
            if (!context) {
                return;
            }
            const remote_context remote = context->remote();
            context.reset();
            auto witness = std::make_shared<int>(0);
            bool ran = false;
            CHECK_FALSE(remote.post([&ran, witness] { ran = true; }));
            CHECK_FALSE(ran);
            CHECK(witness.use_count() == 1); // the refused callable was destroyed, not leaked
            CHECK_FALSE(remote_context{}.post([] {}));
        }
    }
}

TEST_CASE("remote_context: what was accepted but never reached a run() runs once in the "
          "destructor") {
    for (const bool msg_ring : {true, false}) {
        SECTION(path_name(msg_ring)) {
            auto context = context_for(msg_ring);
            if (!context) {
                return;
            }
            const remote_context remote = context->remote();
            int runs = 0;
            int accepted = 0; // Catch's macros stay on the test's thread
            std::thread poster([&] {
                for (int i = 0; i < 3; ++i) {
                    accepted += remote.post([&runs] { ++runs; }) ? 1 : 0;
                }
            });
            poster.join();
            CHECK(accepted == 3);
            CHECK(runs == 0);
            context.reset();
            CHECK(runs == 3);
        }
    }
}

TEST_CASE("remote_context: an exception from a posted callable goes to the context's handler "
          "and the next one still runs") {
    for (const bool msg_ring : {true, false}) {
        SECTION(path_name(msg_ring)) {
            auto context = context_for(msg_ring);
            if (!context) {
                return;
            }
            std::string seen;
            context->set_unhandled_exception_handler([&seen](std::exception_ptr error) {
                try {
                    std::rethrow_exception(error);
                } catch (const std::runtime_error& e) {
                    seen = e.what();
                }
            });
            context->hold();
            const remote_context remote = context->remote();
            bool after = false;
            std::thread poster([&] {
                remote.post([] { throw std::runtime_error("from a posted callable"); });
                remote.post([&] {
                    after = true;
                    context->release();
                });
            });
            context->io_context::run();
            poster.join();
            CHECK(seen == "from a posted callable");
            CHECK(after);
            CHECK(context->stats().unhandled_exceptions == 1);
        }
    }
}

TEST_CASE("remote_context: handing out a handle does not keep run() alive, a hold does until "
          "released or stopped") {
    for (const bool msg_ring : {true, false}) {
        SECTION(path_name(msg_ring)) {
            auto context = context_for(msg_ring);
            if (!context) {
                return;
            }
            const remote_context remote = context->remote();
            context->run(); // returns at once: nothing to do, nothing held
            CHECK(context->in_flight() == 0);

            context->hold();
            std::thread stopper([&] { remote.post([&] { context->stop(); }); });
            context->run(); // returns once the posted stop() ran
            stopper.join();
            context->release();
            context->run();
        }
    }
}
