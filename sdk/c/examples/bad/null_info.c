/* null_info.c: the entry symbol returns NULL; the host must refuse it. */
#include "kcoro_plugin.h"

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return NULL;
}
