/*
 * kcoro_core.h: coroutine handles of the kcoro C ABI (0.2).
 *
 * kcoro_t is opaque. Coroutines spawned with kc_spawn/kc_spawn_co run on the scheduler
 * (kcoro_sched.h). The manually resumed coroutine calls below (kcoro_create, kcoro_resume,
 * kcoro_park/unpark, the thread main coroutine) are declared so programs link, but this
 * library does not implement them yet: kcoro_create and kcoro_create_main return NULL and
 * the others do nothing (see docs/C_API.md). kcoro_yield inside a scheduler coroutine
 * behaves as kc_yield.
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
