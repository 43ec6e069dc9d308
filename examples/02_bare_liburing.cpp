// 02_bare_liburing: the loop that io_context wraps, written with liburing alone.
//
// Shows: io_uring_queue_init_params with the setup flags ucoro asks for, and the fallback
// when the kernel refuses them (EINVAL); io_uring_get_sqe, io_uring_prep_timeout and
// io_uring_sqe_set_data to queue three timers; io_uring_submit_and_wait, one
// io_uring_enter that submits them and sleeps until a completion is there;
// io_uring_peek_cqe, io_uring_cqe_get_data and io_uring_cqe_seen to take the CQEs. The
// same three sleeps as 02_concurrent_sleeps, with no coroutine and no ucoro.
// Tutorial: docs/tutorial/02_event_loop.md
// Needs: Linux >= 5.11 (the setup flags need 6.1; older kernels get a plain ring).
// Try: build/debug/bin/02_bare_liburing
#include <fmt/core.h>
#include <liburing.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace {

// What each SQE's user_data points at: the kernel hands the pointer back in the CQE.
struct timer_request {
    const char* name;
    __kernel_timespec delay;
};

} // namespace

int main() {
    // ANCHOR: setup
    io_uring ring;
    io_uring_params params{};
    params.flags =
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN;
    int result = io_uring_queue_init_params(8, &ring, &params);
    if (result == -EINVAL) { // a kernel before 6.1 does not know one of the flags
        params = io_uring_params{};
        result = io_uring_queue_init_params(8, &ring, &params);
    }
    if (result < 0) {
        fmt::print(stderr, "io_uring_queue_init_params: {}\n", std::strerror(-result));
        return 1;
    }
    fmt::print("ring ready: {}\n", params.flags != 0
                                       ? "SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN"
                                       : "no setup flags (a kernel before 6.1)");
    // ANCHOR_END: setup

    // ANCHOR: submit
    std::array<timer_request, 3> timers{{
        {"slow", {.tv_sec = 0, .tv_nsec = 300'000'000}},
        {"quick", {.tv_sec = 0, .tv_nsec = 100'000'000}},
        {"medium", {.tv_sec = 0, .tv_nsec = 200'000'000}},
    }};
    for (timer_request& timer : timers) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring); // null only when the SQ is full
        io_uring_prep_timeout(sqe, &timer.delay, 0, 0);
        io_uring_sqe_set_data(sqe, &timer);
    }
    // ANCHOR_END: submit

    // ANCHOR: loop
    int enters = 0;
    std::size_t pending = timers.size();
    while (pending > 0) {
        // One io_uring_enter: hand over every SQE queued so far, sleep until a CQE is there.
        ++enters;
        result = io_uring_submit_and_wait(&ring, 1);
        if (result < 0 && result != -EINTR) {
            fmt::print(stderr, "io_uring_submit_and_wait: {}\n", std::strerror(-result));
            io_uring_queue_exit(&ring);
            return 1;
        }
        io_uring_cqe* cqe = nullptr;
        while (io_uring_peek_cqe(&ring, &cqe) == 0) { // every CQE that is there, no waiting
            const auto* timer = static_cast<const timer_request*>(io_uring_cqe_get_data(cqe));
            fmt::print("{} completed, res = {} ({})\n", timer->name, cqe->res,
                       cqe->res == -ETIME ? "ETIME: the timer fired" : std::strerror(-cqe->res));
            io_uring_cqe_seen(&ring, cqe); // hands the CQ slot back to the kernel
            --pending;
        }
    }
    fmt::print("{} io_uring_enter calls\n", enters);
    io_uring_queue_exit(&ring);
    // ANCHOR_END: loop
}
