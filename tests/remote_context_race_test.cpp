// remote_context under hostile timing (run under the tsan preset): posters racing the
// target context's destruction, a context posting to itself (from its loop and from a
// posted callable), a post from a callable that the destructor runs, and a thread_group
// whose task throws on one thread. Each callable counts its runs and its destructions, so
// a callable lost, run twice or leaked fails the count.
#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "support/context.hpp"
#include "ucoro/detail/fault_injection.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/remote_context.hpp"
#include "ucoro/task.hpp"
#include "ucoro/thread_group.hpp"

namespace {

using ucoro::io_context_options;
using ucoro::remote_context;

const char* path_name(bool msg_ring) {
    return msg_ring ? "MSG_RING" : "eventfd";
}

/// Counts, from any thread, how often callables ran and were destroyed.
struct tally {
    std::atomic<long> runs{0};
    std::atomic<long> destroyed{0};
};

/// A callable that says when it runs and when it goes (moved-from copies say nothing).
class counted {
public:
    explicit counted(tally& t) : m_tally(&t) {}
    counted(counted&& other) noexcept : m_tally(other.m_tally) { other.m_tally = nullptr; }
    counted(const counted&) = delete;
    counted& operator=(const counted&) = delete;
    counted& operator=(counted&&) = delete;
    ~counted() {
        if (m_tally != nullptr) {
            m_tally->destroyed.fetch_add(1, std::memory_order_relaxed);
        }
    }
    void operator()() const { m_tally->runs.fetch_add(1, std::memory_order_relaxed); }

private:
    tally* m_tally;
};

} // namespace

TEST_CASE("remote_context: posters racing the context's destruction, every accepted "
          "callable runs once and every callable is destroyed once") {
    for (const bool msg_ring : {true, false}) {
        SECTION(path_name(msg_ring)) {
            io_context_options options;
            options.msg_ring = msg_ring;
            if (!ucoro_test::make_context(options)) {
                return; // make_context said SKIPPED
            }
            for (int round = 0; round < 20; ++round) {
                tally counts;
                std::atomic<long> accepted{0};
                std::atomic<long> refused{0};
                std::atomic<ucoro::io_context*> target{nullptr};
                remote_context remote;
                // The context lives on its own thread, runs held, and is released (so
                // destroyed) while the posters are still posting.
                std::thread owner([&] {
                    ucoro::io_context context(options);
                    context.hold();
                    remote = context.remote();
                    target.store(&context);
                    context.run();
                });
                while (target.load() == nullptr) {
                    std::this_thread::yield();
                }
                std::vector<std::thread> posters;
                for (int p = 0; p < 3; ++p) {
                    posters.emplace_back([&] {
                        // Until the first refusal: the context's destructor has begun.
                        for (long i = 0; i < 1'000'000; ++i) {
                            if (!remote.post(counted(counts))) {
                                refused.fetch_add(1);
                                return;
                            }
                            if (accepted.fetch_add(1) == 200) {
                                ucoro::io_context* context = target.load();
                                (void)remote.post([context] { context->release(); });
                            }
                        }
                    });
                }
                for (std::thread& poster : posters) {
                    poster.join();
                }
                owner.join();
                CHECK(refused.load() == 3);
                CHECK(counts.runs.load() == accepted.load());
                CHECK(counts.destroyed.load() == accepted.load() + refused.load());
            }
        }
    }
}

TEST_CASE("remote_context: a context posts to itself, from its loop and from inside a posted "
          "callable, in order") {
    for (const bool msg_ring : {true, false}) {
        SECTION(path_name(msg_ring)) {
            io_context_options options;
            options.msg_ring = msg_ring;
            auto context = ucoro_test::make_context(options);
            if (!context) {
                return;
            }
            const remote_context remote = context->remote();
            context->hold();
            constexpr int chain = 2'000;
            std::vector<int> order;
            // Each link posts the next from inside the inbox's run, on the context's thread.
            std::function<void(int)> link = [&](int i) {
                order.push_back(i);
                if (i + 1 < chain) {
                    if (!remote.post([&link, i] { link(i + 1); })) {
                        order.push_back(-1);
                    }
                } else {
                    context->release();
                }
            };
            REQUIRE(remote.post([&link] { link(0); }));
            context->run();
            REQUIRE(order.size() == static_cast<std::size_t>(chain));
            bool in_order = true;
            for (int i = 0; i < chain; ++i) {
                in_order = in_order && order[static_cast<std::size_t>(i)] == i;
            }
            CHECK(in_order);
        }
    }
}

TEST_CASE("remote_context: a callable run by the destructor that posts again is refused, and "
          "the refused callable is destroyed, not run") {
    for (const bool msg_ring : {true, false}) {
        SECTION(path_name(msg_ring)) {
            io_context_options options;
            options.msg_ring = msg_ring;
            auto context = ucoro_test::make_context(options);
            if (!context) {
                return;
            }
            const remote_context remote = context->remote();
            tally counts;
            bool second_accepted = true;
            REQUIRE(remote.post([&] { second_accepted = remote.post(counted(counts)); }));
            context.reset(); // runs the first; the second must be refused
            CHECK_FALSE(second_accepted);
            CHECK(counts.runs.load() == 0);
            CHECK(counts.destroyed.load() == 1);
        }
    }
}

TEST_CASE("thread_group: a task that throws on one thread goes to that context's handler, the "
          "others keep serving, finish and join end the group") {
    std::atomic<int> handled{0};
    std::atomic<int> posted_runs{0};
    std::atomic<int> posted_accepted{0};
    ucoro::thread_group_options options;
    options.threads = 3;
    ucoro::thread_group group(options, [&](ucoro::io_context& context, unsigned index) {
        context.set_unhandled_exception_handler([&](std::exception_ptr) { handled.fetch_add(1); });
        if (index == 1) {
            context.spawn([]() -> ucoro::task<void> {
                throw std::runtime_error("thrown on thread 1");
                co_return;
            }());
        }
    });
    // Every thread, the failing one included, still runs what is posted to it.
    for (unsigned i = 0; i < group.size(); ++i) {
        for (unsigned j = 0; j < group.size(); ++j) {
            // The inner post may reach a thread whose run() has returned: it runs in that
            // context's destructor then, or is refused once the destructor has begun.
            (void)group.context(i).post([&group, &posted_runs, &posted_accepted, j] {
                if (group.context(j).post([&posted_runs] { posted_runs.fetch_add(1); })) {
                    posted_accepted.fetch_add(1);
                }
            });
        }
    }
    group.finish();
    group.join();
    CHECK(handled.load() == 1);
    CHECK(posted_accepted.load() > 0);
    CHECK(posted_runs.load() == posted_accepted.load());
}

namespace {

/// Makes every io_uring_enter of its context fail, so that run() throws at once.
class failing_enter final : public ucoro::detail::fault_injector {
public:
    int before_enter() noexcept override { return -EFAULT; }
};

} // namespace

TEST_CASE("thread_group: a run() that throws at once, while the constructor still checks the "
          "setups, stops the others and join rethrows it") {
    for (int round = 0; round < 20; ++round) {
        failing_enter injector;
        ucoro::thread_group_options options;
        options.threads = 3;
        std::optional<ucoro::thread_group> group;
        group.emplace(options, [&injector](ucoro::io_context& context, unsigned index) {
            if (index == 0) {
                ucoro::detail::set_fault_injector(context, &injector);
            }
        });
        bool rethrown = false;
        try {
            group->join();
        } catch (const std::system_error& e) {
            rethrown = e.code() == std::errc::bad_address;
        }
        CHECK(rethrown);
        group.reset();
    }
}
