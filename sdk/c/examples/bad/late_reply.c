/* late_reply.c: replies after the call is over, synchronously inside handle.
 *   twice      OK "a", then OK "b" for the same sid (a unary call ends at its first reply)
 *   after_end  STREAM_END, then OK "late"
 * The host must deliver the first reply, then ignore (and count) the extra one. */
#include "common.h"

static NrStatus late_handle(void *ctx, NrStr entry, uint64_t sid, const NrRequest *req,
                            NrBytes payload) {
    (void)ctx, (void)req, (void)payload;
    if (!g_host) return NR_STATUS_INVALID;
    if (nr_str_eq(entry, "twice")) {
        bad_send(sid, NR_STATUS_OK, "a");
        bad_send(sid, NR_STATUS_OK, "b");
        return NR_STATUS_OK;
    }
    if (nr_str_eq(entry, "after_end")) {
        bad_send(sid, NR_STATUS_STREAM_END, NULL);
        bad_send(sid, NR_STATUS_OK, "late");
        return NR_STATUS_OK;
    }
    return NR_STATUS_UNSUPPORTED;
}

BAD_VTABLE(late_handle, bad_init);
BAD_INFO("bad-late-reply", NR_ABI_VERSION, sizeof(NrPluginInfo), &k_vtable);

NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {
    return &k_info;
}
