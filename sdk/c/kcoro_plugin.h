/*
 * kcoro_plugin.h: the kcoro plugin ABI for C (C11) and C++.
 *
 * Version 1 is the nylon-ring version-1 contract as kcoro's seed describes it (kcoro-host
 * loads it as layout `kcoro-v1`; an info of sizeof(KcPluginInfo) is detected, a plain
 * 56-byte one must be named with LoadOptions::layout); kcoro's extensions only
 * append to it. The Rust crate `kcoro-abi` is the source of truth; the static assertions
 * at the end of this file pin the same sizes and offsets as its tests/layout.rs.
 *
 * A plugin is a shared library exporting
 *
 *     const NrPluginInfo *nylon_ring_get_plugin_v1(void);
 *
 * The host checks abi_version == NR_ABI_VERSION and struct_size >= 56, calls
 * vtable->init(plugin_ctx, host_ctx, host_vtable), then vtable->handle(...) once per call,
 * from any thread. `handle` must return at once; the reply travels separately through
 * host_vtable->send_result(host_ctx, sid, status, payload), now or later, from any thread:
 * once for a unary call, or once per frame of a stream, the last with a terminal status
 * (STREAM_END, ERR, INVALID, UNSUPPORTED). `shutdown` is the last call.
 *
 * All NrStr / NrBytes views are borrowed for the duration of the call they are passed to
 * (copy what you keep). NrStr is UTF-8 and NOT NUL-terminated: compare by length + memcmp.
 *
 * Extension negotiation (kcoro only; a version-1 host never sees any of it):
 *  1. The plugin returns a KcPluginInfo: the 56-byte NrPluginInfo with
 *     struct_size = sizeof(KcPluginInfo) (>= 64), followed by `ext`, a pointer to its
 *     KcPluginExt. A version-1 host reads only the first 56 bytes, so the plugin still
 *     loads there, without the extensions.
 *  2. The host reads `ext` only when struct_size covers it, and each KcPluginExt field only
 *     when ext->struct_size covers it (tables grow by appending).
 *  3. After a successful init, the host calls ext->attach(plugin_ctx, host_ctx, api) with
 *     its KcHostApi, valid until shutdown returns. Check api->struct_size before using a
 *     field. A plugin that is never attached must keep working with send_result alone.
 *  With ext->entries the host resolves an entry name to its index once and then calls
 *  ext->handle_id(plugin_ctx, index, ...), skipping the string compare.
 */
#ifndef KCORO_PLUGIN_H
#define KCORO_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header speaks; the host refuses any other. */
#define NR_ABI_VERSION 1u

/* The symbol every plugin exports, and its type. */
#define NR_ENTRY_SYMBOL "nylon_ring_get_plugin_v1"

/* Status codes. A plain uint32_t, not a C enum: an enum's size is the compiler's choice,
 * and the host must accept any value a plugin returns (unknown values read as INVALID). */
typedef uint32_t NrStatus;
#define NR_STATUS_OK 0u
#define NR_STATUS_ERR 1u          /* a runtime error in the plugin */
#define NR_STATUS_INVALID 2u      /* bad input or state: null pointer, unknown sid */
#define NR_STATUS_UNSUPPORTED 3u  /* unknown entry, missing stream handler */
#define NR_STATUS_STREAM_END 4u   /* the last frame of a stream */
#define NR_STATUS_BACKPRESSURE 5u /* extension only: stream full, frame not taken */
#define NR_STATUS_MAX_KNOWN 5u

/* A borrowed UTF-8 string view; not NUL-terminated. {NULL, 0} is the empty view. */
typedef struct NrStr {
    const uint8_t *ptr;
    uint32_t len;
} NrStr;

/* A borrowed byte view. {NULL, 0} is the empty view. */
typedef struct NrBytes {
    const uint8_t *ptr;
    uint64_t len;
} NrBytes;

typedef struct NrHeader {
    NrStr key;
    NrStr value;
} NrHeader;

/* Request metadata, borrowed for the duration of handle; may be NULL for raw calls. */
typedef struct NrRequest {
    NrStr path;
    NrStr method;
    NrStr query;
    const NrHeader *headers;
    uint32_t headers_len;
    uint32_t _reserved0; /* zero in version 1 */
    uint64_t _reserved1; /* zero in version 1 */
} NrRequest;

/* send_result(host_ctx, sid, status, payload): thread-safe; the host copies payload. */
typedef void (*NrSendResultFn)(void *host_ctx, uint64_t sid, NrStatus status, NrBytes payload);

/* The callbacks a host hands a plugin in init. */
typedef struct NrHostVTable {
    NrSendResultFn send_result;
} NrHostVTable;

typedef NrStatus (*NrInitFn)(void *plugin_ctx, void *host_ctx, const NrHostVTable *host_vtable);
/* handle(plugin_ctx, entry, sid, req, payload): must return at once. */
typedef NrStatus (*NrHandleFn)(void *plugin_ctx, NrStr entry, uint64_t sid, const NrRequest *req,
                               NrBytes payload);
typedef void (*NrShutdownFn)(void *plugin_ctx);
/* Data from the host on a bidirectional stream. */
typedef NrStatus (*NrStreamDataFn)(void *plugin_ctx, uint64_t sid, NrBytes data);
/* The host closed its side of a bidirectional stream. */
typedef NrStatus (*NrStreamCloseFn)(void *plugin_ctx, uint64_t sid);

/* The functions a plugin exports. Any may be NULL except handle (the host refuses that). */
typedef struct NrPluginVTable {
    NrInitFn init;
    NrHandleFn handle;
    NrShutdownFn shutdown;
    NrStreamDataFn stream_data;
    NrStreamCloseFn stream_close;
} NrPluginVTable;

/* What nylon_ring_get_plugin_v1 returns. Must stay valid while the library is loaded. */
typedef struct NrPluginInfo {
    uint32_t abi_version; /* NR_ABI_VERSION */
    uint32_t struct_size; /* 56 for version 1; sizeof(KcPluginInfo) to offer extensions */
    NrStr name;
    NrStr version;
    void *plugin_ctx; /* passed back as the first argument of every vtable call */
    const NrPluginVTable *vtable;
} NrPluginInfo;

typedef const NrPluginInfo *(*NrGetPluginFn)(void);

/* set_state(host_ctx, sid, key, value): stores a copy; returns a view of the stored copy. */
typedef NrBytes (*NrSetStateFn)(void *host_ctx, uint64_t sid, NrStr key, NrBytes value);
/* get_state(host_ctx, sid, key): a view of the stored value, or an empty view. */
typedef NrBytes (*NrGetStateFn)(void *host_ctx, uint64_t sid, NrStr key);

/* Per-sid state kept by the host (KcHostApi.state). Returned views stay valid until the
 * same key is set again or the call/stream ends, when the host frees the sid's state. */
typedef struct NrHostExt {
    NrSetStateFn set_state;
    NrGetStateFn get_state;
} NrHostExt;

/* ---- kcoro extensions (additive; see the negotiation notes at the top) ---- */

typedef struct KcPluginExt KcPluginExt;
typedef struct KcHostApi KcHostApi;

/* The version-1 info followed by the extension pointer. */
typedef struct KcPluginInfo {
    NrPluginInfo base; /* base.struct_size = sizeof(KcPluginInfo) */
    const KcPluginExt *ext; /* may be NULL */
} KcPluginInfo;

/* attach(plugin_ctx, host_ctx, api): the host's table, valid until shutdown returns. */
typedef NrStatus (*KcAttachFn)(void *plugin_ctx, void *host_ctx, const KcHostApi *api);
/* handle_id(plugin_ctx, entry_id, sid, req, payload): handle, by index into ext->entries. */
typedef NrStatus (*KcHandleIdFn)(void *plugin_ctx, uint32_t entry_id, uint64_t sid,
                                 const NrRequest *req, NrBytes payload);

/* What a plugin offers beyond version 1. */
struct KcPluginExt {
    uint32_t struct_size; /* sizeof(KcPluginExt) as the plugin knows it */
    uint32_t flags;       /* reserved for capability bits; zero */
    KcAttachFn attach;    /* may be NULL */
    const NrStr *entries; /* entry names; the index is the entry id; NULL if entries_len 0 */
    uint32_t entries_len;
    uint32_t _reserved0;
    KcHandleIdFn handle_id; /* may be NULL */
    uint64_t _reserved[4];
};

/* Frees a buffer passed to send_owned; called exactly once, from any thread. */
typedef void (*KcReleaseFn)(void *release_ctx);
/* send_owned(host_ctx, sid, status, payload, release, release_ctx): the host takes payload
 * without copying and calls release(release_ctx) once nobody reads it. Returns OK when
 * taken; INVALID for an unknown or finished sid (released before returning); BACKPRESSURE
 * when the stream is full (NOT taken: the caller still owns the buffer). */
typedef NrStatus (*KcSendOwnedFn)(void *host_ctx, uint64_t sid, NrStatus status, NrBytes payload,
                                  KcReleaseFn release, void *release_ctx);
/* try_send(host_ctx, sid, status, payload): send_result that returns BACKPRESSURE instead of
 * waiting when the stream is full (frame not taken), INVALID for an unknown or finished
 * sid, else OK. */
typedef NrStatus (*KcTrySendFn)(void *host_ctx, uint64_t sid, NrStatus status, NrBytes payload);

/* The host's table for plugins that negotiated the extensions. */
struct KcHostApi {
    uint32_t struct_size; /* sizeof(KcHostApi) as the host knows it */
    uint32_t flags;       /* reserved for capability bits; zero */
    NrHostExt state;
    KcSendOwnedFn send_owned;
    KcTrySendFn try_send;
    uint64_t _reserved[4];
};

/* Whether a table whose struct_size is `size` holds `field` of `type` (tables grow by
 * appending, so a field is there when the table reaches its end). */
#define KC_COVERS(size, type, field) \
    ((size_t)(size) >= offsetof(type, field) + sizeof(((type *)0)->field))

/* ---- helpers ---- */

/* A view of a NUL-terminated string (the NUL is not included). */
static inline NrStr nr_str(const char *s) {
    NrStr v;
    v.ptr = (const uint8_t *)s;
    v.len = s ? (uint32_t)strlen(s) : 0u;
    return v;
}

/* A view of `len` bytes at `p`. */
static inline NrBytes nr_bytes(const void *p, uint64_t len) {
    NrBytes v;
    v.ptr = (const uint8_t *)p;
    v.len = len;
    return v;
}

/* Whether view `s` holds exactly the NUL-terminated `lit`. */
static inline int nr_str_eq(NrStr s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || (s.ptr && memcmp(s.ptr, lit, n) == 0));
}

/* An initializer for a static NrStr from a string literal:
 *     static const NrStr names[] = { NR_STR_LIT("echo") }; */
#define NR_STR_LIT(lit) { (const uint8_t *)(lit), (uint32_t)(sizeof(lit) - 1) }

/* Marks the entry symbol exported even under -fvisibility=hidden. */
#if defined(_WIN32)
#define NR_EXPORT __declspec(dllexport)
#elif defined(__GNUC__)
#define NR_EXPORT __attribute__((visibility("default")))
#else
#define NR_EXPORT
#endif

/* ---- layout: the numbers pinned by kcoro-abi/tests/layout.rs (64-bit targets) ---- */

#ifdef __cplusplus
#define NR_ASSERT_(cond, msg) static_assert(cond, msg)
#define NR_ALIGNOF_(t) alignof(t)
#else
#define NR_ASSERT_(cond, msg) _Static_assert(cond, msg)
#define NR_ALIGNOF_(t) _Alignof(t)
#endif
#define NR_SIZE_(t, size, align)                              \
    NR_ASSERT_(sizeof(t) == (size), "sizeof(" #t ") != " #size); \
    NR_ASSERT_(NR_ALIGNOF_(t) == (align), "alignof(" #t ") != " #align)
#define NR_OFF_(t, f, off) NR_ASSERT_(offsetof(t, f) == (off), "offsetof(" #t ", " #f ") != " #off)

#if UINTPTR_MAX == 0xffffffffffffffffu
NR_SIZE_(NrStatus, 4, 4);
NR_ASSERT_(NR_STATUS_OK == 0 && NR_STATUS_ERR == 1 && NR_STATUS_INVALID == 2 &&
               NR_STATUS_UNSUPPORTED == 3 && NR_STATUS_STREAM_END == 4 &&
               NR_STATUS_BACKPRESSURE == 5,
           "status codes");

NR_SIZE_(NrStr, 16, 8);
NR_OFF_(NrStr, ptr, 0);
NR_OFF_(NrStr, len, 8);
NR_SIZE_(NrBytes, 16, 8);
NR_OFF_(NrBytes, ptr, 0);
NR_OFF_(NrBytes, len, 8);
NR_SIZE_(NrHeader, 32, 8);
NR_OFF_(NrHeader, key, 0);
NR_OFF_(NrHeader, value, 16);

NR_SIZE_(NrRequest, 72, 8);
NR_OFF_(NrRequest, path, 0);
NR_OFF_(NrRequest, method, 16);
NR_OFF_(NrRequest, query, 32);
NR_OFF_(NrRequest, headers, 48);
NR_OFF_(NrRequest, headers_len, 56);
NR_OFF_(NrRequest, _reserved0, 60);
NR_OFF_(NrRequest, _reserved1, 64);

NR_SIZE_(NrHostVTable, 8, 8);
NR_SIZE_(NrPluginVTable, 40, 8);
NR_OFF_(NrPluginVTable, init, 0);
NR_OFF_(NrPluginVTable, handle, 8);
NR_OFF_(NrPluginVTable, shutdown, 16);
NR_OFF_(NrPluginVTable, stream_data, 24);
NR_OFF_(NrPluginVTable, stream_close, 32);

NR_SIZE_(NrPluginInfo, 56, 8);
NR_OFF_(NrPluginInfo, abi_version, 0);
NR_OFF_(NrPluginInfo, struct_size, 4);
NR_OFF_(NrPluginInfo, name, 8);
NR_OFF_(NrPluginInfo, version, 24);
NR_OFF_(NrPluginInfo, plugin_ctx, 40);
NR_OFF_(NrPluginInfo, vtable, 48);

NR_ASSERT_(sizeof(NrHostExt) == 16, "sizeof(NrHostExt) != 16");
NR_OFF_(NrHostExt, get_state, 8);

NR_ASSERT_(sizeof(KcPluginInfo) == 64, "sizeof(KcPluginInfo) != 64");
NR_OFF_(KcPluginInfo, base, 0);
NR_OFF_(KcPluginInfo, ext, 56);

NR_ASSERT_(sizeof(KcPluginExt) == 72, "sizeof(KcPluginExt) != 72");
NR_OFF_(KcPluginExt, struct_size, 0);
NR_OFF_(KcPluginExt, flags, 4);
NR_OFF_(KcPluginExt, attach, 8);
NR_OFF_(KcPluginExt, entries, 16);
NR_OFF_(KcPluginExt, entries_len, 24);
NR_OFF_(KcPluginExt, _reserved0, 28);
NR_OFF_(KcPluginExt, handle_id, 32);
NR_OFF_(KcPluginExt, _reserved, 40);

NR_ASSERT_(sizeof(KcHostApi) == 72, "sizeof(KcHostApi) != 72");
NR_OFF_(KcHostApi, struct_size, 0);
NR_OFF_(KcHostApi, flags, 4);
NR_OFF_(KcHostApi, state, 8);
NR_OFF_(KcHostApi, send_owned, 24);
NR_OFF_(KcHostApi, try_send, 32);
NR_OFF_(KcHostApi, _reserved, 40);
#endif /* 64-bit */

/* The entry point every plugin defines. Define KCORO_NO_ENTRY_DECL to leave it out, e.g.
 * when a generated header (cgo's _cgo_export.h) declares it with a different type. */
#ifndef KCORO_NO_ENTRY_DECL
NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void);
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KCORO_PLUGIN_H */
