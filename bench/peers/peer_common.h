/* What the C peer servers share: HOST PORT parsing, the listening socket, the fd limit and a
 * clean stop on SIGINT/SIGTERM. Each prints "listening on HOST:PORT" first, as
 * ucoro-echo-server does, so bench/run and the tests read the port the same way. */
#ifndef UCORO_BENCH_PEER_COMMON_H
#define UCORO_BENCH_PEER_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t peer_stop_requested;

static void peer_on_signal(int signal_number) {
    (void)signal_number;
    peer_stop_requested = 1;
}

/* SIGINT/SIGTERM set a flag and interrupt the blocking wait (no SA_RESTART). */
static void peer_install_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = peer_on_signal;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Each connection is a descriptor: take the hard limit, as ucoro's server does. */
static void peer_raise_fd_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

/* Binds and listens on HOST PORT (numeric IPv4), prints the port, exits 2 on bad arguments
 * and 1 if the socket cannot be set up. */
static int peer_listen(const char* name, int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", name);
        exit(2);
    }
    struct sockaddr_in address;
    memset(&address, 0, sizeof(address));
    address.sin_family = AF_INET;
    char* end = NULL;
    const long port = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || port < 0 || port > 65535) {
        fprintf(stderr, "%s: invalid port '%s'\nusage: %s HOST PORT\n", name, argv[2], name);
        exit(2);
    }
    address.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) {
        fprintf(stderr, "%s: bad address '%s': expected a numeric IPv4 address\n", name, argv[1]);
        exit(1);
    }
    peer_raise_fd_limit();
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr*)&address, sizeof(address)) != 0 || listen(fd, SOMAXCONN) != 0) {
        fprintf(stderr, "%s: cannot listen on %s:%s: %s\n", name, argv[1], argv[2],
                strerror(errno));
        exit(1);
    }
    socklen_t length = sizeof(address);
    getsockname(fd, (struct sockaddr*)&address, &length);
    printf("listening on %s:%u\n", argv[1], ntohs(address.sin_port));
    fflush(stdout);
    return fd;
}

/* Echo replies are small and must leave at once, as in ucoro's server. */
static void peer_set_no_delay(int fd) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

#endif
