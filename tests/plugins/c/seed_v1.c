/*
 * seed_v1.c: "c-seed-v1", a plugin written exactly from the seed document's version-1 ABI
 * (its NrPluginVTable and NrPluginInfo, through sdk/c/kcoro_plugin.h): a 56-byte info, no
 * extension table, all five slots, and a plugin_ctx it is handed back. kcoro-host detects
 * its layout (kcoro-v1) without being told: the plugin_ctx rules out nylon-0.1, the five
 * functions the 3-slot layout, the word after them the 6-slot one.
 *
 *   echo   OK + the payload
 *   meta   OK + "METHOD PATH" from the request
 *   bidi   each stream_data echoed as a frame; STREAM_END on stream_close
 *
 * Every function checks that plugin_ctx is its own. The info follows the vtable in one
 * object, as compilers usually lay them out, so the word after the vtable does not depend
 * on the linker's order. With -DSEED_HEAP_VTABLE both are copied to the heap (below).
 */
#include "kcoro_plugin.h"

#include <string.h>

typedef struct Self {
    void *host_ctx;
    const NrHostVTable *host;
} Self;

static Self g_self;

static NrStatus p_init(void *ctx, void *host_ctx, const NrHostVTable *host) {
    if (ctx != &g_self || !host) return NR_STATUS_INVALID;
    g_self.host_ctx = host_ctx;
    g_self.host = host;
    return NR_STATUS_OK;
}

static void send(Self *self, uint64_t sid, NrStatus st, const void *p, size_t n) {
    self->host->send_result(self->host_ctx, sid, st, nr_bytes(p, (uint64_t)n));
}

static NrStatus p_handle(void *ctx, NrStr entry, uint64_t sid, const NrRequest *req, NrBytes payload) {
    Self *self = (Self *)ctx;
    if (self != &g_self || !self->host) return NR_STATUS_INVALID;
    if (nr_str_eq(entry, "echo")) {
        send(self, sid, NR_STATUS_OK, payload.ptr, (size_t)payload.len);
        return NR_STATUS_OK;
    }
    if (nr_str_eq(entry, "meta")) {
        if (!req) return NR_STATUS_INVALID;
        char buf[256];
        size_t m = req->method.len < 64 ? req->method.len : 64, p = req->path.len < 128 ? req->path.len : 128;
        memcpy(buf, req->method.ptr, m);
        buf[m] = ' ';
        memcpy(buf + m + 1, req->path.ptr, p);
        send(self, sid, NR_STATUS_OK, buf, m + 1 + p);
        return NR_STATUS_OK;
    }
    if (nr_str_eq(entry, "bidi")) return NR_STATUS_OK;
    return NR_STATUS_UNSUPPORTED;
}

static void p_shutdown(void *ctx) {
    if (ctx == &g_self) g_self.host = NULL;
}

static NrStatus p_stream_data(void *ctx, uint64_t sid, NrBytes data) {
    if (ctx != &g_self || !g_self.host) return NR_STATUS_INVALID;
    send(&g_self, sid, NR_STATUS_OK, data.ptr, (size_t)data.len);
    return NR_STATUS_OK;
}

static NrStatus p_stream_close(void *ctx, uint64_t sid) {
    if (ctx != &g_self || !g_self.host) return NR_STATUS_INVALID;
    send(&g_self, sid, NR_STATUS_STREAM_END, NULL, 0);
    return NR_STATUS_OK;
}

static const struct {
    NrPluginVTable vtable;
    NrPluginInfo info;
} k_plugin = {
    { p_init, p_handle, p_shutdown, p_stream_data, p_stream_close },
    { NR_ABI_VERSION, (uint32_t)sizeof(NrPluginInfo), NR_STR_LIT("c-seed-v1"), NR_STR_LIT("1.0.0"), &g_self,
      &k_plugin.vtable },
};

#ifdef SEED_HEAP_VTABLE
#include <stdlib.h>

/* -DSEED_HEAP_VTABLE: the info and vtable are built on the heap at the first call, as a
 * plugin generated at run time would; nothing bounds the table there. */
NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    static NrPluginInfo *info;
    if (!info) {
        NrPluginVTable *vt = (NrPluginVTable *)malloc(sizeof *vt);
        NrPluginInfo *in = (NrPluginInfo *)malloc(sizeof *in);
        if (!vt || !in) return NULL;
        *vt = k_plugin.vtable;
        *in = k_plugin.info;
        in->vtable = vt;
        info = in;
    }
    return info;
}
#else
NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_plugin.info;
}
#endif
