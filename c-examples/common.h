/*
 * Helpers shared by the examples: arguments, signals and printing.
 *
 * Every example takes `key=value` arguments. Keys the example knows (port,
 * conns, ...) are its own; every other key goes to fl_config_set, so the
 * examples take all of flowlane's configuration keys:
 *
 *   ./echo_server device=tap ifname=fl0 ip=10.77.1.2/24 tap_host_ip=10.77.1.1/24 port=7
 */
#ifndef FLOWLANE_EXAMPLE_COMMON_H
#define FLOWLANE_EXAMPLE_COMMON_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flowlane.h"

/* The runtime the signal handlers stop. */
static fl_runtime *example_rt;

static inline void example_on_signal(int sig)
{
    (void)sig;
    fl_stop(example_rt); /* an atomic store: safe in a signal handler */
}

/* SIGINT and SIGTERM stop the runtime; fl_run then returns. */
static inline void example_handle_signals(fl_runtime *rt)
{
    struct sigaction sa;
    example_rt = rt;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = example_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/*
 * Splits `key=value` arguments: `own(key, value)` returns 1 for the
 * example's own keys (0 for the rest, which go to fl_config_set). Returns
 * the configuration, or NULL after printing why.
 */
static inline fl_config *example_config(int argc, char **argv, int (*own)(const char *, const char *))
{
    int i;
    fl_config *cfg = fl_config_new();
    if (!cfg) {
        perror("fl_config_new");
        return NULL;
    }
    for (i = 1; i < argc; i++) {
        char key[64];
        const char *eq = strchr(argv[i], '=');
        size_t n = eq ? (size_t)(eq - argv[i]) : 0;
        if (!eq || n == 0 || n >= sizeof key) {
            fprintf(stderr, "%s: arguments are key=value, not %s\n", argv[0], argv[i]);
            fl_config_free(cfg);
            return NULL;
        }
        memcpy(key, argv[i], n);
        key[n] = '\0';
        if (own(key, eq + 1))
            continue;
        if (fl_config_set(cfg, key, eq + 1) != 0) {
            fprintf(stderr, "%s: %s\n", argv[0], fl_last_error());
            fl_config_free(cfg);
            return NULL;
        }
    }
    return cfg;
}

/* Prints the runtime's per-state counts and main counters. */
static inline void example_print_stats(const char *who, fl_runtime *rt)
{
    struct fl_stats st;
    int s;
    if (fl_stats_get(rt, &st) != 0) {
        perror("fl_stats_get");
        return;
    }
    printf("%s: %llu cores, %llu loops, rx %llu frames, tx %llu frames, "
           "%llu accepted, %llu opened, %llu reset\n",
           who, (unsigned long long)st.cores, (unsigned long long)st.loops,
           (unsigned long long)st.rx_frames, (unsigned long long)st.tx_frames,
           (unsigned long long)st.connections_accepted,
           (unsigned long long)st.connections_opened,
           (unsigned long long)st.connections_reset);
    printf("%s: device rx %llu frames, %llu dropped, fill ring empty %llu; "
           "tx %llu frames, %llu dropped, kick retries %llu, kick errors %llu\n",
           who, (unsigned long long)st.dev_rx_frames, (unsigned long long)st.dev_rx_dropped,
           (unsigned long long)st.dev_rx_fill_ring_empty, (unsigned long long)st.dev_tx_frames,
           (unsigned long long)st.dev_tx_dropped, (unsigned long long)st.dev_tx_kick_retries,
           (unsigned long long)st.dev_tx_kick_errors);
    for (s = 0; s < FL_TCP_STATE_COUNT; s++)
        if (st.states[s])
            printf("%s:   %s %llu\n", who, fl_tcp_state_name(s), (unsigned long long)st.states[s]);
    fflush(stdout);
}

#endif
