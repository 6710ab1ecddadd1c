/*
 * v1_only.c: "v1-c", a plugin written only against the nylon-ring version-1 contract: a
 * 56-byte NrPluginInfo (struct_size 56), no KcPluginExt, no KcHostApi. It proves a
 * version-1 plugin loads unchanged in kcoro.
 *
 *   echo    reply OK with the payload, inside handle
 *   stream  payload N (decimal, empty = 5): frames "frame-1".."frame-N", then STREAM_END
 *
 * Build: cc -std=c11 -O2 -fPIC -shared -Isdk/c -o libv1_c.so sdk/c/examples/v1_only.c -lpthread
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcoro_plugin.h"
#include "kc_workers.h"

static void *g_host_ctx;
static const NrHostVTable *g_host;
static KcWorkers g_workers = KC_WORKERS_INIT;

static NrStatus v1_init(void *ctx, void *host_ctx, const NrHostVTable *vtable) {
    (void)ctx;
    if (!vtable) return NR_STATUS_INVALID;
    g_host_ctx = host_ctx;
    g_host = vtable;
    return NR_STATUS_OK;
}

static void v1_shutdown(void *ctx) {
    (void)ctx;
    kc_workers_join_all(&g_workers); /* the library may be unloaded right after */
    g_host = NULL;
    g_host_ctx = NULL;
}

typedef struct StreamJob {
    void *host_ctx;
    NrSendResultFn send;
    uint64_t sid, frames;
} StreamJob;

static void run_stream(void *arg) {
    StreamJob job = *(StreamJob *)arg;
    free(arg);
    for (uint64_t i = 1; i <= job.frames; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "frame-%" PRIu64, i);
        job.send(job.host_ctx, job.sid, NR_STATUS_OK, nr_bytes(buf, (uint64_t)len));
    }
    job.send(job.host_ctx, job.sid, NR_STATUS_STREAM_END, nr_bytes(NULL, 0));
}

static NrStatus v1_handle(void *ctx, NrStr entry, uint64_t sid, const NrRequest *req,
                          NrBytes payload) {
    (void)ctx, (void)req;
    if (!g_host) return NR_STATUS_INVALID;
    if (nr_str_eq(entry, "echo")) {
        g_host->send_result(g_host_ctx, sid, NR_STATUS_OK, payload);
        return NR_STATUS_OK;
    }
    if (!nr_str_eq(entry, "stream")) return NR_STATUS_UNSUPPORTED;

    uint64_t frames = payload.len ? 0 : 5;
    for (uint64_t i = 0; i < payload.len; i++) {
        unsigned d = (unsigned)payload.ptr[i] - '0';
        if (d > 9 || frames > (UINT64_MAX - d) / 10) return NR_STATUS_INVALID;
        frames = frames * 10 + d;
    }
    StreamJob *job = (StreamJob *)malloc(sizeof *job);
    if (!job) return NR_STATUS_ERR;
    job->host_ctx = g_host_ctx;
    job->send = g_host->send_result;
    job->sid = sid;
    job->frames = frames;
    if (kc_workers_spawn(&g_workers, run_stream, job) != 0) {
        free(job);
        return NR_STATUS_ERR;
    }
    return NR_STATUS_OK;
}

static const NrPluginVTable k_vtable = { v1_init, v1_handle, v1_shutdown, NULL, NULL };

static const NrPluginInfo k_info = {
    NR_ABI_VERSION,
    (uint32_t)sizeof(NrPluginInfo), /* 56: version 1, nothing follows */
    NR_STR_LIT("v1-c"),
    NR_STR_LIT("1.0.0"),
    NULL,
    &k_vtable,
};

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
