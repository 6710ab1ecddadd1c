/* bad_status.c: `echo` replies with status 9 and its handle returns 7, values no version
 * knows. The host must not trust them: unknown statuses read as INVALID (and are terminal). */
#include "common.h"

static NrStatus bad_status_handle(void *ctx, NrStr entry, uint64_t sid, const NrRequest *req,
                                  NrBytes payload) {
    (void)ctx, (void)req;
    if (!g_host) return NR_STATUS_INVALID;
    if (!nr_str_eq(entry, "echo")) return NR_STATUS_UNSUPPORTED;
    g_host->send_result(g_host_ctx, sid, 9, payload);
    return 7;
}

BAD_VTABLE(bad_status_handle, bad_init);
BAD_INFO("bad-status", NR_ABI_VERSION, sizeof(NrPluginInfo), &k_vtable);

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
