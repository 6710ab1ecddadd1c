/*
 * echo.c: the "echo-c" example plugin, implementing the entry contract every kcoro SDK
 * example implements (the host's tests run one battery against each):
 *
 *   echo        reply OK with the payload, inside handle
 *   echo_async  reply OK with (a copy of) the payload from another thread
 *   stream      payload N (decimal, empty = 5): frames "frame-1".."frame-N", then STREAM_END
 *   bidi        no reply; stream_data echoes each chunk, stream_close ends with STREAM_END
 *   state       set_state(sid, "key", payload), reply with get_state(sid, "key"); UNSUPPORTED
 *               when the host attached no KcHostApi
 *   panic       returns ERR (C cannot unwind; see entry_panic)
 *   error       replies ERR "boom"
 *   anything else: handle returns UNSUPPORTED
 *
 * It returns a KcPluginInfo, so a kcoro host attaches its KcHostApi and dispatches by entry
 * id through KcPluginExt.handle_id; a version-1 host sees a plain plugin.
 *
 * Build: cc -std=c11 -O2 -fPIC -shared -Isdk/c -o libecho_c.so sdk/c/examples/echo.c -lpthread
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcoro_plugin.h"
#include "kc_workers.h"

/* Everything the host gave us; plugin_ctx points here. The host orders init and attach
 * before any handle call and shutdown after the last one returns, so plain fields do. */
typedef struct Echo {
    void *host_ctx;
    const NrHostVTable *host; /* NULL before init and after shutdown */
    const KcHostApi *api;     /* NULL unless a kcoro host attached */
    KcWorkers workers;
} Echo;

static Echo g_echo = { NULL, NULL, NULL, KC_WORKERS_INIT };

/* A reply target that outlives handle: what a background thread needs to answer. */
typedef struct Reply {
    void *ctx;
    NrSendResultFn send;
    uint64_t sid;
} Reply;

static Reply reply_to(const Echo *e, uint64_t sid) {
    Reply r = { e->host_ctx, e->host->send_result, sid };
    return r;
}

static void reply(Reply r, NrStatus status, const void *data, uint64_t len) {
    r.send(r.ctx, r.sid, status, nr_bytes(data, len));
}

/* ---- entries; the order of this table is the entry id ---- */

enum { E_ECHO, E_ECHO_ASYNC, E_STREAM, E_BIDI, E_STATE, E_PANIC, E_ERROR, E_COUNT };

static const NrStr k_entries[E_COUNT] = {
    NR_STR_LIT("echo"),  NR_STR_LIT("echo_async"), NR_STR_LIT("stream"), NR_STR_LIT("bidi"),
    NR_STR_LIT("state"), NR_STR_LIT("panic"),      NR_STR_LIT("error"),
};

static NrStatus entry_echo(Echo *e, uint64_t sid, NrBytes payload) {
    reply(reply_to(e, sid), NR_STATUS_OK, payload.ptr, payload.len);
    return NR_STATUS_OK;
}

typedef struct AsyncJob {
    Reply to;
    uint8_t *data;
    size_t len;
} AsyncJob;

static void run_echo_async(void *arg) {
    AsyncJob *job = (AsyncJob *)arg;
    reply(job->to, NR_STATUS_OK, job->data, job->len);
    free(job->data);
    free(job);
}

static NrStatus entry_echo_async(Echo *e, uint64_t sid, NrBytes payload) {
#if SIZE_MAX < UINT64_MAX
    if (payload.len > SIZE_MAX) return NR_STATUS_INVALID;
#endif
    /* The payload view dies when handle returns: copy it for the thread. */
    AsyncJob *job = (AsyncJob *)malloc(sizeof *job);
    uint8_t *data = (uint8_t *)malloc(payload.len ? (size_t)payload.len : 1);
    if (!job || !data) goto fail;
    if (payload.len) memcpy(data, payload.ptr, (size_t)payload.len);
    job->to = reply_to(e, sid);
    job->data = data;
    job->len = (size_t)payload.len;
    if (kc_workers_spawn(&e->workers, run_echo_async, job) != 0) goto fail;
    return NR_STATUS_OK;
fail:
    free(data);
    free(job);
    return NR_STATUS_ERR;
}

/* The frame count: decimal digits, empty means 5. */
static int parse_count(NrBytes p, uint64_t *out) {
    uint64_t n = 0;
    if (p.len == 0) {
        *out = 5;
        return 0;
    }
    for (uint64_t i = 0; i < p.len; i++) {
        unsigned d = (unsigned)p.ptr[i] - '0';
        if (d > 9 || n > (UINT64_MAX - d) / 10) return -1;
        n = n * 10 + d;
    }
    *out = n;
    return 0;
}

typedef struct StreamJob {
    Reply to;
    uint64_t frames;
} StreamJob;

static void run_stream(void *arg) {
    StreamJob job = *(StreamJob *)arg;
    free(arg);
    for (uint64_t i = 1; i <= job.frames; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "frame-%" PRIu64, i);
        reply(job.to, NR_STATUS_OK, buf, (uint64_t)len); /* the host copies the frame */
    }
    reply(job.to, NR_STATUS_STREAM_END, NULL, 0);
}

static NrStatus entry_stream(Echo *e, uint64_t sid, NrBytes payload) {
    uint64_t frames;
    if (parse_count(payload, &frames) != 0) return NR_STATUS_INVALID;
    StreamJob *job = (StreamJob *)malloc(sizeof *job);
    if (!job) return NR_STATUS_ERR;
    job->to = reply_to(e, sid);
    job->frames = frames;
    if (kc_workers_spawn(&e->workers, run_stream, job) != 0) {
        free(job);
        return NR_STATUS_ERR;
    }
    return NR_STATUS_OK;
}

/* The stream stays open; the host feeds it through stream_data / stream_close. */
static NrStatus entry_bidi(Echo *e, uint64_t sid, NrBytes payload) {
    (void)e, (void)sid, (void)payload;
    return NR_STATUS_OK;
}

static NrStatus entry_state(Echo *e, uint64_t sid, NrBytes payload) {
    const KcHostApi *api = e->api;
    Reply to = reply_to(e, sid);
    if (!api || !KC_COVERS(api->struct_size, KcHostApi, state)) {
        reply(to, NR_STATUS_UNSUPPORTED, NULL, 0);
        return NR_STATUS_OK;
    }
    NrStr key = NR_STR_LIT("key");
    api->state.set_state(e->host_ctx, sid, key, payload);
    NrBytes got = api->state.get_state(e->host_ctx, sid, key);
    /* The view lives only until the call ends, and our reply is what ends it: send a copy
     * rather than lean on the host copying before it frees the sid's state. */
    uint8_t *copy = (uint8_t *)malloc(got.len ? (size_t)got.len : 1);
    if (!copy) return NR_STATUS_ERR;
    if (got.len) memcpy(copy, got.ptr, (size_t)got.len);
    reply(to, NR_STATUS_OK, copy, got.len);
    free(copy);
    return NR_STATUS_OK;
}

/* Other SDKs turn a panic/exception into ERR at the boundary. C has nothing to unwind,
 * and unwinding across the ABI would be undefined anyway: the failure path is simply
 * returning ERR, without a reply. */
static NrStatus entry_panic(Echo *e, uint64_t sid, NrBytes payload) {
    (void)e, (void)sid, (void)payload;
    return NR_STATUS_ERR;
}

static NrStatus entry_error(Echo *e, uint64_t sid, NrBytes payload) {
    (void)payload;
    reply(reply_to(e, sid), NR_STATUS_ERR, "boom", 4);
    return NR_STATUS_OK;
}

typedef NrStatus (*EntryFn)(Echo *e, uint64_t sid, NrBytes payload);

static const EntryFn k_handlers[E_COUNT] = {
    entry_echo,  entry_echo_async, entry_stream, entry_bidi,
    entry_state, entry_panic,      entry_error,
};

/* ---- the vtable ---- */

static NrStatus echo_init(void *ctx, void *host_ctx, const NrHostVTable *vtable) {
    Echo *e = (Echo *)ctx;
    if (!e || !vtable || !vtable->send_result) return NR_STATUS_INVALID;
    e->host_ctx = host_ctx;
    e->api = NULL;
    e->host = vtable;
    return NR_STATUS_OK;
}

static NrStatus echo_attach(void *ctx, void *host_ctx, const KcHostApi *api) {
    Echo *e = (Echo *)ctx;
    (void)host_ctx; /* the same host_ctx init received, which we already keep */
    if (!e || !api) return NR_STATUS_INVALID;
    e->api = api;
    return NR_STATUS_OK;
}

static NrStatus echo_handle_id(void *ctx, uint32_t id, uint64_t sid, const NrRequest *req,
                               NrBytes payload) {
    Echo *e = (Echo *)ctx;
    (void)req;
    if (!e || !e->host) return NR_STATUS_INVALID;
    if (id >= E_COUNT) return NR_STATUS_UNSUPPORTED;
    return k_handlers[id](e, sid, payload);
}

static NrStatus echo_handle(void *ctx, NrStr entry, uint64_t sid, const NrRequest *req,
                            NrBytes payload) {
    for (uint32_t id = 0; id < E_COUNT; id++) {
        const NrStr name = k_entries[id];
        if (entry.len == name.len && (name.len == 0 || memcmp(entry.ptr, name.ptr, name.len) == 0))
            return echo_handle_id(ctx, id, sid, req, payload);
    }
    return NR_STATUS_UNSUPPORTED;
}

static void echo_shutdown(void *ctx) {
    Echo *e = (Echo *)ctx;
    if (!e) return;
    kc_workers_join_all(&e->workers); /* no thread of ours may outlive shutdown */
    e->host = NULL;
    e->api = NULL;
    e->host_ctx = NULL;
}

static NrStatus echo_stream_data(void *ctx, uint64_t sid, NrBytes data) {
    Echo *e = (Echo *)ctx;
    if (!e || !e->host) return NR_STATUS_INVALID;
    reply(reply_to(e, sid), NR_STATUS_OK, data.ptr, data.len);
    return NR_STATUS_OK;
}

static NrStatus echo_stream_close(void *ctx, uint64_t sid) {
    Echo *e = (Echo *)ctx;
    if (!e || !e->host) return NR_STATUS_INVALID;
    reply(reply_to(e, sid), NR_STATUS_STREAM_END, NULL, 0);
    return NR_STATUS_OK;
}

static const NrPluginVTable k_vtable = {
    echo_init, echo_handle, echo_shutdown, echo_stream_data, echo_stream_close,
};

static const KcPluginExt k_ext = {
    (uint32_t)sizeof(KcPluginExt), 0, echo_attach, k_entries, E_COUNT, 0, echo_handle_id,
    { 0, 0, 0, 0 },
};

static const KcPluginInfo k_info = {
    {
        NR_ABI_VERSION,
        (uint32_t)sizeof(KcPluginInfo), /* >= 64: "ext follows" */
        NR_STR_LIT("echo-c"),
        NR_STR_LIT("1.0.0"),
        &g_echo,
        &k_vtable,
    },
    &k_ext,
};

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info.base; /* the first member: the host reads on past it when struct_size says so */
}
