// A seam for tests: make the ring fail, or bend completions, on purpose.
#pragma once

#include <cstdint>

struct io_uring_sqe;

namespace ucoro {
class io_context;
}

namespace ucoro::detail {

/// Sees what the kernel says before the loop acts on it, so tests can drive the paths a
/// healthy kernel on loopback seldom takes. Production code never installs one; the loop
/// then pays one predictable branch per io_uring_enter, per SQE and per CQE (the same
/// branch as the trace's).
class fault_injector {
public:
    enum class verdict { deliver, drop };

    virtual ~fault_injector() = default;

    /// Called before each io_uring_enter. Return 0 to let it happen, or -errno to make the
    /// loop see that error instead, as if the kernel had refused the call (nothing is
    /// submitted; the SQEs stay in the ring for the next call).
    virtual int before_enter() noexcept { return 0; }

    /// Each SQE an operation has filled, user_data set, before it reaches the kernel. May
    /// change it within what the operation accepts, e.g. shorten a send's or a recv's length
    /// (a short send or read on purpose: the operation must carry on from where it ended).
    virtual void on_submit(io_uring_sqe& /*sqe*/) noexcept {}

    /// One CQE, before dispatch. May rewrite the result and flags. `drop` makes it vanish
    /// the way a kernel that cannot allocate overflow room loses one: it never reaches the
    /// loop, and the ring's overflow counter goes up.
    virtual verdict on_completion(std::uint64_t /*user_data*/, int& /*result*/,
                                  std::uint32_t& /*flags*/) noexcept {
        return verdict::deliver;
    }
};

/// Installs `injector` (null removes it). It must outlive its installation.
void set_fault_injector(io_context& context, fault_injector* injector) noexcept;

} // namespace ucoro::detail
