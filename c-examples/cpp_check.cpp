// The header from C++: it must compile as C++ (extern "C" linkage) and link
// against libflowlane.so. Runs without a device: it only configures, checks
// a few errors and prints the version.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "flowlane.h"

static int echo_loop(fl_ctx *ctx, void *arg)
{
    (void)arg;
    return fl_ctx_core(ctx) >= 0 ? 0 : 1;
}

int main()
{
    fl_config *cfg = fl_config_new();
    if (cfg == nullptr)
        return 1;
    int ok = fl_config_set(cfg, "cores", "2") == 0;
    ok &= fl_config_set(cfg, "congestion", "cubic") == 0;
    ok &= fl_config_set(cfg, "nope", "1") == -1 && errno == EINVAL;
    ok &= fl_start(cfg) == nullptr && errno == EINVAL; // no device yet
    ok &= fl_run(nullptr, echo_loop, nullptr) == -1 && errno == EINVAL;
    fl_config_free(cfg);
    fl_stats st = fl_stats();
    ok &= fl_stats_get(nullptr, &st) == -1;
    ok &= std::strcmp(fl_tcp_state_name(FL_TCP_LISTEN), "LISTEN") == 0;
    ok &= sizeof(st.states) / sizeof(st.states[0]) == FL_TCP_STATE_COUNT;
    std::printf("cpp_check: flowlane %s from C++: %s\n", fl_version(), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
