/* reference_client: a small, independent open-loop load generator for the echo servers, to
 * check what ucoro-bench costs them. It shares no code with ucoro-bench and none of its
 * machinery: one thread, level-triggered epoll, blocking connects, non-blocking sockets, and
 * one timerfd armed at absolute deadlines (TFD_TIMER_ABSTIME) for the pacing.
 *
 * Message k is due at start + k / rate, on connection k mod n (round robin). When the timer
 * fires, every message due by then is sent and the timer is armed for the next due time; an
 * echo that wakes the loop earlier leaves the armed timer as it is. Latency runs from each
 * message's due time to the arrival of its last echoed byte. Every echoed byte is checked
 * against what its connection sent (exit 1 on the first wrong one).
 *
 * bench/run measures the same server under ucoro-bench and under this client at the same
 * rate, in the same run, and compares the server's CPU per message: if ucoro-bench made the
 * server work harder than this plain client does, every CPU figure on the page would carry it.
 *
 * Two switches for experiments, not for the page (bench/load-generator-cost.md): --spin never
 * sleeps (it polls epoll without a timeout, burning its core), to see what waking a client
 * that sleeps between messages costs the server; --tick MICROSECONDS wakes only on a grid of
 * that period and sends what fell due since, to see what clumped arrivals do to it.
 *
 * Usage: reference-client HOST PORT [-c CONNECTIONS] [-s SIZE] [--rate MSG/S]
 *                         [--warmup SECONDS] [--duration SECONDS] [--server-pid PID] [--spin]
 *                         [--tick MICROSECONDS]
 * Prints one JSON object (field names as ucoro-bench's --json where they mean the same; the
 * server's CPU both from /proc/PID/stat's ticks and from its CPU-time clock).
 * Test with: reference-client 127.0.0.1 PORT -c 100 -s 64 --rate 20000 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum { period = 65521 /* prime */, max_events = 256, late_after_ns = 500000 };

/* The bytes connection c sends: a slice of one table, at a phase of its own. */
static unsigned char pattern[2 * period];

static unsigned char pattern_byte(unsigned id, uint64_t offset) {
    return pattern[(id * 7919ull + offset) % period];
}

struct connection {
    int fd;
    unsigned id;
    uint64_t sent;     /* bytes of the stream sent */
    uint64_t owed;     /* bytes due but not yet sent (the socket was full) */
    uint64_t received; /* bytes of the stream echoed and checked */
    uint64_t* due;     /* due times (ns) of messages sent or owed, not yet echoed: a ring */
    size_t due_capacity;
    size_t due_head;
    size_t due_count;
    int want_out; /* watching EPOLLOUT because owed > 0 */
};

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t cpu_ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

// The connections live until the process exits (every path out of main ends it); kept
// reachable from here so that LeakSanitizer, which the asan preset builds the peers with
// too, does not take them for a leak on an early exit.
static struct connection* all_connections;

static void die(const char* what) {
    fprintf(stderr, "reference-client: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* utime + stime of a process in ns, from /proc/PID/stat (fields 14 and 15, clock ticks). */
static int read_server_cpu(long pid, uint64_t* user_ns, uint64_t* system_ns) {
    char path[64];
    char text[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE* file = fopen(path, "r");
    if (file == NULL) {
        return -1;
    }
    const size_t n = fread(text, 1, sizeof(text) - 1, file);
    fclose(file);
    text[n] = '\0';
    const char* p = strrchr(text, ')');
    unsigned long long user = 0;
    unsigned long long system = 0;
    if (p == NULL || sscanf(p + 2, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu",
                            &user, &system) != 2) {
        return -1;
    }
    const uint64_t ns_per_tick = 1000000000u / (uint64_t)sysconf(_SC_CLK_TCK);
    *user_ns = user * ns_per_tick;
    *system_ns = system * ns_per_tick;
    return 0;
}

/* A process's CPU time from its CPU-time clock, in ns (every thread, not by ticks). */
static int read_server_clock(long pid, uint64_t* ns) {
    clockid_t clock;
    if (clock_getcpuclockid((pid_t)pid, &clock) != 0) {
        return -1;
    }
    *ns = cpu_ns(clock);
    return 0;
}

static void push_due(struct connection* c, uint64_t due) {
    if (c->due_count == c->due_capacity) {
        const size_t capacity = c->due_capacity ? 2 * c->due_capacity : 16;
        uint64_t* ring = malloc(capacity * sizeof(*ring));
        if (ring == NULL) {
            die("malloc");
        }
        for (size_t i = 0; i < c->due_count; ++i) {
            ring[i] = c->due[(c->due_head + i) % c->due_capacity];
        }
        free(c->due);
        c->due = ring;
        c->due_capacity = capacity;
        c->due_head = 0;
    }
    c->due[(c->due_head + c->due_count) % c->due_capacity] = due;
    ++c->due_count;
}

static uint64_t pop_due(struct connection* c) {
    const uint64_t due = c->due[c->due_head];
    c->due_head = (c->due_head + 1) % c->due_capacity;
    --c->due_count;
    return due;
}

/* Latencies of the measured messages, kept whole and sorted at the end: exact percentiles. */
static uint64_t* latencies;
static size_t latency_count;
static size_t latency_capacity;

static void record_latency(uint64_t ns) {
    if (latency_count == latency_capacity) {
        latency_capacity = latency_capacity ? 2 * latency_capacity : 1 << 16;
        latencies = realloc(latencies, latency_capacity * sizeof(*latencies));
        if (latencies == NULL) {
            die("realloc");
        }
    }
    latencies[latency_count++] = ns;
}

static int compare_u64(const void* a, const void* b) {
    const uint64_t x = *(const uint64_t*)a;
    const uint64_t y = *(const uint64_t*)b;
    return x < y ? -1 : x > y;
}

static uint64_t percentile(const uint64_t* sorted, size_t count, double percent) {
    if (count == 0) {
        return 0;
    }
    size_t rank = (size_t)(percent / 100.0 * (double)count + 0.999999);
    rank = rank < 1 ? 1 : rank > count ? count : rank;
    return sorted[rank - 1];
}

static void watch(int epoll_fd, struct connection* c, int want_out) {
    struct epoll_event event = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (c->want_out != want_out) {
        epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &event);
        c->want_out = want_out;
    }
}

/* Sends what the connection owes, from its stream. Returns -1 on a socket error. */
static int flush(int epoll_fd, struct connection* c) {
    unsigned char chunk[16384];
    while (c->owed > 0) {
        const size_t length = c->owed < sizeof(chunk) ? (size_t)c->owed : sizeof(chunk);
        for (size_t i = 0; i < length; ++i) {
            chunk[i] = pattern_byte(c->id, c->sent + i);
        }
        const ssize_t n = send(c->fd, chunk, length, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                break;
            }
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        c->sent += (uint64_t)n;
        c->owed -= (uint64_t)n;
    }
    watch(epoll_fd, c, c->owed > 0);
    return 0;
}

static double option_value(int argc, char** argv, int* i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "reference-client: %s needs a value\n", argv[*i]);
        exit(2);
    }
    char* end = NULL;
    const double value = strtod(argv[++*i], &end);
    if (*end != '\0' || value < 0) {
        fprintf(stderr, "reference-client: bad value '%s' for %s\n", argv[*i], argv[*i - 1]);
        exit(2);
    }
    return value;
}

int main(int argc, char** argv) {
    unsigned connections = 1;
    size_t size = 64;
    double rate = 1000;
    double warmup = 1;
    double duration = 5;
    long server_pid = 0;
    int spin = 0;
    double tick_us = 0;
    const char* host = NULL;
    const char* port = NULL;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "-c") == 0) {
            connections = (unsigned)option_value(argc, argv, &i);
        } else if (strcmp(argv[i], "-s") == 0) {
            size = (size_t)option_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--rate") == 0) {
            rate = option_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--warmup") == 0) {
            warmup = option_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--duration") == 0) {
            duration = option_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--server-pid") == 0) {
            server_pid = (long)option_value(argc, argv, &i);
        } else if (strcmp(argv[i], "--spin") == 0) {
            spin = 1;
        } else if (strcmp(argv[i], "--tick") == 0) {
            tick_us = option_value(argc, argv, &i);
        } else if (host == NULL) {
            host = argv[i];
        } else if (port == NULL) {
            port = argv[i];
        } else {
            host = NULL;
            break;
        }
    }
    if (host == NULL || port == NULL || connections == 0 || size == 0 || rate <= 0) {
        fprintf(stderr, "usage: reference-client HOST PORT [-c CONNECTIONS] [-s SIZE] "
                        "[--rate MSG/S] [--warmup S] [--duration S] [--server-pid PID] "
                        "[--spin] [--tick US]\n");
        return 2;
    }
    struct sockaddr_in address;
    memset(&address, 0, sizeof(address));
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)atoi(port));
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) {
        fprintf(stderr, "reference-client: bad address '%s'\n", host);
        return 1;
    }
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    signal(SIGPIPE, SIG_IGN);
    uint32_t x = 2463534242u; /* any sequence without a short period does: xorshift32 */
    for (size_t i = 0; i < period; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pattern[i] = pattern[i + period] = (unsigned char)(x >> 24);
    }

    const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    const int timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epoll_fd < 0 || timer_fd < 0) {
        die("epoll/timerfd");
    }
    struct epoll_event timer_event = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer_fd, &timer_event);
    struct connection* conns = calloc(connections, sizeof(*conns));
    all_connections = conns;
    if (conns == NULL) {
        die("calloc");
    }
    for (unsigned i = 0; i < connections; ++i) {
        struct connection* c = &conns[i];
        c->id = i;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr*)&address, sizeof(address)) != 0) {
            die("connect");
        }
        const int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) != 0) {
            die("fcntl");
        }
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd, &event);
    }

    const double ns_per_message = 1e9 / rate;
    const uint64_t start = now_ns();
    const uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
    const uint64_t end = measure_from + (uint64_t)(duration * 1e9);
    uint64_t next = 0; /* the next message to send */
    uint64_t messages = 0;
    uint64_t late = 0;
    uint64_t lag_max = 0;
    uint64_t scheduled = 0;
    int measuring = 0;
    uint64_t cpu_start = 0;
    uint64_t measured_start = 0;
    uint64_t server_user_start = 0;
    uint64_t server_system_start = 0;
    uint64_t server_clock_start = 0;
    int server_ok = 0;
    int server_clock_ok = 0;
    static unsigned char buffer[65536];
    struct epoll_event events[max_events];
    int armed = 0;
    while (1) {
        const uint64_t now = now_ns();
        if (!measuring && now >= measure_from) {
            measuring = 1;
            measured_start = now;
            cpu_start = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
            server_ok = server_pid > 0 &&
                        read_server_cpu(server_pid, &server_user_start, &server_system_start) == 0;
            server_clock_ok = server_pid > 0 && read_server_clock(server_pid, &server_clock_start) == 0;
        }
        if (now >= end) {
            break;
        }
        /* Send every message due by now, round robin over the connections. */
        for (uint64_t due = start + (uint64_t)(ns_per_message * (double)next); due <= now;
             due = start + (uint64_t)(ns_per_message * (double)++next)) {
            struct connection* c = &conns[next % connections];
            push_due(c, due);
            c->owed += size;
            if (measuring) {
                const uint64_t lag = now - due;
                ++scheduled;
                late += lag > late_after_ns;
                lag_max = lag > lag_max ? lag : lag_max;
            }
            if (flush(epoll_fd, c) != 0) {
                die("send");
            }
            armed = 0;
        }
        if (!armed && !spin) {
            uint64_t due = start + (uint64_t)(ns_per_message * (double)next);
            if (tick_us > 0) { /* round up to the grid */
                const uint64_t tick = (uint64_t)(tick_us * 1e3);
                due = start + (due - start + tick - 1) / tick * tick;
            }
            const uint64_t wake = due < end ? due : end;
            struct itimerspec when = {.it_value = {(time_t)(wake / 1000000000u),
                                                   (long)(wake % 1000000000u)}};
            timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &when, NULL);
            armed = 1;
        }
        const int ready = epoll_wait(epoll_fd, events, max_events, spin ? 0 : -1);
        if (ready < 0 && errno != EINTR) {
            die("epoll_wait");
        }
        for (int i = 0; i < ready; ++i) {
            struct connection* c = events[i].data.ptr;
            if (c == NULL) {
                uint64_t expirations;
                if (read(timer_fd, &expirations, sizeof(expirations)) > 0) {
                    armed = 0;
                }
                continue;
            }
            if (events[i].events & EPOLLOUT && flush(epoll_fd, c) != 0) {
                die("send");
            }
            if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                continue;
            }
            const ssize_t n = recv(c->fd, buffer, sizeof(buffer), 0);
            if (n <= 0) {
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                    continue;
                }
                fprintf(stderr, "reference-client: connection %u: %s\n", c->id,
                        n == 0 ? "the server closed the connection" : strerror(errno));
                return 1;
            }
            if (c->received + (uint64_t)n > c->sent) {
                fprintf(stderr, "reference-client: connection %u: %" PRIu64
                                " bytes echoed but only %" PRIu64 " sent\n",
                        c->id, c->received + (uint64_t)n, c->sent);
                return 1;
            }
            for (ssize_t k = 0; k < n; ++k) {
                if (buffer[k] != pattern_byte(c->id, c->received + (uint64_t)k)) {
                    fprintf(stderr, "reference-client: connection %u: echoed byte at offset %" PRIu64
                                    " is 0x%02x, expected 0x%02x\n",
                            c->id, c->received + (uint64_t)k, buffer[k],
                            pattern_byte(c->id, c->received + (uint64_t)k));
                    return 1;
                }
            }
            const uint64_t before = c->received / size;
            c->received += (uint64_t)n;
            const uint64_t arrived = now_ns();
            for (uint64_t m = before; m < c->received / size; ++m) {
                const uint64_t due = pop_due(c);
                if (measuring && arrived < end) {
                    record_latency(arrived - due);
                    ++messages;
                }
            }
        }
    }
    const uint64_t measured_end = now_ns();
    const uint64_t cpu = cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
    uint64_t server_user_end = 0;
    uint64_t server_system_end = 0;
    server_ok = server_ok && read_server_cpu(server_pid, &server_user_end, &server_system_end) == 0;
    uint64_t server_clock_end = 0;
    server_clock_ok = server_clock_ok && read_server_clock(server_pid, &server_clock_end) == 0;

    /* Polite end: half-close, read what is still coming back, close. */
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, timer_fd, NULL);
    for (unsigned i = 0; i < connections; ++i) {
        shutdown(conns[i].fd, SHUT_WR);
    }
    const uint64_t drain_until = now_ns() + 2000000000u;
    unsigned open = connections;
    while (open > 0 && now_ns() < drain_until) {
        const int ready = epoll_wait(epoll_fd, events, max_events, 100);
        for (int i = 0; i < ready; ++i) {
            struct connection* c = events[i].data.ptr;
            if (c == NULL || c->fd < 0) {
                continue;
            }
            const ssize_t n = recv(c->fd, buffer, sizeof(buffer), 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                --open;
            }
        }
    }

    qsort(latencies, latency_count, sizeof(*latencies), compare_u64);
    const double seconds = (double)(measured_end - measured_start) / 1e9;
    const double per_message = messages > 0 ? (double)messages : 1.0;
    printf("{\"client\": \"reference-client\", \"connections\": %u, \"size\": %zu, "
           "\"rate\": %g, \"seconds\": %.6f, \"messages\": %" PRIu64 ", "
           "\"messages_per_second\": %.1f, \"latency_p50_ns\": %" PRIu64 ", "
           "\"latency_p99_ns\": %" PRIu64 ", \"latency_p999_ns\": %" PRIu64 ", "
           "\"latency_max_ns\": %" PRIu64 ", \"late_sends\": %" PRIu64 ", "
           "\"scheduled\": %" PRIu64 ", \"send_lag_max_ns\": %" PRIu64 ", "
           "\"client_cpu_ns_per_message\": %.1f, \"client_busy\": %.4f",
           connections, size, rate, seconds, messages, (double)messages / seconds,
           percentile(latencies, latency_count, 50), percentile(latencies, latency_count, 99),
           percentile(latencies, latency_count, 99.9),
           latency_count ? latencies[latency_count - 1] : 0, late, scheduled, lag_max,
           (double)cpu / per_message, (double)cpu / 1e9 / seconds);
    if (server_ok) {
        const uint64_t user = server_user_end - server_user_start;
        const uint64_t system = server_system_end - server_system_start;
        printf(", \"server_user_ns_per_message\": %.1f, \"server_system_ns_per_message\": %.1f, "
               "\"server_cpu_ns_per_message\": %.1f",
               (double)user / per_message, (double)system / per_message,
               (double)(user + system) / per_message);
    }
    if (server_clock_ok) {
        printf(", \"server_process_ns_per_message\": %.1f",
               (double)(server_clock_end - server_clock_start) / per_message);
    }
    printf("}\n");
    return 0;
}
