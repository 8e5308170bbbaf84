/*
 * client: opens `conns` connections to an echo server, sends `bytes` bytes
 * on each (a pattern unique to the connection), half-closes, reads the echo
 * back until the server closes, checks it byte for byte, and prints a
 * summary. Connections are spread over the cores; at most `parallel` are
 * open at a time on each core.
 *
 *   ./client device=tap ifname=fl0 ip=10.77.1.2/24 tap_host_ip=10.77.1.1/24 \
 *            server=10.77.1.1:7 conns=100 bytes=65536
 *
 * Exits 0 if every connection echoed every byte, 1 otherwise (or when
 * timeout_ms, default 60000, passes first).
 */
#include "common.h"

#include <arpa/inet.h>
#include <stdint.h>

#define MAX_EVENTS 64
#define CHUNK 16384

enum phase { CONNECTING, TRANSFER, DONE };

struct conn {
    int fd;
    unsigned id;
    enum phase phase;
    size_t sent, received;
    int half_closed;
    int ok;
};

struct core {
    int init;
    int ep;
    unsigned next;        /* next connection id of this core */
    unsigned open;
    unsigned ok, failed;
    unsigned long long verified;
};

static struct core cores[FL_MAX_CORES];
static struct sockaddr_in server;
static int have_server;
static unsigned conns = 10, parallel = 64;
static size_t bytes = 65536;
static unsigned long long timeout_us = 60000000ULL;
static int ncores;
static unsigned finished; /* connections done, over all cores */

static int own_key(const char *key, const char *value)
{
    if (strcmp(key, "server") == 0) {
        char host[64];
        const char *colon = strrchr(value, ':');
        size_t n = colon ? (size_t)(colon - value) : 0;
        if (!colon || n == 0 || n >= sizeof host) {
            fprintf(stderr, "client: server=ADDR:PORT, not %s\n", value);
            exit(2);
        }
        memcpy(host, value, n);
        host[n] = '\0';
        memset(&server, 0, sizeof server);
        server.sin_family = AF_INET;
        server.sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &server.sin_addr) != 1) {
            fprintf(stderr, "client: bad address %s\n", host);
            exit(2);
        }
        have_server = 1;
        return 1;
    }
    if (strcmp(key, "conns") == 0) {
        conns = (unsigned)strtoul(value, NULL, 10);
        return 1;
    }
    if (strcmp(key, "bytes") == 0) {
        bytes = (size_t)strtoull(value, NULL, 10);
        return 1;
    }
    if (strcmp(key, "parallel") == 0) {
        parallel = (unsigned)strtoul(value, NULL, 10);
        if (parallel == 0)
            parallel = 1;
        return 1;
    }
    if (strcmp(key, "timeout_ms") == 0) {
        timeout_us = strtoull(value, NULL, 10) * 1000ULL;
        return 1;
    }
    return 0;
}

/* Byte `i` of connection `id`'s stream. */
static unsigned char pattern(unsigned id, size_t i)
{
    return (unsigned char)((i * 131u + (i >> 8) * 7u + id * 29u) & 0xff);
}

static void finish(fl_ctx *ctx, struct core *cs, struct conn *c, int ok, const char *why)
{
    if (!ok)
        fprintf(stderr, "client: connection %u failed: %s (%s); sent %zu, echoed %zu of %zu\n",
                c->id, why, strerror(errno), c->sent, c->received, bytes);
    fl_close(ctx, c->fd);
    c->phase = DONE;
    if (ok) {
        cs->ok++;
        cs->verified += c->received;
    } else {
        cs->failed++;
    }
    cs->open--;
    __sync_add_and_fetch(&finished, 1);
    free(c);
}

static void open_more(fl_ctx *ctx, struct core *cs)
{
    int core = fl_ctx_core(ctx);
    while (cs->open < parallel) {
        unsigned id = cs->next * (unsigned)ncores + (unsigned)core;
        struct epoll_event ev;
        struct conn *c;
        if (id >= conns)
            return;
        cs->next++;
        c = calloc(1, sizeof *c);
        if (!c)
            return;
        c->id = id;
        c->fd = fl_socket(ctx, AF_INET, SOCK_STREAM, 0);
        cs->open++;
        if (c->fd < 0) {
            finish(ctx, cs, c, 0, "socket");
            continue;
        }
        if (fl_connect(ctx, c->fd, (struct sockaddr *)&server, sizeof server) != 0 &&
            errno != EINPROGRESS) {
            finish(ctx, cs, c, 0, "connect");
            continue;
        }
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
        ev.data.ptr = c;
        if (fl_epoll_ctl(ctx, cs->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
            finish(ctx, cs, c, 0, "epoll_ctl");
    }
}

static void progress(fl_ctx *ctx, struct core *cs, struct conn *c)
{
    unsigned char buf[CHUNK];
    if (c->phase == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (fl_getsockopt(ctx, c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            errno = err;
            finish(ctx, cs, c, 0, "connect (SO_ERROR)");
            return;
        }
        c->phase = TRANSFER;
    }
    while (c->sent < bytes) {
        size_t n = bytes - c->sent < CHUNK ? bytes - c->sent : CHUNK, i;
        ssize_t w;
        for (i = 0; i < n; i++)
            buf[i] = pattern(c->id, c->sent + i);
        w = fl_send(ctx, c->fd, buf, n, 0);
        if (w < 0) {
            if (errno == EAGAIN)
                break;
            finish(ctx, cs, c, 0, "send");
            return;
        }
        c->sent += (size_t)w;
    }
    if (c->sent == bytes && !c->half_closed) {
        if (fl_shutdown(ctx, c->fd, SHUT_WR) != 0) {
            finish(ctx, cs, c, 0, "shutdown");
            return;
        }
        c->half_closed = 1;
        /* Only reading is left. */
        {
            struct epoll_event ev;
            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.ptr = c;
            fl_epoll_ctl(ctx, cs->ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    for (;;) {
        ssize_t r = fl_recv(ctx, c->fd, buf, sizeof buf, 0);
        size_t i;
        if (r > 0) {
            for (i = 0; i < (size_t)r; i++)
                if (c->received + i >= bytes || buf[i] != pattern(c->id, c->received + i)) {
                    errno = 0;
                    finish(ctx, cs, c, 0, "echo differs");
                    return;
                }
            c->received += (size_t)r;
            continue;
        }
        if (r == 0) {
            errno = 0;
            finish(ctx, cs, c, c->received == bytes && c->sent == bytes,
                   "closed before the whole echo");
            return;
        }
        if (errno != EAGAIN)
            finish(ctx, cs, c, 0, "recv");
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
        cs->ep = fl_epoll_create(ctx);
        if (cs->ep < 0) {
            perror("fl_epoll_create");
            return 1;
        }
    }
    open_more(ctx, cs);
    n = fl_epoll_wait(ctx, cs->ep, evs, MAX_EVENTS, 0);
    for (i = 0; i < n; i++)
        progress(ctx, cs, evs[i].data.ptr);
    if (__sync_add_and_fetch(&finished, 0) >= conns)
        return 1; /* all done: stop every core */
    if (fl_ctx_now_us(ctx) > timeout_us) {
        fprintf(stderr, "client: timed out with %u connections open on core %d\n", cs->open,
                fl_ctx_core(ctx));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    fl_config *cfg = example_config(argc, argv, own_key);
    fl_runtime *rt;
    unsigned ok = 0, failed = 0;
    unsigned long long verified = 0;
    int i, rc;
    if (!cfg)
        return 2;
    if (!have_server) {
        fprintf(stderr, "client: server=ADDR:PORT is required\n");
        fl_config_free(cfg);
        return 2;
    }
    rt = fl_start(cfg);
    fl_config_free(cfg);
    if (!rt) {
        fprintf(stderr, "client: %s\n", fl_last_error());
        return 1;
    }
    ncores = fl_runtime_cores(rt);
    example_handle_signals(rt);
    rc = fl_run(rt, loop, NULL);
    for (i = 0; i < ncores; i++) {
        ok += cores[i].ok;
        failed += cores[i].failed;
        verified += cores[i].verified;
    }
    printf("client: %u connections: %u ok, %u failed, %u unfinished; %llu bytes echoed and "
           "verified\n",
           conns, ok, failed, conns - ok - failed, verified);
    example_print_stats("client", rt);
    fl_free(rt);
    return rc != 0 || ok != conns;
}
