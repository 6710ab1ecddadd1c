/* init_fails.c: init returns ERR; the host must report the load as failed and never call
 * handle. */
#include "common.h"

static NrStatus failing_init(void *ctx, void *host_ctx, const NrHostVTable *vtable) {
    (void)ctx, (void)host_ctx, (void)vtable;
    return NR_STATUS_ERR;
}

BAD_VTABLE(bad_echo, failing_init);
BAD_INFO("bad-init-fails", NR_ABI_VERSION, sizeof(NrPluginInfo), &k_vtable);

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
