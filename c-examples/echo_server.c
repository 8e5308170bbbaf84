/*
 * echo_server: echoes every byte back, on every core, with edge-triggered
 * epoll. A connection is closed once the peer has finished sending and
 * everything was echoed.
 *
 *   ./echo_server device=tap ifname=fl0 ip=10.77.1.2/24 tap_host_ip=10.77.1.1/24 port=7
 *
 * Keys of its own: port (default 7). Prints "ready" once every core
 * listens; stops on SIGINT/SIGTERM, frees everything and exits 0.
 */
#include "common.h"

#include <arpa/inet.h>
#include <stdint.h>

#define BUF_SIZE 65536
#define MAX_EVENTS 64

struct conn {
    int fd;
    int eof;            /* the peer has sent FIN */
    size_t len, off;    /* buf[off..len] is still to be echoed */
    struct conn *prev, *next;
    char buf[BUF_SIZE];
};

struct core {
    int init, failed;
    int lfd, ep;
    struct conn *conns; /* to free them all at exit */
    unsigned long long accepted, closed;
};

static struct core cores[FL_MAX_CORES];
static int port = 7;
static int ncores;
static int ready;

static int own_key(const char *key, const char *value)
{
    if (strcmp(key, "port") == 0) {
        port = atoi(value);
        return 1;
    }
    return 0;
}

static void drop(fl_ctx *ctx, struct core *cs, struct conn *c)
{
    fl_close(ctx, c->fd); /* also leaves the epoll set */
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    cs->closed++;
}

static int setup(fl_ctx *ctx, struct core *cs)
{
    struct sockaddr_in a;
    struct epoll_event ev;
    int one = 1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    cs->lfd = fl_socket(ctx, AF_INET, SOCK_STREAM, 0);
    cs->ep = fl_epoll_create(ctx);
    if (cs->lfd < 0 || cs->ep < 0 ||
        fl_setsockopt(ctx, cs->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        fl_bind(ctx, cs->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        fl_listen(ctx, cs->lfd, 1024) != 0) {
        fprintf(stderr, "echo_server: core %d: listen on port %d: %s\n", fl_ctx_core(ctx), port,
                strerror(errno));
        return -1;
    }
    ev.events = EPOLLIN | EPOLLET;
    ev.data.ptr = NULL; /* NULL: the listener */
    if (fl_epoll_ctl(ctx, cs->ep, EPOLL_CTL_ADD, cs->lfd, &ev) != 0) {
        perror("fl_epoll_ctl");
        return -1;
    }
    if (__sync_add_and_fetch(&ready, 1) == ncores) {
        printf("echo_server: ready on port %d, %d cores\n", port, ncores);
        fflush(stdout);
    }
    return 0;
}

static void accept_all(fl_ctx *ctx, struct core *cs)
{
    for (;;) {
        struct epoll_event ev;
        struct conn *c;
        int fd = fl_accept(ctx, cs->lfd, NULL, NULL);
        if (fd < 0) {
            if (errno != EAGAIN)
                perror("fl_accept");
            return; /* EAGAIN: the edge is consumed */
        }
        c = calloc(1, sizeof *c);
        if (!c) {
            fl_close(ctx, fd);
            continue;
        }
        c->fd = fd;
        c->next = cs->conns;
        if (cs->conns)
            cs->conns->prev = c;
        cs->conns = c;
        cs->accepted++;
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = c;
        if (fl_epoll_ctl(ctx, cs->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            perror("fl_epoll_ctl");
            drop(ctx, cs, c);
        }
    }
}

/* Edge-triggered: read and write until EAGAIN (or until the buffer is full
 * and cannot drain), so the next edge comes. */
static void serve(fl_ctx *ctx, struct core *cs, struct conn *c)
{
    for (;;) {
        ssize_t n;
        if (c->off < c->len) {
            n = fl_send(ctx, c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN)
                    return; /* wait for EPOLLOUT */
                drop(ctx, cs, c);
                return;
            }
            c->off += (size_t)n;
            if (c->off < c->len)
                return; /* send buffer full */
            c->off = c->len = 0;
        }
        if (c->eof) {
            drop(ctx, cs, c);
            return;
        }
        n = fl_recv(ctx, c->fd, c->buf, sizeof c->buf, 0);
        if (n > 0) {
            c->len = (size_t)n;
            continue;
        }
        if (n == 0) {
            c->eof = 1;
            continue;
        }
        if (errno != EAGAIN)
            drop(ctx, cs, c);
        return;
    }
}

static int loop(fl_ctx *ctx, void *arg)
{
    struct core *cs = &cores[fl_ctx_core(ctx)];
    struct epoll_event evs[MAX_EVENTS];
    int i, n;
    (void)arg;
    if (!cs->init) {
        cs->init = 1;
        if (setup(ctx, cs) != 0) {
            cs->failed = 1;
            return 1; /* stops every core */
        }
    }
    n = fl_epoll_wait(ctx, cs->ep, evs, MAX_EVENTS, 0);
    for (i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL)
            accept_all(ctx, cs);
        else
            serve(ctx, cs, evs[i].data.ptr);
    }
    return 0;
}

int main(int argc, char **argv)
{
    fl_config *cfg = example_config(argc, argv, own_key);
    fl_runtime *rt;
    int i, rc, failed = 0;
    unsigned long long accepted = 0, closed = 0;
    if (!cfg)
        return 2;
    rt = fl_start(cfg);
    fl_config_free(cfg);
    if (!rt) {
        fprintf(stderr, "echo_server: %s\n", fl_last_error());
        return 1;
    }
    ncores = fl_runtime_cores(rt);
    example_handle_signals(rt);
    rc = fl_run(rt, loop, NULL);
    if (rc != 0)
        fprintf(stderr, "echo_server: %s\n", fl_last_error());
    for (i = 0; i < ncores; i++) {
        /* The sockets went with the stacks; what is left is ours. */
        while (cores[i].conns) {
            struct conn *c = cores[i].conns;
            cores[i].conns = c->next;
            free(c);
        }
        accepted += cores[i].accepted;
        closed += cores[i].closed;
        failed |= cores[i].failed;
    }
    printf("echo_server: %llu connections accepted, %llu closed\n", accepted, closed);
    example_print_stats("echo_server", rt);
    fl_free(rt);
    return rc != 0 || failed;
}
