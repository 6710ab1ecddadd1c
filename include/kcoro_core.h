/*
 * kcoro_core.h: coroutine handles of the kcoro C ABI (0.2).
 *
 * kcoro_t is opaque and reference counted: kcoro_create and kc_spawn_co hand out one
 * reference (drop it with kcoro_release, or kcoro_destroy, its old name); kcoro_current,
 * kcoro_thread_main and kcoro_create_main return borrowed pointers (kcoro_retain to keep).
 * kcoro_create makes a coroutine that belongs to no scheduler: kcoro_resume runs it on the
 * calling thread until it yields, parks (kcoro_park, or a channel operation that must
 * wait) or returns; a resume of a running, finished, or parked-and-not-woken coroutine does
 * nothing. kcoro_unpark marks it ready without running it. Inside a scheduler coroutine
 * kcoro_yield is kc_yield and kcoro_park parks it on its worker. See docs/C_API.md.
 */
#ifndef KCORO_CORE_H
#define KCORO_CORE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kcoro kcoro_t;
typedef void (*kcoro_fn_t)(void *arg);

typedef enum kcoro_state {
    KCORO_CREATED,
    KCORO_READY,
    KCORO_RUNNING,
    KCORO_SUSPENDED,
    KCORO_PARKED,
    KCORO_FINISHED
} kcoro_state_t;

kcoro_t *kcoro_create(kcoro_fn_t fn, void *arg, size_t stack_size);
void kcoro_destroy(kcoro_t *co);
void kcoro_set_name(kcoro_t *co, const char *name);
void kcoro_resume(kcoro_t *co);
kcoro_t *kcoro_current(void);
kcoro_t *kcoro_thread_main(void);
void kcoro_retain(kcoro_t *co);
void kcoro_release(kcoro_t *co);
void kcoro_yield(void);
void kcoro_yield_to(kcoro_t *co);
void kcoro_park(void);
void kcoro_unpark(kcoro_t *co);
int kcoro_is_parked(const kcoro_t *co);
kcoro_t *kcoro_create_main(void);
void kcoro_set_thread_main(kcoro_t *co);

#ifdef __cplusplus
}
#endif

#endif /* KCORO_CORE_H */
