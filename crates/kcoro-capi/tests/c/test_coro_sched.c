/* Handles of scheduler coroutines: kc_spawn_co's out_co and kcoro_current() inside a
 * spawned function, kcoro_park there woken by kcoro_unpark from other threads,
 * kc_sched_enqueue_ready, and the scheduler's timers (wake after, wake at, cancel before
 * and after firing), on scheduler and manual coroutines; bad input. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "../../../../include/kcoro.h"
#include "../../../../include/kcoro_core.h"
#include "../../../../include/kcoro_sched.h"
#include "check.h"

struct sleeper {
    _Atomic(kcoro_t *) self; /* what kcoro_current() said inside */
    atomic_int woke;         /* set after kcoro_park returned */
    kc_chan_t *go;           /* if set: wait for a message before parking */
};

static void park_once(void *p)
{
    struct sleeper *s = (struct sleeper *)p;
    kcoro_t *me = kcoro_current();
    CHECK(me != NULL);
    CHECK(kcoro_current() == me); /* the same handle every time */
    atomic_store(&s->self, me);
    if (s->go) {
        int v;
        CHECK_EQ(kc_chan_recv(s->go, &v, -1), 0);
    }
    kcoro_park();
    atomic_store(&s->woke, 1);
}

static void wait_parked(kcoro_t *co)
{
    while (!kcoro_is_parked(co)) kc_sleep_ms(1);
}

static void *unpark_from_thread(void *p)
{
    kcoro_unpark((kcoro_t *)p);
    return NULL;
}

static unsigned long long monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void resume_me(void *p)
{
    (void)p;
    kcoro_park();
}

int main(void)
{
    kc_sched_t *s = kc_sched_default();
    CHECK(s != NULL);

    /* kc_spawn_co hands out the handle; the coroutine sees the same one; a plain thread
     * unparks it */
    struct sleeper a = {0};
    kcoro_t *co = NULL;
    CHECK_EQ(kc_spawn_co(s, park_once, &a, 0, &co), 0);
    CHECK(co != NULL);
    wait_parked(co);
    CHECK(atomic_load(&a.self) == co);
    CHECK_EQ(atomic_load(&a.woke), 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, unpark_from_thread, co), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK_EQ(kc_sched_drain(s, -1), 0);
    CHECK_EQ(atomic_load(&a.woke), 1);
    CHECK_EQ(kcoro_is_parked(co), 0);
    kcoro_unpark(co); /* finished: harmless */
    kcoro_release(co);

    /* kc_spawn: the handle is made by kcoro_current() inside, borrowed until it returns */
    struct sleeper b = {0};
    CHECK_EQ(kc_spawn(s, park_once, &b), 0);
    while (atomic_load(&b.self) == NULL) kc_sleep_ms(1);
    kcoro_t *bh = atomic_load(&b.self);
    wait_parked(bh);
    kc_sched_enqueue_ready(s, bh);
    CHECK_EQ(kc_sched_drain(s, -1), 0);
    CHECK_EQ(atomic_load(&b.woke), 1);

    /* enqueue_ready before the park: the token makes the park return at once */
    struct sleeper c = {0};
    CHECK_EQ(kc_chan_make(&c.go, KC_RENDEZVOUS, sizeof(int), 0), 0);
    CHECK_EQ(kc_spawn_co(s, park_once, &c, 0, &co), 0);
    kc_sched_enqueue_ready(s, co);
    int one = 1;
    CHECK_EQ(kc_chan_send(c.go, &one, -1), 0);
    CHECK_EQ(kc_sched_drain(s, -1), 0);
    CHECK_EQ(atomic_load(&c.woke), 1);
    kcoro_release(co);
    kc_chan_destroy(c.go);

    /* timers: wake_after fires */
    struct sleeper d = {0};
    CHECK_EQ(kc_spawn_co(s, park_once, &d, 0, &co), 0);
    wait_parked(co);
    kc_timer_handle_t h = kc_sched_timer_wake_after(s, co, 2);
    CHECK(h.id != 0);
    CHECK_EQ(kc_sched_drain(s, -1), 0);
    CHECK_EQ(atomic_load(&d.woke), 1);
    CHECK_EQ(kc_sched_timer_cancel(s, h), -ENOENT); /* fired */
    kcoro_release(co);

    /* cancelled before it fires: never wakes; wake_at then does */
    struct sleeper e = {0};
    CHECK_EQ(kc_spawn_co(s, park_once, &e, 0, &co), 0);
    wait_parked(co);
    h = kc_sched_timer_wake_after(s, co, 300);
    CHECK_EQ(kc_sched_timer_cancel(s, h), 0);
    CHECK_EQ(kc_sched_timer_cancel(s, h), -ENOENT); /* already cancelled */
    CHECK_EQ(kc_sched_drain(s, 400), KC_ETIME);      /* past its deadline, still parked */
    CHECK_EQ(kcoro_is_parked(co), 1);
    CHECK_EQ(atomic_load(&e.woke), 0);
    h = kc_sched_timer_wake_at(s, co, monotonic_ns() + 2000000ull);
    CHECK(h.id != 0);
    CHECK_EQ(kc_sched_drain(s, -1), 0);
    CHECK_EQ(atomic_load(&e.woke), 1);
    kcoro_release(co);

    /* a timer on a manual coroutine makes it resumable */
    kcoro_t *m = kcoro_create(resume_me, NULL, 0);
    kcoro_resume(m);
    CHECK_EQ(kcoro_is_parked(m), 1);
    h = kc_sched_timer_wake_at(s, m, 0); /* in the past: at the next turn of the wheel */
    CHECK(h.id != 0);
    while (kcoro_is_parked(m)) kc_sleep_ms(1);
    kcoro_resume(m); /* returns from kcoro_park and finishes */
    CHECK_EQ(kcoro_is_parked(m), 0);
    kcoro_release(m);

    /* bad input */
    CHECK_EQ(kc_sched_timer_wake_after(NULL, co, 1).id, 0);
    CHECK_EQ(kc_sched_timer_wake_after(s, NULL, 1).id, 0);
    CHECK_EQ(kc_sched_timer_wake_at(s, NULL, 0).id, 0);
    kc_timer_handle_t none = {0};
    CHECK_EQ(kc_sched_timer_cancel(s, none), -ENOENT);
    CHECK_EQ(kc_sched_timer_cancel(NULL, h), -EINVAL);
    kc_sched_enqueue_ready(NULL, NULL);
    kc_sched_enqueue_ready(s, NULL);
    CHECK_EQ(kc_spawn_co(NULL, park_once, NULL, 0, &co), -EINVAL);
    CHECK(co == NULL);
    printf("test_coro_sched: ok\n");
    return 0;
}
