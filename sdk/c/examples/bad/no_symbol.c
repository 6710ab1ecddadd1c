/* no_symbol.c: a valid plugin exported under the wrong name; the host must report the
 * missing nylon_ring_get_plugin_v1 symbol. */
#include "common.h"

BAD_VTABLE(bad_echo, bad_init);
BAD_INFO("bad-no-symbol", NR_ABI_VERSION, sizeof(NrPluginInfo), &k_vtable);

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v2(void);
NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v2(void) {
    return &k_info;
}
