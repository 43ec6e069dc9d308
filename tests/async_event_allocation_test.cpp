// async_event allocates nothing per wait: the waiter's node is the awaiter, in the waiting
// coroutine's frame. The global operator new is replaced in this test program only, to
// count every allocation while two coroutines hand a turn back and forth through two
// events ten thousand times.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <system_error>

#include "support/context.hpp"
#include "ucoro/async_event.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/task.hpp"

namespace {

bool g_counting = false;
std::size_t g_allocations = 0;

void* allocate(std::size_t size, std::size_t alignment) {
    if (g_counting) {
        ++g_allocations;
    }
    if (size == 0) {
        size = 1;
    }
    void* memory =
        alignment <= alignof(std::max_align_t)
            ? std::malloc(size)
            : std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
    if (memory == nullptr) {
        throw std::bad_alloc();
    }
    return memory;
}

// Not inlined: GCC would otherwise see free() meet operator new's pointer and warn.
[[gnu::noinline]] void deallocate(void* memory) noexcept {
    std::free(memory);
}

} // namespace

// Every form, so that none falls through to a sanitizer's own operator new, whose memory
// our delete would then free with a mismatched free().
void* operator new(std::size_t size) {
    return allocate(size, alignof(std::max_align_t));
}
void* operator new[](std::size_t size) {
    return allocate(size, alignof(std::max_align_t));
}
void* operator new(std::size_t size, std::align_val_t alignment) {
    return allocate(size, static_cast<std::size_t>(alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
    return allocate(size, static_cast<std::size_t>(alignment));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    try {
        return allocate(size, alignof(std::max_align_t));
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
    try {
        return allocate(size, alignof(std::max_align_t));
    } catch (...) {
        return nullptr;
    }
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
    try {
        return allocate(size, static_cast<std::size_t>(alignment));
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
    try {
        return allocate(size, static_cast<std::size_t>(alignment));
    } catch (...) {
        return nullptr;
    }
}
void operator delete(void* memory) noexcept {
    deallocate(memory);
}
void operator delete[](void* memory) noexcept {
    deallocate(memory);
}
void operator delete(void* memory, std::size_t) noexcept {
    deallocate(memory);
}
void operator delete[](void* memory, std::size_t) noexcept {
    deallocate(memory);
}
void operator delete(void* memory, std::align_val_t) noexcept {
    deallocate(memory);
}
void operator delete[](void* memory, std::align_val_t) noexcept {
    deallocate(memory);
}
void operator delete(void* memory, std::size_t, std::align_val_t) noexcept {
    deallocate(memory);
}
void operator delete[](void* memory, std::size_t, std::align_val_t) noexcept {
    deallocate(memory);
}
void operator delete(void* memory, const std::nothrow_t&) noexcept {
    deallocate(memory);
}
void operator delete[](void* memory, const std::nothrow_t&) noexcept {
    deallocate(memory);
}
void operator delete(void* memory, std::align_val_t, const std::nothrow_t&) noexcept {
    deallocate(memory);
}
void operator delete[](void* memory, std::align_val_t, const std::nothrow_t&) noexcept {
    deallocate(memory);
}

namespace {

using ucoro::async_event;
using ucoro::task;

struct exchange {
    async_event ping;
    async_event pong;
    std::size_t rounds;
    std::size_t counted_from; // rounds before this one warm up the ready queue
    std::size_t allocations = 0;
    std::size_t failures = 0;
};

task<void> pinger(exchange& x) {
    for (std::size_t i = 0; i < x.rounds; ++i) {
        if (i == x.counted_from) {
            g_allocations = 0;
            g_counting = true;
        }
        x.ping.set();
        if (co_await x.pong.wait()) {
            ++x.failures;
        }
        x.pong.reset();
    }
    g_counting = false;
    x.allocations = g_allocations;
}

task<void> ponger(exchange& x) {
    for (std::size_t i = 0; i < x.rounds; ++i) {
        if (co_await x.ping.wait()) {
            ++x.failures;
        }
        x.ping.reset();
        x.pong.set();
    }
}

TEST_CASE("async_event: waiting and setting allocate nothing per wait") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    exchange x{async_event(*context), async_event(*context), 10'000, 1'000};
    context->spawn(ponger(x));
    context->spawn(pinger(x));
    context->run();
    CHECK(x.failures == 0);
    INFO(x.allocations << " allocations in " << x.rounds - x.counted_from << " rounds");
    // What remains is io_context::post's queue, a std::deque that takes a new block every
    // few dozen pushes as it cycles; a wait that allocated would show one or more per round.
    CHECK(x.allocations < (x.rounds - x.counted_from) / 16);
}

} // namespace
