/* bad_utf8.c: an extended plugin whose entry table names an entry with bytes that are not
 * UTF-8; the host must refuse it at load, naming the entry table. */
#include "common.h"

BAD_VTABLE(bad_echo, bad_init);

static const NrStr k_entries[] = { NR_STR_LIT("echo"), NR_STR_LIT("\xff\xfe") };
static const KcPluginExt k_ext = {
    sizeof(KcPluginExt), 0, NULL, k_entries, 2, 0, NULL, { 0, 0, 0, 0 },
};
static const KcPluginInfo k_info = {
    { NR_ABI_VERSION, sizeof(KcPluginInfo), NR_STR_LIT("bad-utf8"), NR_STR_LIT("0.0.0"), NULL, &k_vtable },
    &k_ext,
};

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info.base;
}
