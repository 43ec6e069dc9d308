// Counting every heap allocation of a test program: the global operator new and delete,
// every form, replaced. Include it in exactly one file of a test program (each *_test.cpp
// is a program of its own): replacement functions are defined once per program.
// g_counting switches the count on; g_allocations is the count.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

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
