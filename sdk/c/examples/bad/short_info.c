/* short_info.c: struct_size 40, less than the 56 bytes of a version-1 info; the host must
 * refuse it (and must not read past the 40 bytes it was promised). */
#include "common.h"

BAD_VTABLE(bad_echo, bad_init);
BAD_INFO("bad-short-info", NR_ABI_VERSION, 40, &k_vtable);

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
