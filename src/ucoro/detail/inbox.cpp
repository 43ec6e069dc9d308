#include "ucoro/detail/inbox.hpp"

#include "ucoro/detail/ring.hpp"

#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace ucoro::detail {

namespace {

// The ring a thread sends its MSG_RING wake-ups from: a context's ring is SINGLE_ISSUER
// and belongs to its own loop, and a plain thread (the main thread, a signal thread) has
// none, so every posting thread gets one small ring of its own, made at its first wake-up
// and closed when the thread exits. Its only requests are MSG_RINGs, each waited for at
// once, so its SQ and CQ never hold more than one entry.
class sender_ring {
public:
    sender_ring() noexcept {
        io_uring_params params{};
        params.flags = IORING_SETUP_SINGLE_ISSUER;
        m_result = io_uring_queue_init_params(2, &m_ring, &params);
        if (m_result == -EINVAL) {
            params = {};
            m_result = io_uring_queue_init_params(2, &m_ring, &params);
        }
        if (m_result == 0) {
            ring_mapped();
        }
    }
    ~sender_ring() {
        if (m_result == 0) {
            ring_unmapping();
            io_uring_queue_exit(&m_ring);
        }
    }
    sender_ring(const sender_ring&) = delete;
    sender_ring& operator=(const sender_ring&) = delete;

    // Posts one CQE {user_data = wake_user_data} into the ring `target_fd`; returns 0 or
    // -errno. The sender's own CQE comes when the message is delivered.
    int send(int target_fd) noexcept {
        if (m_result < 0) {
            return m_result;
        }
        io_uring_sqe* sqe = io_uring_get_sqe(&m_ring); // the SQ is empty between calls
        io_uring_prep_msg_ring(sqe, target_fd, 0, wake_user_data, 0);
        io_uring_sqe_set_data64(sqe, 0);
        int result = io_uring_submit_and_wait(&m_ring, 1);
        while (result == -EINTR) {
            result = io_uring_submit_and_wait(&m_ring, 1);
        }
        if (result < 0) {
            return result;
        }
        io_uring_cqe* cqe = nullptr;
        result = io_uring_wait_cqe(&m_ring, &cqe);
        if (result < 0) {
            return result;
        }
        result = cqe->res < 0 ? cqe->res : 0;
        io_uring_cqe_seen(&m_ring, cqe);
        return result;
    }

private:
    io_uring m_ring{};
    int m_result = -ENOSYS;
};

sender_ring& this_thread_sender() noexcept {
    thread_local sender_ring sender;
    return sender;
}

} // namespace

void prepare_sender() noexcept {
    (void)this_thread_sender();
}

inbox::inbox(int ring_fd, wake_method method) : m_ring_fd(ring_fd), m_method(method) {
    if (m_method == wake_method::eventfd) {
        m_eventfd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m_eventfd < 0) {
            throw std::system_error(errno, std::system_category(), "eventfd");
        }
    }
}

inbox::~inbox() {
    run_all(m_head, [](std::exception_ptr) {}); // only after close(): empty
    if (m_eventfd >= 0) {
        ::close(m_eventfd);
    }
}

std::unique_ptr<message> inbox::post(std::unique_ptr<message> m) {
    std::lock_guard lock(m_mutex);
    if (m_closed) {
        return m;
    }
    message* raw = m.release();
    if (m_tail != nullptr) {
        m_tail->m_next = raw;
    } else {
        m_head = raw;
    }
    m_tail = raw;
    if (!m_wake_pending) {
        wake();
    }
    return nullptr;
}

void inbox::wake() {
    // Under the lock: close() cannot finish while a MSG_RING is on its way, so the target
    // descriptor is still the context's ring (not a number reused by another file).
    if (m_method == wake_method::eventfd) {
        const std::uint64_t one = 1;
        // Cannot block (the counter would have to reach 2^64 - 1) nor fail on a live fd.
        (void)::write(m_eventfd, &one, sizeof one);
        m_wake_pending = true;
        return;
    }
    if (const int result = this_thread_sender().send(m_ring_fd); result < 0) {
        // The message stays queued; the next post tries to wake the loop again.
        throw std::system_error(-result, std::system_category(),
                                "io_context: could not wake another thread's context "
                                "(IORING_OP_MSG_RING)");
    }
    m_wake_pending = true;
}

message* inbox::take_all() noexcept {
    std::lock_guard lock(m_mutex);
    message* head = m_head;
    m_head = m_tail = nullptr;
    m_wake_pending = false;
    return head;
}

message* inbox::close() noexcept {
    std::lock_guard lock(m_mutex);
    m_closed = true;
    message* head = m_head;
    m_head = m_tail = nullptr;
    return head;
}

void inbox::consume_eventfd() noexcept {
    std::uint64_t count = 0;
    (void)::read(m_eventfd, &count, sizeof count); // EAGAIN: already cleared
}

} // namespace ucoro::detail
