/* null_vtable.c: vtable NULL; the host must refuse it. */
#include "common.h"

BAD_INFO("bad-null-vtable", NR_ABI_VERSION, sizeof(NrPluginInfo), NULL);

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
