/*
 * early.c: a C plugin of nylon-ring's layouts from before its first release, written
 * from the repository's #[repr(C)] types (nylon_abi.h). Built twice: -DNY_SLOTS=3 is the
 * 3-slot layout (init, handle, shutdown: "c-nylon-3slot"), -DNY_SLOTS=6 the 6-slot one
 * (init, handle, handle_raw, shutdown, stream_data, stream_close: "c-nylon-6slot").
 * Every function takes plugin_ctx first and checks it is this plugin's own.
 *
 *   echo      OK + the payload (through handle_raw, where there is one: "raw:" + payload)
 *   meta      OK + "METHOD PATH?QUERY k=v ..." from the request
 *   stream    N frames "frame-1".."frame-N" (N = payload, default 5) from a thread, then
 *             STREAM_END
 *   bidi      (6-slot) each stream_data echoed; STREAM_END on stream_close
 *   state     set "key" = payload, read it back, reply with it: through the state table
 *             the nylon-ring-host of the era kept a pointer to inside host_ctx (at byte 48
 *             in the 6-slot era, 80 in the 3-slot era: where its get_host_ext read it)
 *   five      returns 5, which these layouts never assigned
 *   error     ERR + "boom"
 *   fast_echo (6-slot) OK + the payload, through handle_raw only (the seed's raw entry):
 *             handle answers UNSUPPORTED
 *
 * -DNY_TRAILER=WORD puts WORD right after the vtable, where nylon-ring's own 3-slot
 * example plugins had a length (0x911): what a longer layout reads as its next slot,
 * whatever order the linker gives the objects.
 */
#include "ny_threads.h"
#include "nylon_abi.h"

#include <stdio.h>

#if NY_SLOTS == 3
#define PLUGIN_NAME "c-nylon-3slot"
#define HOST_EXT_AT 80
#elif NY_SLOTS == 6
#define PLUGIN_NAME "c-nylon-6slot"
#define HOST_EXT_AT 48
#else
#error "build with -DNY_SLOTS=3 or -DNY_SLOTS=6"
#endif

static int g_self; /* plugin_ctx is &g_self */

/* The early hosts' state table: set_state answers an empty view on success. */
typedef struct NyEarlyHostExt {
    NyBytes (*set_state)(void *host_ctx, uint64_t sid, NyStr key, NyBytes value);
    NyBytes (*get_state)(void *host_ctx, uint64_t sid, NyStr key);
} NyEarlyHostExt;
static void *g_host_ctx;
static const NyEarlyHostVTable *g_host;

typedef struct Job {
    void *host_ctx;
    const NyEarlyHostVTable *host;
    uint64_t sid, n;
} Job;

static void run_stream(void *p) {
    Job j = *(Job *)p;
    free(p);
    for (uint64_t i = 1; i <= j.n; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "frame-%llu", (unsigned long long)i);
        j.host->send_result(j.host_ctx, j.sid, NY_OK, ny_bytes(buf, (uint64_t)len));
    }
    j.host->send_result(j.host_ctx, j.sid, NY_STREAM_END, ny_bytes(NULL, 0));
}

static NyStatus p_init(void *ctx, void *host_ctx, const NyEarlyHostVTable *host) {
    if (ctx != &g_self || !host) return NY_INVALID;
    g_host_ctx = host_ctx;
    g_host = host;
    return NY_OK;
}

static void p_shutdown(void *ctx) {
    (void)ctx;
    g_host = NULL;
}

static void send(uint64_t sid, NyStatus st, const void *p, size_t n) {
    g_host->send_result(g_host_ctx, sid, st, ny_bytes(p, n));
}

static void append(char *buf, size_t cap, size_t *at, NyStr s) {
    size_t n = s.len < cap - *at ? s.len : cap - *at;
    if (n) memcpy(buf + *at, s.ptr, n);
    *at += n;
}

static NyStatus p_handle(void *ctx, NyStr entry, uint64_t sid, const NyRequest *req, NyBytes payload) {
    if (ctx != &g_self || !g_host) return NY_INVALID;
    if (ny_str_eq(entry, "echo")) {
        send(sid, NY_OK, payload.ptr, (size_t)payload.len);
        return NY_OK;
    }
    if (ny_str_eq(entry, "meta")) {
        if (!req) return NY_INVALID;
        char buf[512];
        size_t at = 0;
        NyStr sp = NY_STR_LIT(" "), q = NY_STR_LIT("?"), eq = NY_STR_LIT("=");
        append(buf, sizeof buf, &at, req->method);
        append(buf, sizeof buf, &at, sp);
        append(buf, sizeof buf, &at, req->path);
        append(buf, sizeof buf, &at, q);
        append(buf, sizeof buf, &at, req->query);
        for (uint32_t i = 0; i < req->headers_len; i++) {
            append(buf, sizeof buf, &at, sp);
            append(buf, sizeof buf, &at, req->headers[i].key);
            append(buf, sizeof buf, &at, eq);
            append(buf, sizeof buf, &at, req->headers[i].value);
        }
        send(sid, NY_OK, buf, at);
        return NY_OK;
    }
    if (ny_str_eq(entry, "stream")) {
        uint64_t n = ny_parse(payload.ptr, payload.len, 5);
        Job *j = (Job *)malloc(sizeof *j);
        if (n == UINT64_MAX || !j) {
            free(j);
            return NY_INVALID;
        }
        j->host_ctx = g_host_ctx;
        j->host = g_host;
        j->sid = sid;
        j->n = n;
        if (ny_spawn(run_stream, j) != 0) {
            free(j);
            return NY_ERR;
        }
        return NY_OK;
    }
    if (ny_str_eq(entry, "state")) {
        const NyEarlyHostExt *ext;
        memcpy(&ext, (const char *)g_host_ctx + HOST_EXT_AT, sizeof ext);
        if (!ext) return NY_UNSUPPORTED;
        NyStr key = NY_STR_LIT("key");
        NyBytes set = ext->set_state(g_host_ctx, sid, key, payload);
        if (set.len != 0) return NY_ERR; /* the early hosts answered an empty view */
        NyBytes got = ext->get_state(g_host_ctx, sid, key);
        send(sid, NY_OK, got.ptr, (size_t)got.len);
        return NY_OK;
    }
    if (ny_str_eq(entry, "bidi")) return NY_OK;
    if (ny_str_eq(entry, "five")) return 5;
    if (ny_str_eq(entry, "error")) {
        send(sid, NY_ERR, "boom", 4);
        return NY_OK;
    }
    return NY_UNSUPPORTED;
}

#if NY_SLOTS == 6
static NyStatus p_handle_raw(void *ctx, NyStr entry, uint64_t sid, NyBytes payload) {
    if (ctx != &g_self || !g_host) return NY_INVALID;
    if (ny_str_eq(entry, "echo")) {
        char buf[256];
        size_t n = payload.len < sizeof buf - 4 ? (size_t)payload.len : sizeof buf - 4;
        memcpy(buf, "raw:", 4);
        if (n) memcpy(buf + 4, payload.ptr, n);
        send(sid, NY_OK, buf, n + 4);
        return NY_OK;
    }
    if (ny_str_eq(entry, "fast_echo")) {
        send(sid, NY_OK, payload.ptr, (size_t)payload.len);
        return NY_OK;
    }
    return p_handle(ctx, entry, sid, NULL, payload);
}

static NyStatus p_stream_data(void *ctx, uint64_t sid, NyBytes data) {
    if (ctx != &g_self || !g_host) return NY_INVALID;
    send(sid, NY_OK, data.ptr, (size_t)data.len);
    return NY_OK;
}

static NyStatus p_stream_close(void *ctx, uint64_t sid) {
    if (ctx != &g_self || !g_host) return NY_INVALID;
    send(sid, NY_STREAM_END, NULL, 0);
    return NY_OK;
}

static const NyEarly6VTable k_vtable = { p_init, p_handle, p_handle_raw, p_shutdown, p_stream_data, p_stream_close };
#elif defined(NY_TRAILER)
static const struct {
    NyEarly3VTable vtable;
    uintptr_t after;
} k_table = { { p_init, p_handle, p_shutdown }, (uintptr_t)(NY_TRAILER) };
#define k_vtable (k_table.vtable)
#else
static const NyEarly3VTable k_vtable = { p_init, p_handle, p_shutdown };
#endif

static const NyPluginInfo k_info = { 1, sizeof(NyPluginInfo), NY_STR_LIT(PLUGIN_NAME), NY_STR_LIT("0.0.0"), &g_self,
                                     &k_vtable };

NY_EXPORT const NyPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
