/*
 * nylon_rel.c: a C plugin of nylon-ring's released layouts, written from the crates'
 * #[repr(C)] types (nylon_abi.h). Built twice: with -DNY_V2=0 it is a nylon-ring 0.1.x
 * plugin ("c-nylon-0.1"), with -DNY_V2=1 an ABI 2 one ("c-nylon-0.2").
 *
 *   echo        Ok + the payload, a borrowed NyVec, inside handle
 *   echo_vec    Ok + the payload in an owned NyVec (malloc; drop_fn frees, counted)
 *   echo_async  Ok + the payload, from another thread
 *   stream      N frames "frame-1".."frame-N" (N = payload, default 5) from a thread,
 *               retrying a frame answered BACKPRESSURE (6); then STREAM_END
 *   bidi        each stream_data echoed; STREAM_END on stream_close
 *   panic       returns PANIC (5), as nylon-ring's macros do for a contained panic
 *   bad         returns 9, a value no layout assigns
 *   error       ERR + "boom"
 * ABI 2 only:
 *   owned       Ok + the payload through send_result_owned (malloc; release counted)
 *   lease       Ok + the payload reversed, written into a host-leased buffer
 *   and resolve_entry / handle_by_id over the same entries.
 */
#include "ny_threads.h"
#include "nylon_abi.h"

#include <stdatomic.h>
#include <stdio.h>

#ifndef NY_V2
#error "build with -DNY_V2=0 (nylon-ring 0.1) or -DNY_V2=1 (ABI 2)"
#endif

#if NY_V2
typedef Ny2HostVTable HostVTable;
#define PLUGIN_NAME "c-nylon-0.2"
#else
typedef Ny01HostVTable HostVTable;
#define PLUGIN_NAME "c-nylon-0.1"
#endif

static void *g_host_ctx;
static const HostVTable *g_host;
static atomic_ulong g_frees, g_retries;

static NyStatus send_copy(void *ctx, const HostVTable *host, uint64_t sid, NyStatus st, const void *p, size_t n) {
    return host->send_result(ctx, sid, st, ny_vec_borrowed(p, n));
}

static void free_vec(uint8_t *ptr, size_t len, size_t cap) {
    (void)len, (void)cap;
    atomic_fetch_add(&g_frees, 1);
    free(ptr);
}

#if NY_V2
static void release_owned(void *owner_ctx, const uint8_t *ptr, uint64_t len) {
    (void)owner_ctx, (void)len;
    atomic_fetch_add(&g_frees, 1);
    free((void *)(uintptr_t)ptr);
}
#endif

typedef struct Job {
    void *host_ctx;
    const HostVTable *host;
    uint64_t sid, n;
    uint8_t *data;
} Job;

static Job *job(uint64_t sid, uint64_t n, NyBytes payload) {
    Job *j = (Job *)calloc(1, sizeof *j);
    if (!j) return NULL;
    j->host_ctx = g_host_ctx;
    j->host = g_host;
    j->sid = sid;
    j->n = n;
    j->data = ny_dup(payload.ptr, payload.len);
    if (!j->data) {
        free(j);
        return NULL;
    }
    return j;
}

static void run_echo(void *p) {
    Job *j = (Job *)p;
    send_copy(j->host_ctx, j->host, j->sid, NY_OK, j->data, (size_t)j->n);
    free(j->data);
    free(j);
}

static void run_stream(void *p) {
    Job *j = (Job *)p;
    for (uint64_t i = 1; i <= j->n; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "frame-%llu", (unsigned long long)i);
        NyStatus st;
        while ((st = send_copy(j->host_ctx, j->host, j->sid, NY_OK, buf, (size_t)len)) == NY_BACKPRESSURE) {
            atomic_fetch_add(&g_retries, 1);
            ny_sleep_us(200);
        }
        if (st != NY_OK) break;
    }
    send_copy(j->host_ctx, j->host, j->sid, NY_STREAM_END, NULL, 0);
    free(j->data);
    free(j);
}

static NyStatus p_init(void *host_ctx, const HostVTable *host) {
    if (!host_ctx || !host) return NY_INVALID;
    g_host_ctx = host_ctx;
    g_host = host;
    return NY_OK;
}

static void p_shutdown(void) {
    g_host = NULL;
    g_host_ctx = NULL;
}

static const char *const k_entries[] = { "echo", "echo_vec", "echo_async", "stream", "bidi",
                                          "panic",  "bad",      "error",      "owned",  "lease" };
enum { E_ECHO, E_ECHO_VEC, E_ECHO_ASYNC, E_STREAM, E_BIDI, E_PANIC, E_BAD, E_ERROR, E_OWNED, E_LEASE,
       E_COUNT };

static NyStatus dispatch(uint32_t id, uint64_t sid, NyBytes payload) {
    if (!g_host) return NY_INVALID;
    switch (id) {
    case E_ECHO:
        return send_copy(g_host_ctx, g_host, sid, NY_OK, payload.ptr, (size_t)payload.len);
    case E_ECHO_VEC: {
        NyVec v;
        memset(&v, 0, sizeof v);
        v.ptr = ny_dup(payload.ptr, payload.len);
        if (!v.ptr) return NY_ERR;
        v.len = v.cap = (size_t)payload.len;
        v.owned = 1;
        v.drop_fn = free_vec;
        return g_host->send_result(g_host_ctx, sid, NY_OK, v);
    }
    case E_ECHO_ASYNC:
    case E_STREAM: {
        uint64_t n = id == E_STREAM ? ny_parse(payload.ptr, payload.len, 5) : payload.len;
        if (n == UINT64_MAX) return NY_INVALID;
        Job *j = job(sid, n, payload);
        if (!j) return NY_ERR;
        if (ny_spawn(id == E_STREAM ? run_stream : run_echo, j) != 0) {
            free(j->data);
            free(j);
            return NY_ERR;
        }
        return NY_OK;
    }
    case E_BIDI:
        return NY_OK;
    case E_PANIC:
        return NY_PANIC;
    case E_BAD:
        return 9;
    case E_ERROR:
        return send_copy(g_host_ctx, g_host, sid, NY_ERR, "boom", 4);
#if NY_V2
    case E_OWNED: {
        uint8_t *c = ny_dup(payload.ptr, payload.len);
        if (!c) return NY_ERR;
        NyOwnedBytes o = { c, payload.len, NULL, release_owned };
        return g_host->send_result_owned(g_host_ctx, sid, NY_OK, o);
    }
    case E_LEASE: {
        NyBufferLease l = g_host->acquire_result_buffer(g_host_ctx, sid, payload.len);
        if (!l.ptr) return send_copy(g_host_ctx, g_host, sid, NY_ERR, "no lease", 8);
        for (uint64_t i = 0; i < payload.len; i++) l.ptr[i] = payload.ptr[payload.len - 1 - i];
        return g_host->commit_result_buffer(g_host_ctx, sid, NY_OK, l.token, payload.len);
    }
#endif
    default:
        return NY_INVALID; /* nylon-ring's answer to an unknown entry */
    }
}

static uint32_t p_resolve(NyStr entry) {
    for (uint32_t i = 0; i < E_COUNT; i++) {
        if (ny_str_eq(entry, k_entries[i])) return i;
    }
    return NY_ENTRY_UNKNOWN;
}

static NyStatus p_handle(NyStr entry, uint64_t sid, NyBytes payload) {
    uint32_t id = p_resolve(entry);
    return id == NY_ENTRY_UNKNOWN ? NY_INVALID : dispatch(id, sid, payload);
}

static NyStatus p_stream_data(uint64_t sid, NyBytes data) {
    if (!g_host) return NY_INVALID;
    return send_copy(g_host_ctx, g_host, sid, NY_OK, data.ptr, (size_t)data.len);
}

static NyStatus p_stream_close(uint64_t sid) {
    if (!g_host) return NY_INVALID;
    return send_copy(g_host_ctx, g_host, sid, NY_STREAM_END, NULL, 0);
}

NY_EXPORT unsigned long test_c_frees(void) {
    return atomic_load(&g_frees);
}

NY_EXPORT unsigned long test_c_retries(void) {
    return atomic_load(&g_retries);
}

#if NY_V2
static NyStatus p_handle_by_id(uint32_t id, uint64_t sid, NyBytes payload) {
    return id < E_COUNT ? dispatch(id, sid, payload) : NY_INVALID;
}

static const Ny2PluginVTable k_vtable = { p_init, p_handle, p_shutdown, p_stream_data, p_stream_close,
                                          p_resolve, p_handle_by_id };
static const NyPluginInfo k_info = { 2, sizeof(NyPluginInfo), NY_STR_LIT(PLUGIN_NAME), NY_STR_LIT("1.0.0"), NULL,
                                     &k_vtable };

NY_EXPORT const NyPluginInfo *nylon_ring_get_plugin(void) {
    return &k_info;
}
#else
static const Ny01PluginVTable k_vtable = { p_init, p_handle, p_shutdown, p_stream_data, p_stream_close };
static const NyPluginInfo k_info = { 1, sizeof(NyPluginInfo), NY_STR_LIT(PLUGIN_NAME), NY_STR_LIT("1.0.0"), NULL,
                                     &k_vtable };

NY_EXPORT const NyPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
#endif
