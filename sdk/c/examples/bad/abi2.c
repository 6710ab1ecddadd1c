/* abi2.c: abi_version 2; the host must refuse it before calling anything. */
#include "common.h"

BAD_VTABLE(bad_echo, bad_init);
BAD_INFO("bad-abi2", 2, sizeof(NrPluginInfo), &k_vtable);

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
