/*
 * http_server: a small HTTP/1.1 server on every core, with level-triggered
 * epoll: keep-alive (HTTP/1.1 by default, HTTP/1.0 with
 * "Connection: keep-alive"), "Connection: close", pipelined requests, 400
 * for garbage, and GET /stats for the runtime's per-state counts.
 *
 *   ./http_server device=xdp ifname=veth0 ip=10.77.1.2/24 cores=2 port=8080
 *
 * Keys of its own: port (default 8080). Prints "ready" once every core
 * listens; stops on SIGINT/SIGTERM and exits 0.
 */
#include "common.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>

#define IN_SIZE 8192
#define OUT_SIZE 16384
#define MAX_EVENTS 64

struct conn {
    int fd;
    int closing;         /* close once `out` is sent */
    int want_out;        /* EPOLLOUT is in the interest set */
    size_t in_len;
    size_t out_len, out_off;
    struct conn *prev, *next;
    char in[IN_SIZE];
    char out[OUT_SIZE];
};

struct core {
    int init, failed;
    int lfd, ep;
    struct conn *conns;
    unsigned long long requests;
};

static struct core cores[FL_MAX_CORES];
static int port = 8080;
static int ncores;
static int ready;
static fl_runtime *runtime;

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
    fl_close(ctx, c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
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
    cs->lfd = fl_socket(ctx, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    cs->ep = fl_epoll_create(ctx);
    if (cs->lfd < 0 || cs->ep < 0 ||
        fl_setsockopt(ctx, cs->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        fl_bind(ctx, cs->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        fl_listen(ctx, cs->lfd, 1024) != 0) {
        fprintf(stderr, "http_server: core %d: listen on port %d: %s\n", fl_ctx_core(ctx), port,
                strerror(errno));
        return -1;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (fl_epoll_ctl(ctx, cs->ep, EPOLL_CTL_ADD, cs->lfd, &ev) != 0)
        return -1;
    if (__sync_add_and_fetch(&ready, 1) == ncores) {
        printf("http_server: ready on port %d, %d cores\n", port, ncores);
        fflush(stdout);
    }
    return 0;
}

static void interest(fl_ctx *ctx, struct core *cs, struct conn *c, int want_out)
{
    struct epoll_event ev;
    if (c->want_out == want_out)
        return;
    c->want_out = want_out;
    ev.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0);
    ev.data.ptr = c;
    fl_epoll_ctl(ctx, cs->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void accept_one(fl_ctx *ctx, struct core *cs)
{
    struct epoll_event ev;
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    struct conn *c;
    int fd = fl_accept(ctx, cs->lfd, (struct sockaddr *)&peer, &len);
    if (fd < 0)
        return; /* level-triggered: the next wait reports the rest */
    c = calloc(1, sizeof *c);
    if (!c) {
        fl_close(ctx, fd);
        return;
    }
    c->fd = fd;
    c->next = cs->conns;
    if (cs->conns)
        cs->conns->prev = c;
    cs->conns = c;
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    if (fl_epoll_ctl(ctx, cs->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        drop(ctx, cs, c);
}

/* Case-insensitive search for a header line "name: value" in head[0..len]. */
static int header_has(const char *head, size_t len, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), i;
    for (i = 0; i + nl + 1 < len; i++) {
        size_t j;
        if (i > 0 && head[i - 1] != '\n')
            continue;
        for (j = 0; j < nl && tolower((unsigned char)head[i + j]) == tolower((unsigned char)name[j]); j++)
            ;
        if (j < nl || head[i + nl] != ':')
            continue;
        j = i + nl + 1;
        while (j < len && head[j] == ' ')
            j++;
        if (j + vl <= len) {
            size_t k;
            for (k = 0; k < vl && tolower((unsigned char)head[j + k]) == tolower((unsigned char)value[k]); k++)
                ;
            if (k == vl)
                return 1;
        }
    }
    return 0;
}

static void respond(struct conn *c, int status, const char *reason, const char *body, int keep)
{
    size_t room = sizeof c->out - c->out_len;
    int n = snprintf(c->out + c->out_len, room,
                     "HTTP/1.1 %d %s\r\nServer: flowlane-c-example\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %u\r\nConnection: %s\r\n\r\n%s",
                     status, reason, (unsigned)strlen(body), keep ? "keep-alive" : "close", body);
    if (n > 0 && (size_t)n < room)
        c->out_len += (size_t)n;
    if (!keep)
        c->closing = 1;
}

static void stats_body(char *body, size_t size)
{
    struct fl_stats st;
    size_t used = 0;
    int s;
    body[0] = '\0';
    if (fl_stats_get(runtime, &st) != 0)
        return;
    for (s = 0; s < FL_TCP_STATE_COUNT; s++) {
        int n = snprintf(body + used, size - used, "%s %llu\n", fl_tcp_state_name(s),
                         (unsigned long long)st.states[s]);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
}

/* Answers every complete request in `in`. Returns -1 on garbage. */
static int handle_requests(fl_ctx *ctx, struct core *cs, struct conn *c)
{
    for (;;) {
        char *end;
        size_t head_len, i;
        int http10, keep;
        char body[512];
        if (c->closing)
            return 0;
        end = NULL;
        for (i = 0; i + 3 < c->in_len; i++)
            if (memcmp(c->in + i, "\r\n\r\n", 4) == 0) {
                end = c->in + i;
                break;
            }
        if (!end) {
            if (c->in_len == sizeof c->in) {
                respond(c, 400, "Bad Request", "request too large\n", 0);
                return 0;
            }
            return 0; /* wait for more */
        }
        head_len = (size_t)(end - c->in) + 4;
        if (sizeof c->out - c->out_len < 1024)
            return 0; /* let the pending responses go out first */
        if (head_len < 14 || (memcmp(c->in, "GET ", 4) != 0 && memcmp(c->in, "HEAD ", 5) != 0)) {
            respond(c, 400, "Bad Request", "bad request\n", 0);
            return 0;
        }
        {
            const char *line_end = memchr(c->in, '\r', head_len);
            size_t line = (size_t)(line_end - c->in);
            if (line < 14 || memcmp(line_end - 9, " HTTP/1.", 8) != 0) {
                respond(c, 400, "Bad Request", "bad request line\n", 0);
                return 0;
            }
            http10 = line_end[-1] == '0';
        }
        keep = http10 ? header_has(c->in, head_len, "connection", "keep-alive")
                      : !header_has(c->in, head_len, "connection", "close");
        cs->requests++;
        if (memcmp(c->in, "GET /stats ", 11) == 0)
            stats_body(body, sizeof body);
        else
            snprintf(body, sizeof body, "hello from flowlane core %d\n", fl_ctx_core(ctx));
        respond(c, 200, "OK", body, keep);
        memmove(c->in, c->in + head_len, c->in_len - head_len);
        c->in_len -= head_len;
    }
}

static void serve(fl_ctx *ctx, struct core *cs, struct conn *c, uint32_t events)
{
    if (events & EPOLLIN) {
        int eof = 0;
        for (;;) {
            ssize_t n;
            if (c->in_len == sizeof c->in)
                break;
            n = fl_recv(ctx, c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
            if (n > 0) {
                c->in_len += (size_t)n;
                continue;
            }
            if (n == 0) {
                eof = 1; /* answer what came, then close */
                break;
            }
            if (errno != EAGAIN) {
                drop(ctx, cs, c); /* reset */
                return;
            }
            break;
        }
        handle_requests(ctx, cs, c);
        if (eof)
            c->closing = 1;
    } else if (events & (EPOLLERR | EPOLLHUP)) {
        drop(ctx, cs, c);
        return;
    }
    while (c->out_off < c->out_len) {
        ssize_t n = fl_send(ctx, c->fd, c->out + c->out_off, c->out_len - c->out_off, 0);
        if (n < 0) {
            if (errno == EAGAIN)
                break;
            drop(ctx, cs, c);
            return;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->closing) {
            drop(ctx, cs, c);
            return;
        }
        handle_requests(ctx, cs, c); /* requests that waited for room */
    }
    interest(ctx, cs, c, c->out_len > 0);
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
            return 1;
        }
    }
    n = fl_epoll_wait(ctx, cs->ep, evs, MAX_EVENTS, 0);
    for (i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL)
            accept_one(ctx, cs);
        else
            serve(ctx, cs, evs[i].data.ptr, evs[i].events);
    }
    return 0;
}

int main(int argc, char **argv)
{
    fl_config *cfg = example_config(argc, argv, own_key);
    int i, rc, failed = 0;
    if (!cfg)
        return 2;
    runtime = fl_start(cfg);
    fl_config_free(cfg);
    if (!runtime) {
        fprintf(stderr, "http_server: %s\n", fl_last_error());
        return 1;
    }
    ncores = fl_runtime_cores(runtime);
    example_handle_signals(runtime);
    rc = fl_run(runtime, loop, NULL);
    if (rc != 0)
        fprintf(stderr, "http_server: %s\n", fl_last_error());
    for (i = 0; i < ncores; i++) {
        while (cores[i].conns) {
            struct conn *c = cores[i].conns;
            cores[i].conns = c->next;
            free(c);
        }
        printf("http_server: core %d answered %llu requests\n", i, cores[i].requests);
        failed |= cores[i].failed;
    }
    example_print_stats("http_server", runtime);
    fl_free(runtime);
    return rc != 0 || failed;
}
