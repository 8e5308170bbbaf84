/*
 * errno_check: every misuse of the API returns the documented error, with
 * errno set, and never crashes. Runs on two cores against the kernel (the
 * tap's other side) as the peer:
 *
 *   ./errno_check device=tap ifname=fl0 ip=10.77.1.2/24 tap_host_ip=10.77.1.1/24 \
 *                 cores=2 syn_retries=1 initial_rto_ms=100 \
 *                 peer=10.77.1.1 nowhere=10.77.1.250 kport=7100
 *
 * It listens on the kernel side itself (peer:kport; kport+1 stays closed),
 * prints one line per check and "N passed, M failed" at the end; exits 0
 * only if nothing failed.
 */
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <unistd.h>

static int passed, failed;
static struct in_addr peer, nowhere, me;
static int kport = 7100;
static int klisten = -1;

static void report(const char *what, int ok, long rc, int err, int want)
{
    if (ok) {
        __sync_add_and_fetch(&passed, 1);
        printf("ok    %s\n", what);
    } else {
        __sync_add_and_fetch(&failed, 1);
        printf("FAIL  %s: returned %ld, errno %d (%s), want %d (%s)\n", what, rc, err,
               strerror(err), want, strerror(want));
    }
    fflush(stdout);
}

/* `call` fails with -1 and errno `want`. */
#define EXPECT_ERR(want, call)                                                                     \
    do {                                                                                           \
        long rc_;                                                                                  \
        errno = 0;                                                                                 \
        rc_ = (long)(call);                                                                        \
        report(#want ": " #call, rc_ == -1 && errno == (want), rc_, errno, (want));               \
    } while (0)

/* `call` returns NULL with errno `want`. */
#define EXPECT_NULL(want, call)                                                                    \
    do {                                                                                           \
        const void *p_;                                                                            \
        errno = 0;                                                                                 \
        p_ = (const void *)(call);                                                                 \
        report(#want ": " #call, p_ == NULL && errno == (want), p_ != NULL, errno, (want));       \
    } while (0)

/* `call` sets errno `want` (functions returning void). */
#define EXPECT_ERRNO(want, call)                                                                   \
    do {                                                                                           \
        errno = 0;                                                                                 \
        call;                                                                                      \
        report(#want ": " #call, errno == (want), 0, errno, (want));                              \
    } while (0)

/* `cond` holds. */
#define EXPECT(cond) report(#cond, (cond) ? 1 : 0, 0, errno, 0)

static struct sockaddr_in addr(struct in_addr ip, int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr = ip;
    a.sin_port = htons((uint16_t)port);
    return a;
}

#define SA(a) ((struct sockaddr *)&(a))

static int own_key(const char *key, const char *value)
{
    if (strcmp(key, "peer") == 0 || strcmp(key, "nowhere") == 0) {
        if (inet_pton(AF_INET, value, strcmp(key, "peer") == 0 ? &peer : &nowhere) != 1) {
            fprintf(stderr, "errno_check: bad address %s\n", value);
            exit(2);
        }
        return 1;
    }
    if (strcmp(key, "kport") == 0) {
        kport = atoi(value);
        return 1;
    }
    if (strcmp(key, "ip") == 0) {
        char host[32];
        const char *slash = strchr(value, '/');
        size_t n = slash ? (size_t)(slash - value) : strlen(value);
        if (n < sizeof host) {
            memcpy(host, value, n);
            host[n] = '\0';
            inet_pton(AF_INET, host, &me);
        }
        return 0; /* fl_config_set needs it too */
    }
    return 0;
}

/* ----- shared between the cores --------------------------------------------------- */

static fl_ctx *volatile ctx0;   /* core 0's context, for core 1 to misuse */
static volatile int fd0 = -1;   /* a descriptor of core 0 */
static volatile int core1_done;
static fl_ctx *saved_ctx;       /* to misuse after fl_run */

/* ----- core 0 ------------------------------------------------------------------------ */

enum { OK_CONN, OK2_CONN, REFUSED, TIMEOUT, NCONN };
static const char *conn_name[NCONN] = {"established", "half-closed", "refused", "timed out"};

static struct {
    int started;
    int ep;
    int fd[NCONN];
    int done[NCONN];
    int kfd;              /* the kernel's end of OK_CONN */
    int reset_sent;
    int reset_checked;
    unsigned long long deadline;
} c0;

static void synchronous_checks(fl_ctx *ctx)
{
    struct sockaddr_in a = addr(me, 5555), any = addr(me, 0), other = addr(peer, 5556);
    struct sockaddr_in6 a6;
    struct epoll_event ev, evs[8];
    struct linger lg;
    struct iovec iov;
    socklen_t len;
    int s, s2, l, x, y, ep, one = 1, zero = 0, val, n;
    char buf[16];

    /* socket() */
    EXPECT_ERR(EAFNOSUPPORT, fl_socket(ctx, AF_INET6, SOCK_STREAM, 0));
    EXPECT_ERR(EPROTONOSUPPORT, fl_socket(ctx, AF_INET, SOCK_DGRAM, 0));
    EXPECT_ERR(EPROTONOSUPPORT, fl_socket(ctx, AF_INET, SOCK_STREAM, IPPROTO_UDP));
    EXPECT_ERR(EINVAL, fl_socket(NULL, AF_INET, SOCK_STREAM, 0));
    s = fl_socket(ctx, AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    EXPECT(s > 0);
    EXPECT(fl_ctx_core(ctx) == 0);

    /* Not connected. */
    EXPECT_ERR(ENOTCONN, fl_send(ctx, s, "x", 1, 0));
    EXPECT_ERR(ENOTCONN, fl_recv(ctx, s, buf, sizeof buf, 0));
    len = sizeof a;
    EXPECT_ERR(ENOTCONN, fl_getpeername(ctx, s, SA(a), &len));
    EXPECT_ERR(ENOTCONN, fl_shutdown(ctx, s, SHUT_WR));
    EXPECT_ERR(EINVAL, fl_shutdown(ctx, s, 42));

    /* Bad pointers and lengths. */
    EXPECT_ERR(EFAULT, fl_send(ctx, s, NULL, 10, 0));
    EXPECT_ERR(EFAULT, fl_recv(ctx, s, NULL, 10, 0));
    EXPECT_ERR(EFAULT, fl_bind(ctx, s, NULL, sizeof a));
    EXPECT_ERR(EINVAL, fl_bind(ctx, s, SA(a), 4));
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    EXPECT_ERR(EAFNOSUPPORT, fl_bind(ctx, s, (struct sockaddr *)&a6, sizeof a6));
    EXPECT_ERR(EFAULT, fl_getsockname(ctx, s, NULL, &len));
    EXPECT_ERR(EFAULT, fl_getsockopt(ctx, s, SOL_SOCKET, SO_ERROR, NULL, &len));
    EXPECT_ERR(EFAULT, fl_setsockopt(ctx, s, IPPROTO_TCP, TCP_NODELAY, NULL, sizeof one));
    EXPECT_ERR(EINVAL, fl_setsockopt(ctx, s, IPPROTO_TCP, TCP_NODELAY, &one, 2));
    EXPECT_ERR(ENOPROTOOPT, fl_getsockopt(ctx, s, SOL_SOCKET, 9999, &val, &len));
    EXPECT_ERR(ENOPROTOOPT, fl_setsockopt(ctx, s, IPPROTO_IP, IP_TOS, &one, sizeof one));
    EXPECT_ERR(EINVAL, fl_setsockopt(ctx, s, IPPROTO_TCP, TCP_KEEPCNT, &zero, sizeof zero));
    EXPECT_ERR(EOPNOTSUPP, fl_send(ctx, s, "x", 1, MSG_OOB));
    EXPECT_ERR(EINVAL, fl_recv(ctx, s, buf, sizeof buf, MSG_OOB));
    EXPECT_ERR(EINVAL, fl_writev(ctx, s, &iov, -1));
    EXPECT_ERR(EFAULT, fl_writev(ctx, s, NULL, 1));
    EXPECT_ERR(EINVAL, fl_fcntl(ctx, s, F_DUPFD, 0));
    EXPECT((fl_fcntl(ctx, s, F_GETFL, 0) & O_NONBLOCK) != 0);

    /* Options round-trip. */
    lg.l_onoff = 1;
    lg.l_linger = 0;
    EXPECT(fl_setsockopt(ctx, s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    memset(&lg, 0xff, sizeof lg);
    len = sizeof lg;
    EXPECT(fl_getsockopt(ctx, s, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && len == sizeof lg &&
           lg.l_onoff == 1 && lg.l_linger == 0);
    val = 65536;
    EXPECT(fl_setsockopt(ctx, s, SOL_SOCKET, SO_RCVBUF, &val, sizeof val) == 0);
    val = 0;
    len = sizeof val;
    EXPECT(fl_getsockopt(ctx, s, SOL_SOCKET, SO_RCVBUF, &val, &len) == 0 && val == 65536);
    EXPECT(fl_setsockopt(ctx, s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
    val = 0;
    EXPECT(fl_getsockopt(ctx, s, IPPROTO_TCP, TCP_NODELAY, &val, &len) == 0 && val == 1);
    val = 30;
    EXPECT(fl_setsockopt(ctx, s, IPPROTO_TCP, TCP_KEEPIDLE, &val, sizeof val) == 0);
    EXPECT(fl_setsockopt(ctx, s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) == 0);
    val = 0;
    EXPECT(fl_getsockopt(ctx, s, IPPROTO_TCP, TCP_KEEPIDLE, &val, &len) == 0 && val == 30);
    val = 0;
    EXPECT(fl_getsockopt(ctx, s, SOL_SOCKET, SO_KEEPALIVE, &val, &len) == 0 && val == 1);
    val = -1;
    EXPECT(fl_getsockopt(ctx, s, SOL_SOCKET, SO_ERROR, &val, &len) == 0 && val == 0);
    val = -1;
    EXPECT(fl_getsockopt(ctx, s, SOL_SOCKET, SO_TYPE, &val, &len) == 0 && val == SOCK_STREAM);

    /* bind/listen/accept. */
    EXPECT_ERR(EADDRNOTAVAIL, fl_bind(ctx, s, SA(other), sizeof other));
    l = fl_socket(ctx, AF_INET, SOCK_STREAM, 0);
    EXPECT(fl_bind(ctx, l, SA(a), sizeof a) == 0);
    EXPECT_ERR(EINVAL, fl_bind(ctx, l, SA(any), sizeof any));
    EXPECT(fl_listen(ctx, l, 16) == 0);
    s2 = fl_socket(ctx, AF_INET, SOCK_STREAM, 0);
    EXPECT_ERR(EADDRINUSE, fl_bind(ctx, s2, SA(a), sizeof a));
    EXPECT_ERR(EAGAIN, fl_accept(ctx, l, NULL, NULL));
    EXPECT_ERR(EINVAL, fl_accept(ctx, s2, NULL, NULL));
    EXPECT_ERR(ENOTCONN, fl_recv(ctx, l, buf, sizeof buf, 0));
    EXPECT_ERR(EISCONN, fl_connect(ctx, l, SA(other), sizeof other));
    len = sizeof a;
    EXPECT(fl_getsockname(ctx, l, SA(a), &len) == 0 && ntohs(a.sin_port) == 5555);

    /* epoll. */
    ep = fl_epoll_create(ctx);
    EXPECT(ep > 0);
    EXPECT_ERR(EFAULT, fl_epoll_ctl(ctx, ep, EPOLL_CTL_ADD, s, NULL));
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = 77;
    EXPECT(fl_epoll_ctl(ctx, ep, EPOLL_CTL_ADD, s, &ev) == 0);
    EXPECT_ERR(EEXIST, fl_epoll_ctl(ctx, ep, EPOLL_CTL_ADD, s, &ev));
    EXPECT_ERR(ENOENT, fl_epoll_ctl(ctx, ep, EPOLL_CTL_MOD, s2, &ev));
    EXPECT_ERR(ENOENT, fl_epoll_ctl(ctx, ep, EPOLL_CTL_DEL, s2, NULL));
    EXPECT_ERR(EINVAL, fl_epoll_ctl(ctx, ep, 99, s2, &ev));
    EXPECT_ERR(EINVAL, fl_epoll_ctl(ctx, ep, EPOLL_CTL_ADD, ep, &ev));
    EXPECT_ERR(EINVAL, fl_epoll_ctl(ctx, s, EPOLL_CTL_ADD, s2, &ev));
    EXPECT_ERR(EFAULT, fl_epoll_wait(ctx, ep, NULL, 8, 0));
    EXPECT_ERR(EINVAL, fl_epoll_wait(ctx, ep, evs, 0, 0));
    EXPECT_ERR(EINVAL, fl_epoll_wait(ctx, s, evs, 8, 0));
    /* A fresh socket is EPOLLOUT|EPOLLHUP, as on Linux. */
    n = fl_epoll_wait(ctx, ep, evs, 8, 0);
    EXPECT(n == 1 && evs[0].data.u64 == 77 && evs[0].events == (EPOLLOUT | EPOLLHUP));
    EXPECT(fl_close(ctx, ep) == 0);
    EXPECT_ERR(EBADF, fl_epoll_wait(ctx, ep, evs, 8, 0));

    /* Closed, stale and made-up descriptors. */
    x = fl_socket(ctx, AF_INET, SOCK_STREAM, 0);
    EXPECT(fl_close(ctx, x) == 0);
    EXPECT_ERR(EBADF, fl_close(ctx, x));
    EXPECT_ERR(EBADF, fl_send(ctx, x, "x", 1, 0));
    y = fl_socket(ctx, AF_INET, SOCK_STREAM, 0);
    EXPECT(y > 0 && y != x);
    EXPECT_ERR(EBADF, fl_close(ctx, x));
    len = sizeof a;
    EXPECT(fl_getsockname(ctx, y, SA(a), &len) == 0);
    EXPECT_ERR(EBADF, fl_close(ctx, -1));
    EXPECT_ERR(EBADF, fl_close(ctx, 0));
    EXPECT_ERR(EBADF, fl_close(ctx, 123456));
    EXPECT_ERR(EBADF, fl_close(ctx, INT_MAX));
    EXPECT_ERR(EBADF, fl_recv(ctx, 7, buf, sizeof buf, 0));

    fl_close(ctx, y);
    fl_close(ctx, s2);
    fl_close(ctx, s);
    /* l stays open: core 1 misuses it. */
    fd0 = l;
}

static int kernel_listen(void)
{
    struct sockaddr_in a = addr(peer, kport);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, SA(a), sizeof a) != 0 || listen(fd, 16) != 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void start_connections(fl_ctx *ctx)
{
    struct sockaddr_in ok = addr(peer, kport), closed = addr(peer, kport + 1),
                       away = addr(nowhere, 80);
    struct sockaddr_in *to[NCONN] = {&ok, &ok, &closed, &away};
    int i;
    c0.ep = fl_epoll_create(ctx);
    c0.kfd = -1;
    for (i = 0; i < NCONN; i++) {
        struct epoll_event ev;
        c0.fd[i] = fl_socket(ctx, AF_INET, SOCK_STREAM, 0);
        EXPECT_ERR(EINPROGRESS, fl_connect(ctx, c0.fd[i], SA(*to[i]), sizeof *to[i]));
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
        ev.data.u32 = (uint32_t)i;
        fl_epoll_ctl(ctx, c0.ep, EPOLL_CTL_ADD, c0.fd[i], &ev);
    }
    EXPECT_ERR(EALREADY, fl_connect(ctx, c0.fd[OK_CONN], SA(ok), sizeof ok));
}

/* The kernel accepts OK_CONN's connection, then resets it (SO_LINGER 0). */
static void kernel_side(fl_ctx *ctx)
{
    struct sockaddr_in mine, theirs;
    socklen_t len;
    int k;
    if (c0.reset_sent || !c0.done[OK_CONN])
        return;
    len = sizeof mine;
    fl_getsockname(ctx, c0.fd[OK_CONN], SA(mine), &len);
    while ((k = accept(klisten, NULL, NULL)) >= 0) {
        len = sizeof theirs;
        getpeername(k, SA(theirs), &len);
        if (theirs.sin_port == mine.sin_port) {
            struct linger lg = {1, 0};
            setsockopt(k, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(k); /* RST */
            c0.reset_sent = 1;
        } else {
            close(k);
        }
    }
}

static void on_event(fl_ctx *ctx, int which, uint32_t events)
{
    int fd = c0.fd[which], err = -1;
    socklen_t len = sizeof err;
    char buf[16];
    struct sockaddr_in a;
    switch (which) {
    case OK_CONN:
        if (!c0.done[OK_CONN] && (events & EPOLLOUT)) {
            EXPECT(fl_getsockopt(ctx, fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0);
            a = addr(peer, kport);
            EXPECT_ERR(EISCONN, fl_connect(ctx, fd, SA(a), sizeof a));
            EXPECT_ERR(EINVAL, fl_listen(ctx, fd, 4));
            EXPECT_ERR(EAGAIN, fl_recv(ctx, fd, buf, sizeof buf, 0));
            len = sizeof a;
            EXPECT(fl_getpeername(ctx, fd, SA(a), &len) == 0 && a.sin_addr.s_addr == peer.s_addr &&
                   ntohs(a.sin_port) == kport);
            c0.done[OK_CONN] = 1;
        } else if (c0.reset_sent && !c0.reset_checked && (events & EPOLLERR)) {
            EXPECT((events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) == (EPOLLIN | EPOLLHUP | EPOLLRDHUP));
            EXPECT_ERR(EPIPE, fl_send(ctx, fd, "x", 1, 0));
            EXPECT_ERR(EPIPE, fl_send(ctx, fd, "x", 1, MSG_NOSIGNAL));
            EXPECT_ERR(ECONNRESET, fl_recv(ctx, fd, buf, sizeof buf, 0));
            EXPECT(fl_recv(ctx, fd, buf, sizeof buf, 0) == 0);
            EXPECT_ERR(EPIPE, fl_send(ctx, fd, "x", 1, 0));
            err = -1;
            len = sizeof err;
            EXPECT(fl_getsockopt(ctx, fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0);
            c0.reset_checked = 1;
        }
        break;
    case OK2_CONN:
        if (!c0.done[OK2_CONN] && (events & EPOLLOUT)) {
            EXPECT(fl_shutdown(ctx, fd, SHUT_WR) == 0);
            EXPECT_ERR(EPIPE, fl_send(ctx, fd, "x", 1, 0));
            c0.done[OK2_CONN] = 1;
        }
        break;
    case REFUSED:
    case TIMEOUT:
        if (!c0.done[which] && (events & EPOLLERR)) {
            int want = which == REFUSED ? ECONNREFUSED : ETIMEDOUT;
            EXPECT((events & (EPOLLOUT | EPOLLHUP)) == (EPOLLOUT | EPOLLHUP));
            fl_getsockopt(ctx, fd, SOL_SOCKET, SO_ERROR, &err, &len);
            report(which == REFUSED ? "ECONNREFUSED: SO_ERROR after connect to a closed port"
                                    : "ETIMEDOUT: SO_ERROR after connect to nowhere",
                   err == want, err, err, want);
            err = -1;
            fl_getsockopt(ctx, fd, SOL_SOCKET, SO_ERROR, &err, &len);
            EXPECT(err == 0); /* read once */
            c0.done[which] = 1;
        }
        break;
    }
}

static int core0(fl_ctx *ctx)
{
    struct epoll_event evs[8];
    int i, n, all;
    if (!c0.started) {
        c0.started = 1;
        ctx0 = ctx;
        saved_ctx = ctx;
        c0.deadline = fl_ctx_now_us(ctx) + 20000000ULL;
        synchronous_checks(ctx);
        start_connections(ctx);
        return 0;
    }
    kernel_side(ctx);
    n = fl_epoll_wait(ctx, c0.ep, evs, 8, 0);
    for (i = 0; i < n; i++)
        on_event(ctx, (int)evs[i].data.u32, evs[i].events);
    all = c0.reset_checked && core1_done;
    for (i = 0; i < NCONN; i++)
        all = all && c0.done[i];
    if (all)
        return 1;
    if (fl_ctx_now_us(ctx) > c0.deadline) {
        for (i = 0; i < NCONN; i++)
            if (!c0.done[i])
                report(conn_name[i], 0, 0, 0, 0);
        if (!c0.reset_checked)
            report("ECONNRESET/EPIPE after the kernel's RST", 0, 0, 0, 0);
        if (!core1_done)
            report("core 1 ran", 0, 0, 0, 0);
        return 1;
    }
    return 0;
}

/* ----- core 1: another core's context and descriptors --------------------------------- */

static int core1(fl_ctx *ctx)
{
    if (core1_done || fd0 < 0 || ctx0 == NULL)
        return 0;
    __sync_synchronize();
    EXPECT(fl_ctx_core(ctx) == 1);
    EXPECT_ERR(EBADF, fl_close(ctx, fd0));
    EXPECT_ERR(EBADF, fl_listen(ctx, fd0, 4));
    EXPECT_ERR(EBADF, fl_socket(ctx0, AF_INET, SOCK_STREAM, 0));
    EXPECT_ERR(EBADF, fl_ctx_core(ctx0));
    core1_done = 1;
    return 0;
}

static int loop(fl_ctx *ctx, void *arg)
{
    (void)arg;
    return fl_ctx_core(ctx) == 0 ? core0(ctx) : core1(ctx);
}

int main(int argc, char **argv)
{
    fl_config *cfg, *bad;
    fl_runtime *rt;
    struct fl_stats st;

    cfg = example_config(argc, argv, own_key);
    if (!cfg)
        return 2;

    /* Configuration and lifecycle. */
    EXPECT_ERR(EINVAL, fl_config_set(cfg, "no_such_key", "1"));
    EXPECT_ERR(EINVAL, fl_config_set(cfg, "cores", "0"));
    EXPECT_ERR(EINVAL, fl_config_set(cfg, "ip", "banana"));
    EXPECT_ERR(EINVAL, fl_config_set(cfg, "congestion", "bbr"));
    EXPECT_ERR(EFAULT, fl_config_set(cfg, NULL, "1"));
    EXPECT_ERR(EINVAL, fl_config_set(NULL, "cores", "1"));
    EXPECT_NULL(EINVAL, fl_start(NULL));
    bad = fl_config_new();
    EXPECT_NULL(EINVAL, fl_start(bad));
    fl_config_set(bad, "device", "xdp");
    fl_config_set(bad, "ifname", "flnosuch0");
    fl_config_set(bad, "ip", "10.77.255.2/24");
    EXPECT_NULL(ENODEV, fl_start(bad));
    fl_config_free(bad);
    EXPECT_ERRNO(EBADF, fl_config_free(bad));
    EXPECT_ERR(EBADF, fl_config_set(bad, "cores", "1"));
    EXPECT_NULL(EINVAL, fl_tcp_state_name(FL_TCP_STATE_COUNT));
    EXPECT_NULL(EINVAL, fl_tcp_state_name(-1));
    EXPECT(strcmp(fl_tcp_state_name(FL_TCP_ESTABLISHED), "ESTABLISHED") == 0);
    EXPECT(strcmp(fl_tcp_state_name(FL_TCP_TIME_WAIT), "TIME_WAIT") == 0);
    EXPECT_ERR(EINVAL, fl_ctx_core(NULL));
    EXPECT_ERR(EINVAL, fl_run(NULL, loop, NULL));
    EXPECT_ERR(EINVAL, fl_stats_get(NULL, &st));

    rt = fl_start(cfg);
    if (!rt) {
        fprintf(stderr, "errno_check: %s\n", fl_last_error());
        return 2;
    }
    /* The kernel's address exists once fl_start configured the tap. */
    klisten = kernel_listen();
    if (klisten < 0) {
        perror("errno_check: kernel listener");
        return 2;
    }
    if (fl_runtime_cores(rt) != 2) {
        fprintf(stderr, "errno_check: needs cores=2\n");
        return 2;
    }
    EXPECT_ERR(EINVAL, fl_run(rt, NULL, NULL));
    EXPECT_ERR(EFAULT, fl_stats_get(rt, NULL));
    example_handle_signals(rt);
    EXPECT(fl_run(rt, loop, NULL) == 0);

    /* After the run. */
    EXPECT_ERR(EBADF, fl_socket(saved_ctx, AF_INET, SOCK_STREAM, 0));
    EXPECT_ERR(EBADF, fl_ctx_core(saved_ctx));
    EXPECT_ERR(EINVAL, fl_run(rt, loop, NULL));
    EXPECT(fl_stats_get(rt, &st) == 0 && st.cores == 2 && st.connections_opened >= 4);
    /* The tap's own counters: traffic went through it, and it sent no more
       frames than the interface handed it. */
    EXPECT(st.dev_rx_frames > 0 && st.dev_tx_frames > 0 && st.dev_tx_frames <= st.tx_frames);
    fl_free(rt);
    EXPECT_ERR(EBADF, fl_stats_get(rt, &st));
    EXPECT_ERR(EBADF, fl_runtime_cores(rt));
    EXPECT_ERRNO(EBADF, fl_free(rt));
    fl_stop(rt); /* ignored */
    fl_config_free(cfg);
    EXPECT_ERRNO(EBADF, fl_config_free(cfg));
    close(klisten);

    printf("errno_check: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
