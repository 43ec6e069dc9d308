/* uring_echo: hand-written C echo servers on liburing, in the two shapes ucoro is compared
 * with. Built twice (bench/CMakeLists.txt):
 *
 *   uring-echo-basic      (UCORO_PEER_MULTISHOT=0) single-shot accept, recv and send, one
 *                         16 KiB buffer per connection: what ucoro's server does today,
 *                         without the coroutines and awaitables.
 *   uring-echo-multishot  (UCORO_PEER_MULTISHOT=1) multishot accept, multishot recv into a
 *                         provided-buffer ring of 128 x 16 KiB (ucoro's echo server's), and
 *                         every received buffer waiting on a connection sent back with one
 *                         gathered sendmsg (up to 16 buffers, as ucoro gathers), each
 *                         returned to the ring once sent.
 *
 * Both set up the ring as ucoro does, so that the comparison differs in the abstractions and
 * not in the ring: 256 SQ and 4,096 CQ entries, SINGLE_ISSUER|DEFER_TASKRUN (kernel 6.1)
 * with SUBMIT_ALL and COOP_TASKRUN, falling back to plain flags on older kernels, and the
 * ring's descriptor registered (io_uring_register_ring_fd, 5.18). --batch-wait MICROSECONDS
 * makes a sleeping loop wait that long for a batch of completions, one per live connection
 * and at most 16, as ucoro-echo-server --batch-wait does (IORING_ENTER_EXT_ARG's
 * min_wait_usec, Linux 6.12); by default it wakes at the first completion. The multishot
 * variant needs kernel 6.0 (multishot recv) and liburing 2.3.
 *
 * Usage: uring-echo-basic [--batch-wait MICROSECONDS] HOST PORT
 *        (port 0: the kernel picks; the first line says which)
 * Test with: ucoro-bench 127.0.0.1 PORT */
#define _GNU_SOURCE
#include <liburing.h>
#include <stdint.h>
#include <sys/mman.h>

#include "peer_common.h"

#ifndef UCORO_PEER_MULTISHOT
#define UCORO_PEER_MULTISHOT 0
#endif

enum {
    buffer_size = 16 * 1024,
    ring_buffers = 128,
    buffer_group = 0,
    sq_entries = 256,
    cq_entries = 16 * sq_entries,
    max_gather = 16,
    max_batch = 16
};
enum op_kind { op_accept = 1, op_recv = 2, op_send = 3 };

struct connection {
    int fd;
    /* basic: the bytes being echoed are buffer[send_offset, send_end) */
    size_t send_offset;
    size_t send_end;
    /* multishot: received buffers waiting to be echoed, oldest first (linked by bid) */
    int queue_head;
    int queue_tail;
    int sending;     /* a send is in flight */
    int recv_armed;  /* the multishot recv is in flight */
    int starved;     /* recv stopped for lack of buffers: re-arm when one comes back */
    struct connection* next_starved;
    struct gather* gather; /* multishot: the iovecs of the send in flight, lent from a pool */
    char buffer[];         /* basic only */
};

/* The iovecs and msghdr of one gathered send: lent to a connection while its send is in
 * flight, so that an idle connection does not hold them. */
struct gather {
    struct msghdr message;
    struct iovec pieces[max_gather];
    struct gather* next_free;
};

static struct io_uring ring;
static int listen_fd;
static unsigned live_connections;
static struct gather* free_gathers;
static int ring_fd_registered;

/* multishot: the provided buffers and, per buffer id, its length, send progress and the next
 * buffer in the same connection's queue. */
static struct io_uring_buf_ring* buffer_ring;
static char* buffer_base;
static unsigned buffer_length[ring_buffers];
static unsigned buffer_sent[ring_buffers];
static int buffer_next[ring_buffers];
static struct connection* starved_head;

static struct io_uring_sqe* get_sqe(void) {
    struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    while (sqe == NULL) { /* the SQ is full: hand it to the kernel and take a fresh slot */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void set_data(struct io_uring_sqe* sqe, struct connection* c, enum op_kind kind) {
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | (uint64_t)kind);
}

static void arm_accept(void) {
    struct io_uring_sqe* sqe = get_sqe();
    if (UCORO_PEER_MULTISHOT) {
        io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
    } else {
        io_uring_prep_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
    }
    set_data(sqe, NULL, op_accept);
}

static void arm_recv(struct connection* c) {
    struct io_uring_sqe* sqe = get_sqe();
    if (UCORO_PEER_MULTISHOT) {
        io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = buffer_group;
        c->recv_armed = 1;
    } else {
        io_uring_prep_recv(sqe, c->fd, c->buffer, buffer_size, 0);
    }
    set_data(sqe, c, op_recv);
}

static void arm_send(struct connection* c, const char* bytes, size_t length) {
    struct io_uring_sqe* sqe = get_sqe();
    io_uring_prep_send(sqe, c->fd, bytes, length, MSG_NOSIGNAL);
    set_data(sqe, c, op_send);
}

static void on_accept(int result, unsigned flags) {
    if (result >= 0) {
        peer_set_no_delay(result);
        struct connection* c =
            calloc(1, sizeof(*c) + (UCORO_PEER_MULTISHOT ? 0 : buffer_size));
        if (c == NULL) {
            close(result);
        } else {
            c->fd = result;
            c->queue_head = c->queue_tail = -1;
            ++live_connections;
            arm_recv(c);
        }
    }
    /* EMFILE and friends end a multishot accept too: arm it again either way. */
    if (!UCORO_PEER_MULTISHOT || !(flags & IORING_CQE_F_MORE)) {
        arm_accept();
    }
}

/* ---- basic: one recv or one send in flight per connection ---- */

static void basic_on_recv(struct connection* c, int result) {
    if (result <= 0) {
        close(c->fd);
        free(c);
        --live_connections;
        return;
    }
    c->send_offset = 0;
    c->send_end = (size_t)result;
    arm_send(c, c->buffer, c->send_end);
}

static void basic_on_send(struct connection* c, int result) {
    if (result < 0) {
        close(c->fd);
        free(c);
        --live_connections;
        return;
    }
    c->send_offset += (size_t)result;
    if (c->send_offset < c->send_end) {
        arm_send(c, c->buffer + c->send_offset, c->send_end - c->send_offset);
    } else {
        arm_recv(c);
    }
}

/* ---- multishot: received buffers are queued per connection and sent back in order ---- */

static void return_buffer(int bid) {
    io_uring_buf_ring_add(buffer_ring, buffer_base + (size_t)bid * buffer_size, buffer_size,
                          (unsigned short)bid, io_uring_buf_ring_mask(ring_buffers), 0);
    io_uring_buf_ring_advance(buffer_ring, 1);
    /* A connection whose recv ended with ENOBUFS can read again. */
    while (starved_head != NULL) {
        struct connection* c = starved_head;
        starved_head = c->next_starved;
        c->starved = 0;
        arm_recv(c);
    }
}

/* Sends every queued buffer (up to max_gather) with one sendmsg, starting where the last
 * send stopped. */
static void send_head(struct connection* c) {
    if (c->gather == NULL) {
        c->gather = free_gathers;
        if (c->gather != NULL) {
            free_gathers = c->gather->next_free;
        } else if ((c->gather = malloc(sizeof(*c->gather))) == NULL) {
            perror("uring-echo-multishot: malloc");
            exit(1);
        }
    }
    struct gather* g = c->gather;
    size_t count = 0;
    for (int bid = c->queue_head; bid >= 0 && count < max_gather; bid = buffer_next[bid]) {
        g->pieces[count].iov_base = buffer_base + (size_t)bid * buffer_size + buffer_sent[bid];
        g->pieces[count].iov_len = buffer_length[bid] - buffer_sent[bid];
        ++count;
    }
    memset(&g->message, 0, sizeof(g->message));
    g->message.msg_iov = g->pieces;
    g->message.msg_iovlen = count;
    struct io_uring_sqe* sqe = get_sqe();
    io_uring_prep_sendmsg(sqe, c->fd, &g->message, MSG_NOSIGNAL);
    set_data(sqe, c, op_send);
    c->sending = 1;
}

static void release_gather(struct connection* c) {
    if (c->gather != NULL) {
        c->gather->next_free = free_gathers;
        free_gathers = c->gather;
        c->gather = NULL;
    }
}

/* Frees the connection once nothing of it is in flight. */
static void maybe_free(struct connection* c) {
    if (c->recv_armed || c->sending || c->starved) {
        return;
    }
    while (c->queue_head >= 0) {
        const int bid = c->queue_head;
        c->queue_head = buffer_next[bid];
        return_buffer(bid);
    }
    release_gather(c);
    close(c->fd);
    free(c);
    --live_connections;
}

static void multishot_on_recv(struct connection* c, int result, unsigned flags) {
    if (!(flags & IORING_CQE_F_MORE)) {
        c->recv_armed = 0;
    }
    if (result > 0) {
        const int bid = (int)(flags >> IORING_CQE_BUFFER_SHIFT);
        buffer_length[bid] = (unsigned)result;
        buffer_sent[bid] = 0;
        buffer_next[bid] = -1;
        if (c->queue_tail >= 0) {
            buffer_next[c->queue_tail] = bid;
        } else {
            c->queue_head = bid;
        }
        c->queue_tail = bid;
        if (!c->sending) {
            send_head(c);
        }
        if (!c->recv_armed) {
            arm_recv(c); /* the kernel may end a multishot recv at any time */
        }
        return;
    }
    if (result == -ENOBUFS && !c->recv_armed) {
        c->starved = 1; /* every buffer is out being echoed: wait for one to come back */
        c->next_starved = starved_head;
        starved_head = c;
        return;
    }
    /* End of stream or an error: finish when the sends in flight have completed. */
    if (!c->recv_armed) {
        maybe_free(c);
    }
}

static void multishot_on_send(struct connection* c, int result) {
    c->sending = 0;
    if (result < 0) {
        /* Wake the multishot recv with end of stream so the connection can be freed. */
        shutdown(c->fd, SHUT_RDWR);
        maybe_free(c);
        return;
    }
    /* Return every buffer the send took whole; a partly sent one stays at the head. */
    unsigned sent = (unsigned)result;
    while (c->queue_head >= 0 && sent > 0) {
        const int bid = c->queue_head;
        const unsigned left = buffer_length[bid] - buffer_sent[bid];
        if (sent < left) {
            buffer_sent[bid] += sent;
            break;
        }
        sent -= left;
        c->queue_head = buffer_next[bid];
        if (c->queue_head < 0) {
            c->queue_tail = -1;
        }
        return_buffer(bid);
    }
    if (c->queue_head >= 0) {
        send_head(c);
        return;
    }
    release_gather(c);
    if (!c->recv_armed) {
        maybe_free(c);
    }
}

static int setup_buffer_ring(void) {
    const size_t ring_bytes = sizeof(struct io_uring_buf) * ring_buffers;
    buffer_ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    buffer_base = malloc((size_t)ring_buffers * buffer_size);
    if (buffer_ring == MAP_FAILED || buffer_base == NULL) {
        return -ENOMEM;
    }
    struct io_uring_buf_reg registration;
    memset(&registration, 0, sizeof(registration));
    registration.ring_addr = (unsigned long)buffer_ring;
    registration.ring_entries = ring_buffers;
    registration.bgid = buffer_group;
    const int result = io_uring_register_buf_ring(&ring, &registration, 0);
    if (result != 0) {
        return result;
    }
    io_uring_buf_ring_init(buffer_ring);
    for (int bid = 0; bid < ring_buffers; ++bid) {
        io_uring_buf_ring_add(buffer_ring, buffer_base + (size_t)bid * buffer_size, buffer_size,
                              (unsigned short)bid, io_uring_buf_ring_mask(ring_buffers), bid);
    }
    io_uring_buf_ring_advance(buffer_ring, ring_buffers);
    return 0;
}

/* The same flags and fallbacks as ucoro's init_ring (src/ucoro/detail/ring.cpp), on purpose:
 * the comparison must differ in the abstractions, not in the ring's setup. */
static int setup_ring(void) {
    const unsigned wanted[] = {
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_CQSIZE,
    };
    int result = -EINVAL;
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); ++i) {
        struct io_uring_params params;
        memset(&params, 0, sizeof(params));
        params.flags = wanted[i];
        params.cq_entries = cq_entries;
        result = io_uring_queue_init_params(sq_entries, &ring, &params);
        if (result != -EINVAL) {
            break;
        }
    }
    if (result == 0) {
        /* Each io_uring_enter then skips the lookup of the ring's descriptor; liburing enters
         * through the registered index by itself. A kernel before 5.18 refuses: no matter. */
        ring_fd_registered = io_uring_register_ring_fd(&ring) == 1;
    }
    return result;
}

/* Submits what is queued and sleeps until a batch of completions (one per live connection,
 * at most max_batch) has come or batch_wait_us has passed, then until the first one: what
 * ucoro's loop does with io_context_options::batch_wait. The SQ tail is published by hand
 * because liburing 2.3 has no call that passes min_wait_usec. */
static int submit_and_wait_batch(unsigned batch_wait_us) {
    const unsigned tail = ring.sq.sqe_tail;
    if (ring.sq.sqe_head != tail) {
        ring.sq.sqe_head = tail;
        io_uring_smp_store_release(ring.sq.ktail, tail);
    }
    const unsigned to_submit = tail - io_uring_smp_load_acquire(ring.sq.khead);
    const unsigned wanted = live_connections < max_batch ? live_connections : max_batch;
    /* Without an overall timeout the kernel would end every wait after batch_wait_us, events
     * or not; with a day's, it waits on for one completion after the window. */
    struct __kernel_timespec day = {.tv_sec = 24 * 60 * 60};
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof(arg));
    arg.pad = batch_wait_us; /* min_wait_usec since Linux 6.12 */
    arg.ts = (uint64_t)(uintptr_t)&day;
    unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
    int fd = ring.ring_fd;
    if (ring_fd_registered) {
        flags |= IORING_ENTER_REGISTERED_RING;
        fd = ring.enter_ring_fd;
    }
    const int result = io_uring_enter2((unsigned)fd, to_submit, wanted > 1 ? wanted : 1, flags,
                                       (sigset_t*)&arg, sizeof(arg));
    return result == -ETIME ? 0 : result;
}

int main(int argc, char** argv) {
    const char* name = UCORO_PEER_MULTISHOT ? "uring-echo-multishot" : "uring-echo-basic";
    unsigned batch_wait_us = 0;
    if (argc > 2 && strcmp(argv[1], "--batch-wait") == 0) {
        char* end = NULL;
        const unsigned long value = strtoul(argv[2], &end, 10);
        if (*argv[2] == '\0' || *end != '\0' || value > 1000000) {
            fprintf(stderr, "%s: --batch-wait takes microseconds from 0 to 1000000\n", name);
            return 2;
        }
        batch_wait_us = (unsigned)value;
        argv[2] = argv[0];
        argc -= 2;
        argv += 2;
    }
    listen_fd = peer_listen(name, argc, argv);
    peer_install_signals();
    int result = setup_ring();
    if (result == 0 && UCORO_PEER_MULTISHOT) {
        result = setup_buffer_ring();
    }
    if (result != 0) {
        fprintf(stderr, "%s: io_uring setup failed: %s\n", name, strerror(-result));
        return 1;
    }
    arm_accept();
    while (!peer_stop_requested) {
        result = batch_wait_us > 0 && live_connections > 1 ? submit_and_wait_batch(batch_wait_us)
                                                           : io_uring_submit_and_wait(&ring, 1);
        if (result < 0 && result != -EINTR && result != -EAGAIN && result != -EBUSY) {
            fprintf(stderr, "%s: io_uring_enter: %s\n", name, strerror(-result));
            return 1;
        }
        struct io_uring_cqe* cqe;
        unsigned head;
        unsigned seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            ++seen;
            const enum op_kind kind = (enum op_kind)(cqe->user_data & 7);
            struct connection* c = (struct connection*)(uintptr_t)(cqe->user_data & ~(uint64_t)7);
            if (kind == op_accept) {
                on_accept(cqe->res, cqe->flags);
            } else if (kind == op_recv) {
                if (UCORO_PEER_MULTISHOT) {
                    multishot_on_recv(c, cqe->res, cqe->flags);
                } else {
                    basic_on_recv(c, cqe->res);
                }
            } else if (UCORO_PEER_MULTISHOT) {
                multishot_on_send(c, cqe->res);
            } else {
                basic_on_send(c, cqe->res);
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
    return 0;
}
