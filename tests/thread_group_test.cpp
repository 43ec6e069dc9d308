// thread_group: one io_context per thread: start, setup, finish, stop, join, failures,
// pinning, and tasks on different threads waking each other through remote_context.
#include <catch2/catch.hpp>

#include <sched.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "ucoro/async_event.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
#include "ucoro/thread_group.hpp"

namespace {

using namespace std::chrono_literals;
using ucoro::io_context;
using ucoro::task;
using ucoro::thread_group;
using ucoro::thread_group_options;

/// Whether io_uring can be set up here at all; if not, a WARN with SKIPPED.
bool io_uring_available() {
    try {
        io_context probe;
        return true;
    } catch (const std::system_error& e) {
        WARN("SKIPPED: io_uring is not available here: " << e.what());
        return false;
    }
}

thread_group_options with_threads(unsigned threads) {
    thread_group_options options;
    options.threads = threads;
    return options;
}

task<void> sleep_until_cancelled(io_context& context, std::atomic<int>& cancelled) {
    const std::error_code error = co_await ucoro::sleep_for(context, 1h);
    if (error == std::errc::operation_canceled) {
        ++cancelled;
    }
}

} // namespace

TEST_CASE("thread_group: each thread runs its own context and finish lets idle ones end") {
    if (!io_uring_available()) {
        return;
    }
    std::mutex mutex;
    std::set<std::thread::id> threads;
    std::set<unsigned> indexes;
    std::set<const io_context*> contexts;
    thread_group group(with_threads(4), [&](io_context& context, unsigned index) {
        std::lock_guard lock(mutex);
        threads.insert(std::this_thread::get_id());
        indexes.insert(index);
        contexts.insert(&context);
    });
    CHECK(group.size() == 4);
    CHECK(threads.size() == 4);
    CHECK(threads.count(std::this_thread::get_id()) == 0);
    CHECK(indexes == std::set<unsigned>{0, 1, 2, 3});
    CHECK(contexts.size() == 4);
    group.finish();
    group.finish(); // twice is harmless
    group.join();
    // Every context is gone now: posts are refused, not lost.
    for (unsigned i = 0; i < group.size(); ++i) {
        CHECK_FALSE(group.context(i).post([] {}));
    }
}

TEST_CASE("thread_group: stop cancels what each thread has in flight and join returns") {
    if (!io_uring_available()) {
        return;
    }
    std::atomic<int> cancelled{0};
    thread_group group(with_threads(3), [&](io_context& context, unsigned) {
        context.spawn(sleep_until_cancelled(context, cancelled));
    });
    group.stop();
    group.join();
    CHECK(cancelled == 3);
}

TEST_CASE("thread_group: finish waits for the work each thread still has") {
    if (!io_uring_available()) {
        return;
    }
    std::atomic<int> done{0};
    thread_group group(with_threads(2), [&](io_context& context, unsigned) {
        context.spawn([](io_context& c, std::atomic<int>& counter) -> task<void> {
            (void)co_await ucoro::sleep_for(c, 20ms);
            ++counter;
        }(context, done));
    });
    group.finish();
    group.join();
    CHECK(done == 2);
}

TEST_CASE("thread_group: a task on one thread wakes a task on another through a posted set()") {
    if (!io_uring_available()) {
        return;
    }
    for (const bool msg_ring : {true, false}) {
        SECTION(msg_ring ? "MSG_RING where the kernel has it" : "eventfd") {
            constexpr int rounds = 1000;
            // Thread 0 and thread 1 pass a token back and forth: each side waits on its own
            // async_event, and the other side sets it by posting to its context.
            std::vector<std::unique_ptr<ucoro::async_event>> events(2);
            std::atomic<int> finished{0};
            std::vector<int> passes(2, 0);
            thread_group* group_ptr = nullptr;
            std::atomic<bool> group_ready{false};
            thread_group_options options = with_threads(2);
            options.context.msg_ring = msg_ring; // both wake-up paths
            thread_group group(options, [&](io_context& context, unsigned index) {
                events[index] = std::make_unique<ucoro::async_event>(context);
                context.spawn([](unsigned me, std::vector<std::unique_ptr<ucoro::async_event>>& ev,
                                 std::vector<int>& count, thread_group*& group_of,
                                 std::atomic<bool>& ready, std::atomic<int>& ended) -> task<void> {
                    const unsigned other = 1 - me;
                    for (int round = 0; round < rounds; ++round) {
                        if (!(me == 0 && round == 0)) {
                            const std::error_code error = co_await ev[me]->wait();
                            if (error) {
                                throw std::system_error(error, "wait");
                            }
                            ev[me]->reset();
                        }
                        ++count[me];
                        while (!ready.load()) {
                            std::this_thread::yield(); // only before the first pass
                        }
                        ucoro::async_event* target = ev[other].get();
                        if (!group_of->context(other).post([target] { target->set(); })) {
                            throw std::runtime_error("post refused");
                        }
                    }
                    if (++ended == 2) {
                        group_of->finish(); // the threads wait for each other's posts until then
                    }
                }(index, events, passes, group_ptr, group_ready, finished));
            });
            group_ptr = &group;
            group_ready = true;
            group.join();
            CHECK(finished == 2);
            CHECK(passes[0] == rounds);
            CHECK(passes[1] == rounds);
            events.clear();
        }
    }
}

TEST_CASE("thread_group: a setup that throws ends the group and the constructor rethrows it") {
    if (!io_uring_available()) {
        return;
    }
    std::atomic<int> cancelled{0};
    auto start = [&] {
        thread_group group(with_threads(3), [&](io_context& context, unsigned index) {
            if (index == 1) {
                throw std::runtime_error("setup of thread 1 failed");
            }
            context.spawn(sleep_until_cancelled(context, cancelled));
        });
    };
    CHECK_THROWS_WITH(start(), "setup of thread 1 failed");
    CHECK(cancelled == 2); // the others were stopped, not left running
}

TEST_CASE("thread_group: by default one thread per CPU this process may use, and pinning puts "
          "each on one") {
    if (!io_uring_available()) {
        return;
    }
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    REQUIRE(::sched_getaffinity(0, sizeof allowed, &allowed) == 0);
    CHECK(thread_group::available_cpus() == static_cast<unsigned>(CPU_COUNT(&allowed)));

    thread_group_options options;
    options.pin_to_cpus = true;
    std::mutex mutex;
    std::vector<int> cpus_per_thread; // -1: sched_getaffinity failed (no Catch off-thread)
    thread_group group(options, [&](io_context&, unsigned) {
        cpu_set_t mine;
        CPU_ZERO(&mine);
        const int count = ::sched_getaffinity(0, sizeof mine, &mine) == 0 ? CPU_COUNT(&mine) : -1;
        std::lock_guard lock(mutex);
        cpus_per_thread.push_back(count);
    });
    CHECK(group.size() == thread_group::available_cpus());
    CHECK(cpus_per_thread == std::vector<int>(group.size(), 1));
    group.finish();
    group.join();
}
