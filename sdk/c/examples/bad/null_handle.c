/* null_handle.c: a vtable whose handle is NULL; the host must refuse it (there is no way to
 * call the plugin). init and shutdown are valid. */
#include "common.h"

BAD_VTABLE(NULL, bad_init);
BAD_INFO("bad-null-handle", NR_ABI_VERSION, sizeof(NrPluginInfo), &k_vtable);

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
