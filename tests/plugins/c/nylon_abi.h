/*
 * nylon_abi.h: nylon-ring's plugin layouts in C (C11), for the test plugins next to it.
 *
 * nylon-ring's crates ship no C header; this one is written from their #[repr(C)] types
 * (nylon-ring 0.1.4 and 0.2.2 on crates.io) and from its repository before 0.1 (the
 * 3- and 6-slot vtables). The Rust mirror is kcoro_abi::nylon; the static assertions at
 * the end pin the same sizes and offsets as crates/kcoro-abi/tests/layout.rs.
 *
 *   layout        export                      abi  plugin vtable                      host vtable
 *   early 3-slot  nylon_ring_get_plugin_v1      1  NyEarly3VTable (plugin_ctx first)  NyEarlyHostVTable
 *   early 6-slot  nylon_ring_get_plugin_v1      1  NyEarly6VTable (plugin_ctx first)  NyEarlyHostVTable
 *   0.1.x         nylon_ring_get_plugin_v1      1  Ny01PluginVTable                   Ny01HostVTable
 *   0.2.x         nylon_ring_get_plugin         2  Ny2PluginVTable                    Ny2HostVTable
 */
#ifndef KCORO_TEST_NYLON_ABI_H
#define KCORO_TEST_NYLON_ABI_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NY_EXPORT __attribute__((visibility("default")))

/* Status codes. 0.1 / 0.2 add PANIC 5 and BACKPRESSURE 6; the early layouts stop at 4. */
typedef uint32_t NyStatus;
#define NY_OK 0u
#define NY_ERR 1u
#define NY_INVALID 2u
#define NY_UNSUPPORTED 3u
#define NY_STREAM_END 4u
#define NY_PANIC 5u
#define NY_BACKPRESSURE 6u

/* A borrowed string; 0.1 / 0.2 name the padding `_reserved` and require it zero. */
typedef struct NyStr {
    const uint8_t *ptr;
    uint32_t len;
    uint32_t _reserved;
} NyStr;

typedef struct NyBytes {
    const uint8_t *ptr;
    uint64_t len;
} NyBytes;

/* nylon-ring's NrVec<u8>: owned = 1 means freed exactly once through drop_fn. */
typedef struct NyVec {
    uint8_t *ptr;
    size_t len;
    size_t cap;
    uint8_t owned;
    uint8_t _reserved[7];
    void (*drop_fn)(uint8_t *ptr, size_t len, size_t cap);
} NyVec;

/* 0.2: a zero-copy reply, released exactly once by the receiver (NULL: nothing to free). */
typedef struct NyOwnedBytes {
    const uint8_t *ptr;
    uint64_t len;
    void *owner_ctx;
    void (*release)(void *owner_ctx, const uint8_t *ptr, uint64_t len);
} NyOwnedBytes;

/* 0.2: a host buffer leased for one unary reply; ptr NULL = refused. */
typedef struct NyBufferLease {
    uint8_t *ptr;
    uint64_t cap;
    uint64_t token;
} NyBufferLease;

#define NY_ENTRY_UNKNOWN UINT32_MAX

/* ---- 0.1.x ---- */
typedef struct Ny01HostVTable {
    NyStatus (*send_result)(void *host_ctx, uint64_t sid, NyStatus status, NyVec payload);
} Ny01HostVTable;

typedef struct Ny01PluginVTable {
    NyStatus (*init)(void *host_ctx, const Ny01HostVTable *host);
    NyStatus (*handle)(NyStr entry, uint64_t sid, NyBytes payload);
    void (*shutdown)(void);
    NyStatus (*stream_data)(uint64_t sid, NyBytes data);
    NyStatus (*stream_close)(uint64_t sid);
} Ny01PluginVTable;

/* ---- 0.2.x ---- */
typedef struct Ny2HostVTable {
    NyStatus (*send_result)(void *host_ctx, uint64_t sid, NyStatus status, NyVec payload);
    NyStatus (*send_result_owned)(void *host_ctx, uint64_t sid, NyStatus status, NyOwnedBytes payload);
    NyBufferLease (*acquire_result_buffer)(void *host_ctx, uint64_t sid, uint64_t capacity);
    NyStatus (*commit_result_buffer)(void *host_ctx, uint64_t sid, NyStatus status, uint64_t token,
                                     uint64_t initialized_len);
} Ny2HostVTable;

typedef struct Ny2PluginVTable {
    NyStatus (*init)(void *host_ctx, const Ny2HostVTable *host);
    NyStatus (*handle)(NyStr entry, uint64_t sid, NyBytes payload);
    void (*shutdown)(void);
    NyStatus (*stream_data)(uint64_t sid, NyBytes data);
    NyStatus (*stream_close)(uint64_t sid);
    uint32_t (*resolve_entry)(NyStr entry);
    NyStatus (*handle_by_id)(uint32_t id, uint64_t sid, NyBytes payload);
} Ny2PluginVTable;

/* ---- before 0.1: plugin_ctx first, a request for handle ---- */
typedef struct NyHeader {
    NyStr key;
    NyStr value;
} NyHeader;

typedef struct NyRequest {
    NyStr path;
    NyStr method;
    NyStr query;
    const NyHeader *headers;
    uint32_t headers_len;
    uint32_t _reserved0;
    uint64_t _reserved1;
} NyRequest;

typedef struct NyEarlyHostVTable {
    void (*send_result)(void *host_ctx, uint64_t sid, NyStatus status, NyBytes payload);
} NyEarlyHostVTable;

typedef NyStatus (*NyEarlyInitFn)(void *plugin_ctx, void *host_ctx, const NyEarlyHostVTable *host);
typedef NyStatus (*NyEarlyHandleFn)(void *plugin_ctx, NyStr entry, uint64_t sid, const NyRequest *req,
                                    NyBytes payload);

typedef struct NyEarly3VTable {
    NyEarlyInitFn init;
    NyEarlyHandleFn handle;
    void (*shutdown)(void *plugin_ctx);
} NyEarly3VTable;

typedef struct NyEarly6VTable {
    NyEarlyInitFn init;
    NyEarlyHandleFn handle;
    NyStatus (*handle_raw)(void *plugin_ctx, NyStr entry, uint64_t sid, NyBytes payload);
    void (*shutdown)(void *plugin_ctx);
    NyStatus (*stream_data)(void *plugin_ctx, uint64_t sid, NyBytes data);
    NyStatus (*stream_close)(void *plugin_ctx, uint64_t sid);
} NyEarly6VTable;

/* ---- the info every layout starts with ---- */
typedef struct NyPluginInfo {
    uint32_t abi_version;
    uint32_t struct_size;
    NyStr name;
    NyStr version;
    void *plugin_ctx;
    const void *vtable;
} NyPluginInfo;

/* ---- helpers ---- */
#define NY_STR_LIT(s) { (const uint8_t *)(s), (uint32_t)(sizeof(s) - 1), 0 }

static inline int ny_str_eq(NyStr s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || memcmp(s.ptr, lit, n) == 0);
}

static inline NyBytes ny_bytes(const void *p, uint64_t n) {
    NyBytes b = { (const uint8_t *)p, n };
    return b;
}

/* A borrowed NyVec: the host copies it inside send_result. */
static inline NyVec ny_vec_borrowed(const void *p, size_t n) {
    NyVec v;
    memset(&v, 0, sizeof v);
    v.ptr = (uint8_t *)(uintptr_t)p;
    v.len = n;
    v.cap = n;
    return v;
}

#if defined(__x86_64__) || defined(__aarch64__)
_Static_assert(sizeof(NyStr) == 16, "NyStr");
_Static_assert(sizeof(NyBytes) == 16, "NyBytes");
_Static_assert(sizeof(NyVec) == 40 && offsetof(NyVec, owned) == 24 && offsetof(NyVec, drop_fn) == 32, "NyVec");
_Static_assert(sizeof(NyOwnedBytes) == 32 && offsetof(NyOwnedBytes, release) == 24, "NyOwnedBytes");
_Static_assert(sizeof(NyBufferLease) == 24 && offsetof(NyBufferLease, token) == 16, "NyBufferLease");
_Static_assert(sizeof(Ny01HostVTable) == 8 && sizeof(Ny01PluginVTable) == 40, "0.1 vtables");
_Static_assert(sizeof(Ny2HostVTable) == 32 && sizeof(Ny2PluginVTable) == 56, "0.2 vtables");
_Static_assert(offsetof(Ny2PluginVTable, resolve_entry) == 40 && offsetof(Ny2PluginVTable, handle_by_id) == 48,
               "0.2 entry ids");
_Static_assert(sizeof(NyRequest) == 72 && sizeof(NyHeader) == 32, "early request");
_Static_assert(sizeof(NyEarly3VTable) == 24 && sizeof(NyEarly6VTable) == 48, "early vtables");
_Static_assert(offsetof(NyEarly6VTable, handle_raw) == 16 && offsetof(NyEarly6VTable, shutdown) == 24, "6-slot");
_Static_assert(sizeof(NyPluginInfo) == 56 && offsetof(NyPluginInfo, vtable) == 48, "NyPluginInfo");
#endif

#endif
