/*
 * The kcoro plugin ABI as the Go SDK sees it: nylon-ring version 1 byte for byte, plus
 * kcoro's additive extensions. The source of truth is crates/kcoro-abi (lib.rs, ext.rs);
 * every size and offset below is pinned by crates/kcoro-abi/tests/layout.rs and asserted
 * here, so a drift fails the Go build.
 *
 * Declarations only: this header is included by cgo preambles, including ones of files
 * with //export, which may not define anything.
 */
#ifndef KCORO_GO_ABI_H
#define KCORO_GO_ABI_H

#include <stddef.h>
#include <stdint.h>

#define NR_ABI_VERSION 1u

/* Four bytes on the wire, like version 1's #[repr(u32)] enum. */
typedef uint32_t NrStatus;
#define NR_STATUS_OK 0u
#define NR_STATUS_ERR 1u
#define NR_STATUS_INVALID 2u
#define NR_STATUS_UNSUPPORTED 3u
#define NR_STATUS_STREAM_END 4u
#define NR_STATUS_BACKPRESSURE 5u /* extension */

typedef struct NrStr {
    const uint8_t *ptr;
    uint32_t len;
} NrStr;

typedef struct NrBytes {
    const uint8_t *ptr;
    uint64_t len;
} NrBytes;

typedef struct NrHeader {
    NrStr key;
    NrStr value;
} NrHeader;

typedef struct NrRequest {
    NrStr path;
    NrStr method;
    NrStr query;
    const NrHeader *headers;
    uint32_t headers_len;
    uint32_t _reserved0;
    uint64_t _reserved1;
} NrRequest;

typedef void (*NrSendResultFn)(void *host_ctx, uint64_t sid, NrStatus status, NrBytes payload);

typedef struct NrHostVTable {
    NrSendResultFn send_result;
} NrHostVTable;

typedef NrStatus (*NrInitFn)(void *plugin_ctx, void *host_ctx, const NrHostVTable *host_vtable);
typedef NrStatus (*NrHandleFn)(void *plugin_ctx, NrStr entry, uint64_t sid, const NrRequest *req,
                               NrBytes payload);
typedef void (*NrShutdownFn)(void *plugin_ctx);
typedef NrStatus (*NrStreamDataFn)(void *plugin_ctx, uint64_t sid, NrBytes data);
typedef NrStatus (*NrStreamCloseFn)(void *plugin_ctx, uint64_t sid);

typedef struct NrPluginVTable {
    NrInitFn init;
    NrHandleFn handle;
    NrShutdownFn shutdown;
    NrStreamDataFn stream_data;
    NrStreamCloseFn stream_close;
} NrPluginVTable;

typedef struct NrPluginInfo {
    uint32_t abi_version;
    uint32_t struct_size; /* 56 for version 1; >= sizeof(KcPluginInfo) with extensions */
    NrStr name;
    NrStr version;
    void *plugin_ctx;
    const NrPluginVTable *vtable;
} NrPluginInfo;

typedef NrBytes (*NrSetStateFn)(void *host_ctx, uint64_t sid, NrStr key, NrBytes value);
typedef NrBytes (*NrGetStateFn)(void *host_ctx, uint64_t sid, NrStr key);

typedef struct NrHostExt {
    NrSetStateFn set_state;
    NrGetStateFn get_state;
} NrHostExt;

/* ---- kcoro extensions (crates/kcoro-abi/src/ext.rs) ---- */

struct KcHostApi;

typedef NrStatus (*KcAttachFn)(void *plugin_ctx, void *host_ctx, const struct KcHostApi *api);
typedef NrStatus (*KcHandleIdFn)(void *plugin_ctx, uint32_t entry_id, uint64_t sid,
                                 const NrRequest *req, NrBytes payload);

typedef struct KcPluginExt {
    uint32_t struct_size;
    uint32_t flags;
    KcAttachFn attach;
    const NrStr *entries;
    uint32_t entries_len;
    uint32_t _reserved0;
    KcHandleIdFn handle_id;
    uint64_t _reserved[4];
} KcPluginExt;

typedef struct KcPluginInfo {
    NrPluginInfo base;
    const KcPluginExt *ext;
} KcPluginInfo;

typedef void (*KcReleaseFn)(void *release_ctx);
typedef NrStatus (*KcSendOwnedFn)(void *host_ctx, uint64_t sid, NrStatus status, NrBytes payload,
                                  KcReleaseFn release, void *release_ctx);
typedef NrStatus (*KcTrySendFn)(void *host_ctx, uint64_t sid, NrStatus status, NrBytes payload);

typedef struct KcHostApi {
    uint32_t struct_size;
    uint32_t flags;
    NrHostExt state;
    KcSendOwnedFn send_owned;
    KcTrySendFn try_send;
    uint64_t _reserved[4];
} KcHostApi;

/* The layout pinned by crates/kcoro-abi/tests/layout.rs (64-bit targets). */
#if UINTPTR_MAX == 0xffffffffffffffffu
#define KC_ASSERT(c) _Static_assert(c, #c)
KC_ASSERT(sizeof(NrStatus) == 4);
KC_ASSERT(sizeof(NrStr) == 16 && _Alignof(NrStr) == 8 && offsetof(NrStr, len) == 8);
KC_ASSERT(sizeof(NrBytes) == 16 && _Alignof(NrBytes) == 8 && offsetof(NrBytes, len) == 8);
KC_ASSERT(sizeof(NrHeader) == 32 && offsetof(NrHeader, value) == 16);
KC_ASSERT(sizeof(NrRequest) == 72 && _Alignof(NrRequest) == 8);
KC_ASSERT(offsetof(NrRequest, method) == 16 && offsetof(NrRequest, query) == 32);
KC_ASSERT(offsetof(NrRequest, headers) == 48 && offsetof(NrRequest, headers_len) == 56);
KC_ASSERT(offsetof(NrRequest, _reserved0) == 60 && offsetof(NrRequest, _reserved1) == 64);
KC_ASSERT(sizeof(NrHostVTable) == 8);
KC_ASSERT(sizeof(NrPluginVTable) == 40 && offsetof(NrPluginVTable, handle) == 8);
KC_ASSERT(offsetof(NrPluginVTable, shutdown) == 16 && offsetof(NrPluginVTable, stream_data) == 24);
KC_ASSERT(offsetof(NrPluginVTable, stream_close) == 32);
KC_ASSERT(sizeof(NrPluginInfo) == 56 && _Alignof(NrPluginInfo) == 8);
KC_ASSERT(offsetof(NrPluginInfo, struct_size) == 4 && offsetof(NrPluginInfo, name) == 8);
KC_ASSERT(offsetof(NrPluginInfo, version) == 24 && offsetof(NrPluginInfo, plugin_ctx) == 40);
KC_ASSERT(offsetof(NrPluginInfo, vtable) == 48);
KC_ASSERT(sizeof(NrHostExt) == 16 && offsetof(NrHostExt, get_state) == 8);
KC_ASSERT(sizeof(KcPluginInfo) == 64 && offsetof(KcPluginInfo, ext) == 56);
KC_ASSERT(sizeof(KcPluginExt) == 72 && offsetof(KcPluginExt, attach) == 8);
KC_ASSERT(offsetof(KcPluginExt, entries) == 16 && offsetof(KcPluginExt, entries_len) == 24);
KC_ASSERT(offsetof(KcPluginExt, _reserved0) == 28 && offsetof(KcPluginExt, handle_id) == 32);
KC_ASSERT(offsetof(KcPluginExt, _reserved) == 40);
KC_ASSERT(sizeof(KcHostApi) == 72 && offsetof(KcHostApi, state) == 8);
KC_ASSERT(offsetof(KcHostApi, send_owned) == 24 && offsetof(KcHostApi, try_send) == 32);
KC_ASSERT(offsetof(KcHostApi, _reserved) == 40);
#undef KC_ASSERT
#endif

#endif /* KCORO_GO_ABI_H */
