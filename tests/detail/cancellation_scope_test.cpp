// cancellation_scope and the operation registered with it: whichever goes first, the other
// is not left pointing at it.
#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <new>
#include <optional>

#include "ucoro/detail/cancellation_scope.hpp"
#include "ucoro/detail/operation.hpp"

namespace {

using ucoro::detail::cancellation_scope;

// An operation that never reaches a ring: it only counts the cancels a scope sends it.
class probe final : public ucoro::detail::operation {
public:
    explicit probe(int& cancels) noexcept : operation(nullptr), m_cancels(&cancels) {}
    void prepare(io_uring_sqe& /*sqe*/) noexcept override {}
    void complete(int /*result*/, std::uint32_t /*flags*/) noexcept override {}
    void cancel_from_scope() override { ++*m_cancels; }

private:
    int* m_cancels;
};

} // namespace

TEST_CASE("a scope cancels the operation registered with it", "[cancellation_scope]") {
    int cancels = 0;
    probe op(cancels);
    cancellation_scope scope;
    scope.enter(op);
    CHECK(op.registered_scope() == &scope);
    scope.request();
    CHECK(cancels == 1);
    scope.leave(op);
    CHECK(op.registered_scope() == nullptr);
}

TEST_CASE("an operation destroyed while registered is not cancelled through its old address",
          "[cancellation_scope]") {
    // The multishot stream's release() used to free the operation with the scope still
    // pointing at it; a later request then reached whatever lived at that address next.
    alignas(probe) unsigned char storage[sizeof(probe)];
    int first_cancels = 0;
    int second_cancels = 0;
    cancellation_scope scope;
    {
        auto* first = ::new (static_cast<void*>(storage)) probe(first_cancels);
        scope.enter(*first);
        first->~probe();
    }
    auto* second = ::new (static_cast<void*>(storage)) probe(second_cancels); // same address
    scope.request();
    CHECK(second_cancels == 0);
    CHECK(first_cancels == 0);
    second->~probe();
}

TEST_CASE("a scope destroyed first unlinks its operation", "[cancellation_scope]") {
    int cancels = 0;
    probe op(cancels);
    {
        std::optional<cancellation_scope> scope(std::in_place);
        scope->enter(op);
        CHECK(op.registered_scope() == &*scope);
        scope.reset(); // e.g. a spawned task's promise, destroyed before the frames it awaits
    }
    CHECK(op.registered_scope() == nullptr); // so ~operation does not leave a dead scope
}

TEST_CASE("entering another scope leaves the first", "[cancellation_scope]") {
    int cancels = 0;
    probe op(cancels);
    cancellation_scope first;
    cancellation_scope second;
    first.enter(op);
    second.enter(op);
    CHECK(op.registered_scope() == &second);
    first.request();
    CHECK(cancels == 0);
    second.request();
    CHECK(cancels == 1);
}
