/*
 * kcoro_zcopy.h: zero-copy descriptors and backends of the kcoro C ABI (0.2).
 *
 * kc_zdesc_t names a span by address (addr, len) or by region (region_id, offset, len);
 * region_id is the region's export id, so a descriptor made in one process resolves in
 * another that mapped the same region. kc_zcopy_backend_ops_t is a backend as a table of
 * functions; the Rust runtime calls send/recv with tmo_ms = 0 and a NULL cancel token and
 * does all waiting itself, so a backend only stores and hands out descriptors ("not now"
 * is any non-zero return). The kc_chan_t * a backend receives is an opaque per-channel key.
 *
 * Layouts are asserted below and, with the same numbers, in crates/kcoro/src/zcopy
 * (desc.rs, backend.rs), so the two cannot drift.
 */
#ifndef KCORO_ZCOPY_H
#define KCORO_ZCOPY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_chan kc_chan_t;
typedef struct kc_cancel kc_cancel_t;
typedef int kc_zcopy_backend_id;

#ifndef KC_CHAN_CAP_ZERO_COPY
#define KC_CHAN_CAP_ZERO_COPY (1u << 0)
#define KC_CHAN_CAP_PTR (1u << 1)
#endif

/* kc_zdesc_t.flags: the span is a lease of a region's allocator (kcoro's ZBuf). */
#define KC_ZDESC_F_LEASE (1u << 0)
/* Library-owned: set while a descriptor into a kc_region_t is in flight in a channel (it
 * keeps kc_region_deregister at -EBUSY); cleared on send and receive, never seen by users. */
#define KC_ZDESC_F_HELD (1u << 1)

typedef struct kc_zdesc {
    void *addr;         /* local address of the span (advisory when region_id != 0) */
    size_t len;         /* span length; never 0 */
    uint64_t region_id; /* export id of the region, 0 for a bare pointer */
    uint64_t offset;    /* span start inside the region */
    uint32_t flags;     /* KC_ZDESC_F_* */
} kc_zdesc_t;

typedef struct kc_zcopy_backend_ops {
    int (*attach)(kc_chan_t *ch, const void *opts);
    void (*detach)(kc_chan_t *ch);
    int (*send)(kc_chan_t *ch, const kc_zdesc_t *d, long tmo_ms);
    int (*recv)(kc_chan_t *ch, kc_zdesc_t *d, long tmo_ms);
    int (*send_c)(kc_chan_t *ch, const kc_zdesc_t *d, long tmo_ms, const kc_cancel_t *ct);
    int (*recv_c)(kc_chan_t *ch, kc_zdesc_t *d, long tmo_ms, const kc_cancel_t *ct);
} kc_zcopy_backend_ops_t;

/* The backend registry; ids are >= 0 ("zref" is 0), errors negative (-EINVAL bad name or
 * missing send/recv, -EEXIST name taken, -ENOENT unknown name). */
kc_zcopy_backend_id kc_zcopy_register(const char *name, const kc_zcopy_backend_ops_t *ops, uint32_t caps);
kc_zcopy_backend_id kc_zcopy_resolve(const char *name);
/* Binds a backend to a channel before its first operation (idempotent once bound). */
int kc_chan_enable_zero_copy_backend(kc_chan_t *ch, kc_zcopy_backend_id id, const void *opts);
/* Descriptor send/receive; KC_ENOTSUP when no backend is bound, -EINVAL for len 0. */
int kc_chan_send_desc(kc_chan_t *ch, const kc_zdesc_t *d, long timeout_ms);
int kc_chan_recv_desc(kc_chan_t *ch, kc_zdesc_t *d, long timeout_ms);
int kc_chan_send_desc_c(kc_chan_t *ch, const kc_zdesc_t *d, long timeout_ms, const kc_cancel_t *c);
int kc_chan_recv_desc_c(kc_chan_t *ch, kc_zdesc_t *d, long timeout_ms, const kc_cancel_t *c);

unsigned kc_chan_capabilities(kc_chan_t *ch);
static inline int kc_chan_is_zero_copy(kc_chan_t *ch)
{
    return (kc_chan_capabilities(ch) & KC_CHAN_CAP_ZERO_COPY) != 0;
}

#if UINTPTR_MAX == 0xffffffffffffffffu
#ifdef __cplusplus
#define KC_ZCOPY_STATIC_ASSERT static_assert
#else
#define KC_ZCOPY_STATIC_ASSERT _Static_assert
#endif
KC_ZCOPY_STATIC_ASSERT(sizeof(kc_zdesc_t) == 40, "kc_zdesc_t is 40 bytes");
KC_ZCOPY_STATIC_ASSERT(offsetof(kc_zdesc_t, len) == 8, "kc_zdesc_t.len at 8");
KC_ZCOPY_STATIC_ASSERT(offsetof(kc_zdesc_t, region_id) == 16, "kc_zdesc_t.region_id at 16");
KC_ZCOPY_STATIC_ASSERT(offsetof(kc_zdesc_t, offset) == 24, "kc_zdesc_t.offset at 24");
KC_ZCOPY_STATIC_ASSERT(offsetof(kc_zdesc_t, flags) == 32, "kc_zdesc_t.flags at 32");
KC_ZCOPY_STATIC_ASSERT(sizeof(kc_zcopy_backend_ops_t) == 48, "six function pointers");
#undef KC_ZCOPY_STATIC_ASSERT
#endif

#ifdef __cplusplus
}
#endif

#endif /* KCORO_ZCOPY_H */
