// inbox: the queue through which other threads hand work to one io_context.
#pragma once

#include <memory>
#include <mutex>
#include <utility>

namespace ucoro::detail {

/// One callable handed to a context from another thread; the inbox owns it until it runs.
class message {
public:
    message() = default;
    message(const message&) = delete;
    message& operator=(const message&) = delete;
    virtual ~message() = default;
    virtual void run() = 0;

private:
    friend class inbox;
    message* m_next = nullptr;
};

template <typename Callable>
class callable_message final : public message {
public:
    explicit callable_message(Callable callable) : m_callable(std::move(callable)) {}
    void run() override { m_callable(); }

private:
    Callable m_callable;
};

/// How a poster wakes the context's loop when the inbox goes from empty to not empty.
enum class wake_method {
    /// IORING_OP_MSG_RING (Linux 5.18) from the poster's thread-local sender ring: a CQE
    /// appears in the context's ring. Nothing is armed in the context while it waits.
    msg_ring,
    /// A write to an eventfd the context polls (IORING_OP_POLL_ADD, re-armed per wake-up).
    eventfd,
};

/// The user_data of the CQE that says "the inbox has messages": a MSG_RING's data, or the
/// eventfd poll's. No operation lives at address 1, so the loop tells it apart by value.
inline constexpr unsigned long long wake_user_data = 1;

/// Sets up this thread's MSG_RING sender ring now, if it has none yet. A thread gets one at
/// its first wake-up otherwise, which needs a descriptor and locked memory: a server out of
/// descriptors could then not wake anybody. io_context::remote() calls it, so a thread with
/// a context has its sender from the start.
void prepare_sender() noexcept;

/// The shared state between a context and everyone holding a remote_context to it. Shared
/// (std::shared_ptr), so that a poster never touches a destroyed context: after close(),
/// posts are refused, and the eventfd lives as long as the last holder.
///
/// Ordering and exactly-once: one mutex guards one FIFO list, so the messages of each
/// poster run in the order it posted them; take_all() moves the whole list out under the
/// lock, so each runs once. The mutex is touched only by posting and by the loop when it
/// is woken for it, never on the loop's own path.
class inbox {
public:
    /// `ring_fd` is the context's ring (the MSG_RING target); `method` is fixed for life.
    inbox(int ring_fd, wake_method method);
    ~inbox();
    inbox(const inbox&) = delete;
    inbox& operator=(const inbox&) = delete;

    /// Queues `m` and wakes the loop if it is not already woken. Returns `m` back
    /// (not queued) when the inbox is closed. Throws std::system_error if the wake-up
    /// cannot be sent (no sender ring could be set up on this thread); `m` is queued then
    /// and runs at the next wake-up.
    std::unique_ptr<message> post(std::unique_ptr<message> m);

    /// The loop's side, when woken: every message queued so far, in order; the next post
    /// wakes again. Returns the head of a list the caller runs and frees (run_all).
    message* take_all() noexcept;
    /// Refuses every later post; returns what was queued, which the caller must still run.
    message* close() noexcept;
    /// Runs and frees a list from take_all() or close(). An exception from a message goes
    /// to `report`, and the rest still run.
    template <typename Report>
    static void run_all(message* head, Report report) noexcept;

    wake_method method() const noexcept { return m_method; }
    /// The eventfd the context polls, or -1 under msg_ring.
    int eventfd() const noexcept { return m_eventfd; }
    /// Clears the eventfd's counter after its poll fired (a non-blocking read).
    void consume_eventfd() noexcept;

private:
    void wake(); // called with m_mutex held

    std::mutex m_mutex;
    message* m_head = nullptr;
    message* m_tail = nullptr;
    bool m_wake_pending = false; // a wake-up is on its way and no take_all() ran since
    bool m_closed = false;
    const int m_ring_fd;
    const wake_method m_method;
    int m_eventfd = -1;
};

template <typename Report>
void inbox::run_all(message* head, Report report) noexcept {
    while (head != nullptr) {
        std::unique_ptr<message> m(head);
        head = head->m_next;
        try {
            m->run();
        } catch (...) {
            report(std::current_exception());
        }
    }
}

} // namespace ucoro::detail
