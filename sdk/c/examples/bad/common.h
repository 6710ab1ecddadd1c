/*
 * common.h: the well-behaved parts shared by the bad-input test plugins, so that each
 * bad_*.c differs from a valid version-1 plugin in exactly the one way its name says.
 * Build any of them: cc -std=c11 -O2 -fPIC -shared -Isdk/c -o libX.so sdk/c/examples/bad/X.c
 */
#ifndef KCORO_BAD_COMMON_H
#define KCORO_BAD_COMMON_H

#include "kcoro_plugin.h"

static void *g_host_ctx;
static const NrHostVTable *g_host;

static inline NrStatus bad_init(void *ctx, void *host_ctx, const NrHostVTable *vtable) {
    (void)ctx;
    if (!vtable) return NR_STATUS_INVALID;
    g_host_ctx = host_ctx;
    g_host = vtable;
    return NR_STATUS_OK;
}

static inline void bad_shutdown(void *ctx) {
    (void)ctx;
    g_host = NULL;
    g_host_ctx = NULL;
}

static inline void bad_send(uint64_t sid, NrStatus status, const char *text) {
    g_host->send_result(g_host_ctx, sid, status, nr_bytes(text, text ? strlen(text) : 0));
}

/* A correct `echo`; anything else is UNSUPPORTED. */
static inline NrStatus bad_echo(void *ctx, NrStr entry, uint64_t sid, const NrRequest *req,
                                NrBytes payload) {
    (void)ctx, (void)req;
    if (!g_host) return NR_STATUS_INVALID;
    if (!nr_str_eq(entry, "echo")) return NR_STATUS_UNSUPPORTED;
    g_host->send_result(g_host_ctx, sid, NR_STATUS_OK, payload);
    return NR_STATUS_OK;
}

/* A valid version-1 info named `name` with the given abi_version, struct_size, vtable. */
#define BAD_INFO(name, abi, size, vtable)                                                  \
    static const NrPluginInfo k_info = { (abi), (size), NR_STR_LIT(name), NR_STR_LIT("0.0.0"), \
                                         NULL, (vtable) }

#define BAD_VTABLE(handle, init) \
    static const NrPluginVTable k_vtable = { (init), (handle), bad_shutdown, NULL, NULL }

#endif
