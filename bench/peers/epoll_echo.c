#define _GNU_SOURCE /* accept4 */
/* epoll_echo: the hand-written C baseline. One thread, level-triggered epoll, non-blocking
 * sockets. Every read lands in one buffer shared by all connections and is sent straight
 * back; only what a short write leaves over is copied into the connection (malloc'd, at most
 * one read's worth), and the socket is switched to EPOLLOUT until it drains, so the common
 * case makes no epoll_ctl and no allocation per message. This is the usual shape of an epoll
 * server: an idle connection costs its socket and a few words, not a 16 KiB buffer, which
 * puts it on the same terms as ucoro's shared buffer ring in the memory comparison.
 *
 * Usage: epoll-echo HOST PORT   (port 0: the kernel picks; the first line says which)
 * Test with: ucoro-bench 127.0.0.1 PORT */
#include <fcntl.h>
#include <sys/epoll.h>

#include "peer_common.h"

enum { buffer_size = 16 * 1024, max_events = 256 };

struct connection {
    int fd;
    char* pending; /* unsent bytes are pending[pending_offset, pending_end), or NULL */
    size_t pending_offset;
    size_t pending_end;
};

/* Where every recv lands: one thread, and each read is echoed before the next. */
static char shared_buffer[buffer_size];

static void close_connection(int epoll_fd, struct connection* c) {
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

/* Sends bytes[*offset, end). Returns 1 if all of it went, 0 if the socket is full, -1 on
 * error. */
static int send_some(int fd, const char* bytes, size_t* offset, size_t end) {
    while (*offset < end) {
        const ssize_t n = send(fd, bytes + *offset, end - *offset, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN ? 0 : -1;
        }
        *offset += (size_t)n;
    }
    return 1;
}

/* Sends what is pending; frees it once all has gone. Same results as send_some. */
static int flush_pending(struct connection* c) {
    const int result = send_some(c->fd, c->pending, &c->pending_offset, c->pending_end);
    if (result == 1) {
        free(c->pending);
        c->pending = NULL;
        c->pending_offset = c->pending_end = 0;
    }
    return result;
}

static void watch(int epoll_fd, struct connection* c, uint32_t events) {
    struct epoll_event event = {.events = events, .data.ptr = c};
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &event);
}

static void on_readable(int epoll_fd, struct connection* c) {
    const ssize_t n = recv(c->fd, shared_buffer, buffer_size, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        close_connection(epoll_fd, c);
        return;
    }
    if (n < 0) {
        return;
    }
    size_t sent = 0;
    const int flushed = send_some(c->fd, shared_buffer, &sent, (size_t)n);
    if (flushed < 0) {
        close_connection(epoll_fd, c);
    } else if (flushed == 0) {
        /* Keep only the leftover, and stop reading until it has gone out. */
        c->pending = malloc((size_t)n - sent);
        if (c->pending == NULL) {
            close_connection(epoll_fd, c);
            return;
        }
        memcpy(c->pending, shared_buffer + sent, (size_t)n - sent);
        c->pending_offset = 0;
        c->pending_end = (size_t)n - sent;
        watch(epoll_fd, c, EPOLLOUT);
    }
}

static void on_writable(int epoll_fd, struct connection* c) {
    const int flushed = flush_pending(c);
    if (flushed < 0) {
        close_connection(epoll_fd, c);
    } else if (flushed > 0) {
        watch(epoll_fd, c, EPOLLIN);
    }
}

static void accept_all(int epoll_fd, int listen_fd) {
    while (1) {
        const int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return; /* EAGAIN, or EMFILE and friends: try again on the next wake-up */
        }
        peer_set_no_delay(fd);
        struct connection* c = malloc(sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->pending = NULL;
        c->pending_offset = c->pending_end = 0;
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) {
            close(fd);
            free(c);
        }
    }
}

int main(int argc, char** argv) {
    const int listen_fd = peer_listen("epoll-echo", argc, argv);
    peer_install_signals();
    if (fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK) != 0) {
        perror("epoll-echo: fcntl");
        return 1;
    }
    const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event listen_event = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &listen_event) != 0) {
        perror("epoll-echo: epoll");
        return 1;
    }
    struct epoll_event events[max_events];
    while (!peer_stop_requested) {
        const int ready = epoll_wait(epoll_fd, events, max_events, -1);
        for (int i = 0; i < ready; ++i) {
            struct connection* c = events[i].data.ptr;
            if (c == NULL) {
                accept_all(epoll_fd, listen_fd);
            } else if (events[i].events & EPOLLOUT) {
                on_writable(epoll_fd, c);
            } else {
                on_readable(epoll_fd, c);
            }
        }
    }
    return 0;
}
