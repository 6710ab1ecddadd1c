/*
 * late_thread.c: a kcoro version-1 plugin ("c-late-thread") whose threads outlive it.
 *
 *   echo     OK + the payload, inside handle
 *   forever  starts a thread that is never joined: OK "tick" for that sid every
 *            millisecond until the process exits, long after shutdown has returned
 *
 * shutdown returns at once. The host must keep every such reply harmless: dropped and
 * counted while the plugin is loaded, ignored at its gate once it is gone.
 */
#include "ny_threads.h"

#include <stdatomic.h>

#include "kcoro_plugin.h"

static void *g_host_ctx;
static const NrHostVTable *g_host;
static atomic_ulong g_late;

typedef struct Ticker {
    void *host_ctx;
    NrSendResultFn send;
    uint64_t sid;
} Ticker;

static void run_forever(void *p) {
    Ticker t = *(Ticker *)p;
    free(p);
    for (;;) {
        t.send(t.host_ctx, t.sid, NR_STATUS_OK, nr_bytes("tick", 4));
        atomic_fetch_add(&g_late, 1);
        ny_sleep_us(1000);
    }
}

static NrStatus p_init(void *ctx, void *host_ctx, const NrHostVTable *host) {
    (void)ctx;
    if (!host) return NR_STATUS_INVALID;
    g_host_ctx = host_ctx;
    g_host = host;
    return NR_STATUS_OK;
}

static void p_shutdown(void *ctx) {
    (void)ctx; /* deliberately joins nothing */
    g_host = NULL;
}

static NrStatus p_handle(void *ctx, NrStr entry, uint64_t sid, const NrRequest *req, NrBytes payload) {
    (void)ctx, (void)req;
    if (!g_host) return NR_STATUS_INVALID;
    if (nr_str_eq(entry, "echo")) {
        g_host->send_result(g_host_ctx, sid, NR_STATUS_OK, payload);
        return NR_STATUS_OK;
    }
    if (!nr_str_eq(entry, "forever")) return NR_STATUS_UNSUPPORTED;
    Ticker *t = (Ticker *)malloc(sizeof *t);
    if (!t) return NR_STATUS_ERR;
    t->host_ctx = g_host_ctx;
    t->send = g_host->send_result;
    t->sid = sid;
    if (ny_spawn(run_forever, t) != 0) {
        free(t);
        return NR_STATUS_ERR;
    }
    return NR_STATUS_OK;
}

NR_EXPORT unsigned long test_late_sends(void) {
    return atomic_load(&g_late);
}

static const NrPluginVTable k_vtable = { p_init, p_handle, p_shutdown, NULL, NULL };
static const NrPluginInfo k_info = { NR_ABI_VERSION, sizeof(NrPluginInfo), NR_STR_LIT("c-late-thread"),
                                     NR_STR_LIT("1.0.0"), NULL, &k_vtable };

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
