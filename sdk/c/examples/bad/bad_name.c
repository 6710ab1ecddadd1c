/* bad_name.c: a plugin name that is not UTF-8; the host must refuse it at load. */
#include "common.h"

BAD_VTABLE(bad_echo, bad_init);
BAD_INFO("bad-\xc3", NR_ABI_VERSION, sizeof(NrPluginInfo), &k_vtable);

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
