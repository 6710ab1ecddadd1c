/*
 * kcoro.h: the kcoro C API (ABI 0.2) on the Rust kcoro runtime (libkcoro).
 *
 * Channels of four kinds carry fixed-size elements by copy (elem_sz bytes), (ptr, len)
 * pairs (pointer mode) or zero-copy descriptors (zref); every operation takes a timeout
 * (0 = try, < 0 = forever, > 0 = bounded, monotonic) and the _c forms a cancel token
 * (cancellation wins over the timeout). Waits park: a scheduler coroutine parks without
 * blocking its worker, a plain thread parks its thread. Nothing polls.
 * Returns: 0 on success or a negative code of kcoro_port.h. See docs/C_API.md.
 *
 * Struct layouts are asserted below (64-bit targets) and, with the same numbers, in
 * crates/kcoro-capi/src/layout.rs.
 */
#ifndef KCORO_H
#define KCORO_H

#include <stddef.h>
#include <stdint.h>

#include "kcoro_abi.h"
#include "kcoro_core.h"
#include "kcoro_port.h"
#include "kcoro_zcopy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_chan kc_chan_t;
typedef struct kc_scope kc_scope_t;
typedef struct kc_select kc_select_t;
typedef struct kc_cancel kc_cancel_t;
typedef struct kc_region kc_region_t;
typedef void *kc_actor_t;

enum kc_kind {
    KC_RENDEZVOUS = 0, /* no buffer: a send completes when a receiver takes it */
    KC_BUFFERED = 1,   /* ring of capacity (0: 64); any kind > 0 with capacity 0: that many */
    KC_CONFLATED = -1, /* one slot, a send overwrites and never waits */
    KC_UNLIMITED = -2  /* grows without bound, a send never waits */
};

#define KC_REGION_F_NONE 0u
#define KC_SELECT_CLAUSE_RECV 0
#define KC_SELECT_CLAUSE_SEND 1

typedef void (*kc_on_undelivered_copy_fn)(void *elem, size_t len, void *arg);
typedef void (*kc_on_undelivered_ptr_fn)(void *ptr, size_t len, void *arg);
typedef int (*kc_actor_fn)(const void *msg, void *user);
typedef int (*kc_producer_fn)(kc_chan_t *ch, void *user);

/* ---- channels (copy mode) ---- */
int kc_chan_make(kc_chan_t **out, int kind, size_t elem_sz, size_t capacity);
/* on_ud_copy gets each element the channel accepted but nobody will receive (dropped by
 * destroy with elements still buffered), exactly once, on the thread that dropped it. */
int kc_chan_make_ex(kc_chan_t **out, int kind, size_t elem_sz, size_t capacity,
                    kc_on_undelivered_copy_fn on_ud_copy, kc_on_undelivered_ptr_fn on_ud_ptr,
                    void *on_ud_arg);
/* Only after every operation on ch has returned. Buffered elements go to the callback. */
void kc_chan_destroy(kc_chan_t *ch);
/* Sends then fail with KC_EPIPE; receivers drain, then get KC_EPIPE; all waiters wake. */
void kc_chan_close(kc_chan_t *ch);
unsigned kc_chan_len(kc_chan_t *ch);
unsigned kc_chan_capabilities(kc_chan_t *ch);
int kc_chan_send(kc_chan_t *ch, const void *msg, long timeout_ms);
int kc_chan_recv(kc_chan_t *ch, void *out, long timeout_ms);
int kc_chan_send_c(kc_chan_t *ch, const void *msg, long timeout_ms, const kc_cancel_t *c);
int kc_chan_recv_c(kc_chan_t *ch, void *out, long timeout_ms, const kc_cancel_t *c);
static inline int kc_chan_try_send(kc_chan_t *ch, const void *msg)
{
    return kc_chan_send(ch, msg, 0);
}
static inline int kc_chan_try_recv(kc_chan_t *ch, void *out)
{
    return kc_chan_recv(ch, out, 0);
}

/* ---- pointer mode: (ptr, len) moves, the payload does not ---- */
struct kc_chan_ptrmsg {
    void *ptr;
    size_t len;
};
int kc_chan_make_ptr(kc_chan_t **out, int kind, size_t capacity);
int kc_chan_send_ptr(kc_chan_t *ch, void *ptr, size_t len, long timeout_ms);
int kc_chan_recv_ptr(kc_chan_t *ch, void **out_ptr, size_t *out_len, long timeout_ms);
int kc_chan_send_ptr_c(kc_chan_t *ch, void *ptr, size_t len, long timeout_ms, const kc_cancel_t *c);
int kc_chan_recv_ptr_c(kc_chan_t *ch, void **out_ptr, size_t *out_len, long timeout_ms,
                       const kc_cancel_t *c);

/* ---- zero copy (zref): before the first operation; then descriptors only ---- */
struct kc_chan_zstats {
    unsigned long zref_sent;
    unsigned long zref_received;
    unsigned long zref_fallback_small;    /* always 0: kcoro never falls back to copying */
    unsigned long zref_fallback_capacity; /* always 0, as above */
    unsigned long zref_canceled;
    unsigned long zref_aborted_close;
};
int kc_chan_enable_zero_copy(kc_chan_t *ch);
int kc_chan_send_zref(kc_chan_t *ch, void *ptr, size_t len, long timeout_ms);
int kc_chan_recv_zref(kc_chan_t *ch, void **out_ptr, size_t *out_len, long timeout_ms);
int kc_chan_send_zref_c(kc_chan_t *ch, void *ptr, size_t len, long timeout_ms, const kc_cancel_t *c);
int kc_chan_recv_zref_c(kc_chan_t *ch, void **out_ptr, size_t *out_len, long timeout_ms,
                        const kc_cancel_t *c);
int kc_chan_get_zstats(kc_chan_t *ch, struct kc_chan_zstats *out);

/* ---- regions: caller memory that descriptors name as (export id, offset, len); a
 * received region descriptor carries the span's local address in addr. deregister frees
 * the handle, or fails with -EBUSY (changing nothing) while descriptors into it are in
 * flight. flags: KC_REGION_F_NONE. ---- */
int kc_region_register(kc_region_t **out, void *addr, size_t len, unsigned flags);
int kc_region_deregister(kc_region_t *reg);
int kc_region_export_id(const kc_region_t *reg, unsigned long *out_id);

/* ---- stats ---- */
struct kc_chan_stats {
    unsigned long total_sends, total_recvs, total_bytes_sent, total_bytes_recv;
    long first_op_time_ns, last_op_time_ns; /* CLOCK_MONOTONIC_COARSE; 0: no op yet */
    double send_rate_ops_sec, recv_rate_ops_sec, send_rate_bytes_sec, recv_rate_bytes_sec;
    double duration_sec; /* last - first operation time */
};

#define KC_CHAN_SNAPSHOT_DEFINED 1
struct kc_chan_snapshot {
    void *chan;
    int kind;
#if defined(__SIZEOF_POINTER__) && __SIZEOF_POINTER__ == 8
    /* Library-owned (the old padding): when the snapshot was taken, monotonic us mod 2^32.
     * kc_chan_compute_rate takes its interval from it. */
    unsigned kc_stamp_us;
#endif
    size_t elem_sz, capacity, count;
    unsigned capabilities;
    int closed, zref_mode, ptr_mode;
    unsigned long total_sends, total_recvs, total_bytes_sent, total_bytes_recv;
    long first_op_time_ns, last_op_time_ns;
    unsigned long send_eagain, send_etime, send_epipe;
    unsigned long recv_eagain, recv_etime, recv_epipe;
    unsigned long zref_sent, zref_received, zref_aborted_close;
    unsigned long rv_matches, rv_cancels, rv_zdesc_matches;
    double duration_sec;
};

#define KC_CHAN_RATE_SAMPLE_DEFINED 1
struct kc_chan_rate_sample {
    unsigned long delta_sends, delta_recvs, delta_bytes_sent, delta_bytes_recv;
    unsigned long delta_send_eagain, delta_recv_eagain, delta_send_epipe, delta_recv_epipe;
    unsigned long delta_rv_matches, delta_rv_cancels, delta_rv_zdesc_matches;
    double interval_sec, sends_per_sec, recvs_per_sec, bytes_sent_per_sec, bytes_recv_per_sec;
};

int kc_chan_get_stats(kc_chan_t *ch, struct kc_chan_stats *out);
int kc_chan_snapshot(kc_chan_t *ch, struct kc_chan_snapshot *out);
/* prev may be zeroed (then the interval is curr's first-to-last operation time). */
int kc_chan_compute_rate(const struct kc_chan_snapshot *prev, const struct kc_chan_snapshot *curr,
                         struct kc_chan_rate_sample *out);

/* ---- select: parks on every clause, one winner; biased (lowest index wins ties) ---- */
int kc_select_create(kc_select_t **out, const kc_cancel_t *cancel);
void kc_select_destroy(kc_select_t *s);
void kc_select_reset(kc_select_t *s);
/* Clauses are numbered from 0 in the order added; both return 0. The buffer is the
 * element (copy mode), a struct kc_chan_ptrmsg (pointer mode) or a kc_zdesc_t (zref). */
int kc_select_add_recv(kc_select_t *s, kc_chan_t *ch, void *out);
int kc_select_add_send(kc_select_t *s, kc_chan_t *ch, const void *msg);
/* 0 with *selected_index and *op_result (0 or KC_EPIPE); else KC_EAGAIN / KC_ETIME /
 * KC_ECANCELED with *selected_index = -1; -EINVAL for an empty select. */
int kc_select_wait(kc_select_t *s, long timeout_ms, int *selected_index, int *op_result);

/* ---- cancellation ---- */
int kc_cancel_init(kc_cancel_t **out);
void kc_cancel_trigger(kc_cancel_t *t);
int kc_cancel_is_set(const kc_cancel_t *t);
void kc_cancel_destroy(kc_cancel_t *t);
/* 0 once triggered; KC_EAGAIN (timeout 0) or KC_ETIME if not. */
int kc_cancel_wait(const kc_cancel_t *t, long timeout_ms);
typedef struct kc_cancel_ctx {
    const kc_cancel_t *parent;
    kc_cancel_t *token; /* child of parent: cancelled when parent is */
} kc_cancel_ctx_t;
int kc_cancel_ctx_init(kc_cancel_ctx_t *ctx, const kc_cancel_t *parent);
void kc_cancel_ctx_destroy(kc_cancel_ctx_t *ctx);

/* ---- scopes and actors (docs/C_API.md) ----
 * A scope's children run on kc_sched_default() under the scope's token (their blocking
 * calls return KC_ECANCELED once it fires); kc_scope_destroy cancels, then waits for them.
 * An actor parks on its mailbox and calls process(msg, user) per message; non-zero stops
 * it. kc_actor_t is an id, not a pointer: it needs no freeing, and calls on a finished
 * actor do nothing (kc_actor_on_done then calls back at once). */
typedef struct kc_actor_ctx {
    kc_chan_t *chan;
    size_t msg_size;
    int timeout_ms;
    kc_actor_fn process;
    void *user;
} kc_actor_ctx_t;
typedef struct kc_actor_ctx_ex {
    kc_actor_ctx_t base;
    const kc_cancel_t *cancel;
} kc_actor_ctx_ex_t;

int kc_scope_init(kc_scope_t **out, const kc_cancel_t *parent);
void kc_scope_cancel(kc_scope_t *s);
int kc_scope_launch(kc_scope_t *s, kcoro_fn_t fn, void *arg, size_t stack_size, kcoro_t **out_co);
kc_actor_t kc_scope_actor(kc_scope_t *s, const kc_actor_ctx_t *ctx);
kc_chan_t *kc_scope_produce(kc_scope_t *s, int kind, size_t elem_sz, size_t capacity,
                            kc_producer_fn fn, void *user);
int kc_scope_wait_all(kc_scope_t *s, long timeout_ms);
void kc_scope_destroy(kc_scope_t *s);
const kc_cancel_t *kc_scope_token(const kc_scope_t *s);

kc_actor_t kc_actor_start(const kc_actor_ctx_t *ctx);
kc_actor_t kc_actor_start_ex(const kc_actor_ctx_ex_t *ctx);
void kc_actor_stop(kc_actor_t a);
void kc_actor_cancel(kc_actor_t a);
void kc_actor_on_done(kc_actor_t a, void (*cb)(void *), void *arg);

#if defined(__SIZEOF_POINTER__) && __SIZEOF_POINTER__ == 8 && defined(__SIZEOF_LONG__) && __SIZEOF_LONG__ == 8
#ifdef __cplusplus
#define KC_STATIC_ASSERT static_assert
#else
#define KC_STATIC_ASSERT _Static_assert
#endif
KC_STATIC_ASSERT(sizeof(struct kc_chan_ptrmsg) == 16, "kc_chan_ptrmsg is 16 bytes");
KC_STATIC_ASSERT(sizeof(kc_cancel_ctx_t) == 16, "kc_cancel_ctx_t is 16 bytes");
KC_STATIC_ASSERT(sizeof(struct kc_chan_zstats) == 48, "kc_chan_zstats is 48 bytes");
KC_STATIC_ASSERT(offsetof(struct kc_chan_zstats, zref_aborted_close) == 40, "aborted_close at 40");
KC_STATIC_ASSERT(sizeof(struct kc_chan_stats) == 88, "kc_chan_stats is 88 bytes");
KC_STATIC_ASSERT(offsetof(struct kc_chan_stats, first_op_time_ns) == 32, "first_op at 32");
KC_STATIC_ASSERT(offsetof(struct kc_chan_stats, send_rate_ops_sec) == 48, "rates at 48");
KC_STATIC_ASSERT(offsetof(struct kc_chan_stats, duration_sec) == 80, "duration at 80");
KC_STATIC_ASSERT(sizeof(struct kc_chan_snapshot) == 208, "kc_chan_snapshot is 208 bytes");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, kind) == 8, "kind at 8");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, kc_stamp_us) == 12, "stamp at 12");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, elem_sz) == 16, "elem_sz at 16");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, count) == 32, "count at 32");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, capabilities) == 40, "capabilities at 40");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, ptr_mode) == 52, "ptr_mode at 52");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, total_sends) == 56, "total_sends at 56");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, first_op_time_ns) == 88, "first_op at 88");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, send_eagain) == 104, "send_eagain at 104");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, recv_epipe) == 144, "recv_epipe at 144");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, zref_sent) == 152, "zref_sent at 152");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, rv_matches) == 176, "rv_matches at 176");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, rv_zdesc_matches) == 192, "rv_zdesc at 192");
KC_STATIC_ASSERT(offsetof(struct kc_chan_snapshot, duration_sec) == 200, "duration at 200");
KC_STATIC_ASSERT(sizeof(struct kc_chan_rate_sample) == 128, "kc_chan_rate_sample is 128 bytes");
KC_STATIC_ASSERT(offsetof(struct kc_chan_rate_sample, delta_rv_zdesc_matches) == 80, "at 80");
KC_STATIC_ASSERT(offsetof(struct kc_chan_rate_sample, interval_sec) == 88, "interval at 88");
KC_STATIC_ASSERT(offsetof(struct kc_chan_rate_sample, bytes_recv_per_sec) == 120, "at 120");
KC_STATIC_ASSERT(sizeof(kc_actor_ctx_t) == 40, "kc_actor_ctx_t is 40 bytes");
KC_STATIC_ASSERT(offsetof(kc_actor_ctx_t, timeout_ms) == 16, "timeout_ms at 16");
KC_STATIC_ASSERT(offsetof(kc_actor_ctx_t, process) == 24, "process at 24");
KC_STATIC_ASSERT(offsetof(kc_actor_ctx_t, user) == 32, "user at 32");
KC_STATIC_ASSERT(sizeof(kc_actor_ctx_ex_t) == 48, "kc_actor_ctx_ex_t is 48 bytes");
KC_STATIC_ASSERT(offsetof(kc_actor_ctx_ex_t, cancel) == 40, "cancel at 40");
#undef KC_STATIC_ASSERT
#endif

#ifdef __cplusplus
}
#endif

#endif /* KCORO_H */
