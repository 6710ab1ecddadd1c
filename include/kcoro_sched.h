/*
 * kcoro_sched.h: the scheduler of the kcoro C ABI (0.2): a kcoro Runtime (M:N,
 * work-stealing). kc_sched_default() is one process-wide scheduler started on first use;
 * kc_sched_init() makes more. Spawned functions run as coroutines: channel operations in
 * them park the coroutine, not the worker thread. See docs/C_API.md for threading rules.
 */
#ifndef KCORO_SCHED_H
#define KCORO_SCHED_H

#include <stddef.h>

#include "kcoro_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_sched kc_sched_t;
typedef void (*kc_task_fn)(void *arg);

typedef struct kc_sched_opts {
    int workers;        /* <= 0: one per core */
    int queue_capacity; /* accepted, unused: kcoro sizes its own queues */
    int inject_q_cap;   /* accepted, unused */
} kc_sched_opts_t;

typedef struct kc_sched_stats {
    unsigned long tasks_submitted;
    unsigned long tasks_completed;
    unsigned long steals_probes;
    unsigned long steals_succeeded;
    unsigned long steals_failures;
    unsigned long fastpath_hits;   /* always 0 on kcoro */
    unsigned long fastpath_misses; /* always 0 on kcoro */
    unsigned long inject_pulls;
    unsigned long donations;       /* always 0 on kcoro */
} kc_sched_stats_t;

typedef struct kc_timer_handle {
    unsigned long long id;
} kc_timer_handle_t;

kc_sched_t *kc_sched_init(const kc_sched_opts_t *opts);
void kc_sched_shutdown(kc_sched_t *s);
kc_sched_t *kc_sched_default(void);
kc_sched_t *kc_sched_current(void);
int kc_spawn(kc_sched_t *s, kc_task_fn fn, void *arg);
int kc_spawn_co(kc_sched_t *s, kcoro_fn_t fn, void *arg, size_t stack_size, kcoro_t **out_co);
void kc_yield(void);
void kc_sleep_ms(int ms);
int kc_sched_drain(kc_sched_t *s, long timeout_ms);
void kc_sched_get_stats(kc_sched_t *s, kc_sched_stats_t *out);
/* enqueue_ready = kcoro_unpark(co). Timers do kcoro_unpark(co) at the deadline, on the
 * scheduler's timer wheel; wake_at takes CLOCK_MONOTONIC nanoseconds; id 0 = bad input;
 * cancel returns 0 if the timer had not fired, else -ENOENT. */
void kc_sched_enqueue_ready(kc_sched_t *s, kcoro_t *co);
kc_timer_handle_t kc_sched_timer_wake_after(kc_sched_t *s, kcoro_t *co, long delay_ms);
kc_timer_handle_t kc_sched_timer_wake_at(kc_sched_t *s, kcoro_t *co, unsigned long long deadline_ns);
int kc_sched_timer_cancel(kc_sched_t *s, kc_timer_handle_t h);

#if defined(__SIZEOF_POINTER__) && __SIZEOF_POINTER__ == 8 && defined(__SIZEOF_LONG__) && __SIZEOF_LONG__ == 8
#ifdef __cplusplus
#define KC_SCHED_STATIC_ASSERT static_assert
#else
#define KC_SCHED_STATIC_ASSERT _Static_assert
#endif
/* The same numbers are asserted in crates/kcoro-capi/src/layout.rs. */
KC_SCHED_STATIC_ASSERT(sizeof(kc_sched_opts_t) == 12, "kc_sched_opts_t is 12 bytes");
KC_SCHED_STATIC_ASSERT(sizeof(kc_sched_stats_t) == 72, "kc_sched_stats_t is 72 bytes");
KC_SCHED_STATIC_ASSERT(offsetof(kc_sched_stats_t, donations) == 64, "donations at 64");
KC_SCHED_STATIC_ASSERT(sizeof(kc_timer_handle_t) == 8, "kc_timer_handle_t is 8 bytes");
#undef KC_SCHED_STATIC_ASSERT
#endif

#ifdef __cplusplus
}
#endif

#endif /* KCORO_SCHED_H */
