/* The scheduler through the C API: 100k coroutines, drain, stats, coroutines talking over
 * channels (they park, not their workers), a second scheduler shut down with coroutines
 * parked (they get KC_ECANCELED and return), bad input. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "../../../../include/kcoro.h"
#include "../../../../include/kcoro_sched.h"
#include "check.h"

static atomic_long hits;

static void count(void *arg)
{
    atomic_fetch_add(&hits, (long)(size_t)arg);
}

struct pp {
    kc_chan_t *ping, *pong;
    int rounds;
};

/* ping-pong between two coroutines: every receive parks a coroutine */
static void pinger(void *p)
{
    struct pp *s = (struct pp *)p;
    for (int i = 0; i < s->rounds; i++) {
        CHECK_EQ(kc_chan_send(s->ping, &i, -1), 0);
        int back = -1;
        CHECK_EQ(kc_chan_recv(s->pong, &back, -1), 0);
        CHECK_EQ(back, i + 1);
    }
    kc_chan_close(s->ping);
}

static void ponger(void *p)
{
    struct pp *s = (struct pp *)p;
    int v;
    while (kc_chan_recv(s->ping, &v, -1) == 0) {
        v++;
        CHECK_EQ(kc_chan_send(s->pong, &v, -1), 0);
    }
    CHECK(kc_sched_current() != NULL);
    kc_yield();
    kc_sleep_ms(1);
    atomic_fetch_add(&hits, 1000000);
}

static void never(void *p)
{
    int v;
    kc_chan_recv((kc_chan_t *)p, &v, -1); /* parked until the channel closes */
}

/* What a coroutine parked at shutdown saw: the call it was parked in, a retry, and
 * whether it got to return. */
static atomic_int started_at_shutdown, parked_code = 1, retry_code = 1, returned_at_shutdown;

static void cancelled_at_shutdown(void *p)
{
    int v;
    atomic_store(&started_at_shutdown, 1);
    atomic_store(&parked_code, kc_chan_recv((kc_chan_t *)p, &v, -1));
    atomic_store(&retry_code, kc_chan_recv((kc_chan_t *)p, &v, -1)); /* fails at once */
    kc_sleep_ms(100000);                                          /* returns at once */
    atomic_store(&returned_at_shutdown, 1);
}

int main(void)
{
    kc_sched_t *s = kc_sched_default();
    CHECK(s != NULL);
    CHECK(kc_sched_default() == s);
    CHECK(kc_sched_current() == NULL); /* a plain thread */

    kc_sched_stats_t before, after;
    kc_sched_get_stats(s, &before);
    atomic_store(&hits, 0);
    for (int i = 0; i < 100000; i++) {
        if (i % 2)
            CHECK_EQ(kc_spawn(s, count, (void *)(size_t)1), 0);
        else
            CHECK_EQ(kc_spawn_co(s, count, (void *)(size_t)1, 16384, NULL), 0);
    }
    CHECK_EQ(kc_sched_drain(s, -1), 0);
    CHECK_EQ(atomic_load(&hits), 100000);
    kc_sched_get_stats(s, &after);
    CHECK_EQ(after.tasks_submitted - before.tasks_submitted, 100000);
    /* the runtime counts a coroutine completed just after its function returns (after
     * drain saw it return), so only the bound is exact here */
    CHECK(after.tasks_completed <= after.tasks_submitted);

    struct pp st;
    CHECK_EQ(kc_chan_make(&st.ping, KC_RENDEZVOUS, sizeof(int), 0), 0);
    CHECK_EQ(kc_chan_make(&st.pong, KC_RENDEZVOUS, sizeof(int), 0), 0);
    st.rounds = 10000;
    atomic_store(&hits, 0);
    kcoro_t *co = (kcoro_t *)&st;
    CHECK_EQ(kc_spawn_co(s, ponger, &st, 0, &co), 0);
    CHECK(co != NULL && co != (kcoro_t *)&st); /* a real handle, ours to release */
    CHECK_EQ(kc_spawn(s, pinger, &st), 0);
    CHECK_EQ(kc_sched_drain(s, -1), 0);
    CHECK_EQ(atomic_load(&hits), 1000000);
    struct kc_chan_snapshot snap;
    CHECK_EQ(kc_chan_snapshot(st.pong, &snap), 0);
    CHECK_EQ(snap.total_recvs, 10000);
    kcoro_release(co);
    kc_chan_destroy(st.ping);
    kc_chan_destroy(st.pong);

    /* drain times out while a coroutine stays parked; closing frees it */
    kc_chan_t *gate;
    CHECK_EQ(kc_chan_make(&gate, KC_RENDEZVOUS, sizeof(int), 0), 0);
    CHECK_EQ(kc_spawn(s, never, gate), 0);
    CHECK_EQ(kc_sched_drain(s, 0), KC_ETIME);
    CHECK_EQ(kc_sched_drain(s, 20), KC_ETIME);
    kc_chan_close(gate);
    CHECK_EQ(kc_sched_drain(s, -1), 0);
    kc_chan_destroy(gate);

    /* a second scheduler, shut down with a coroutine still parked */
    kc_sched_opts_t o = {2, 0, 0};
    kc_sched_t *s2 = kc_sched_init(&o);
    CHECK(s2 != NULL && s2 != s);
    CHECK_EQ(kc_chan_make(&gate, KC_RENDEZVOUS, sizeof(int), 0), 0);
    atomic_store(&hits, 0);
    for (int i = 0; i < 1000; i++) CHECK_EQ(kc_spawn(s2, count, (void *)(size_t)2), 0);
    CHECK_EQ(kc_sched_drain(s2, -1), 0);
    CHECK_EQ(atomic_load(&hits), 2000);
    CHECK_EQ(kc_spawn(s2, never, gate), 0);
    CHECK_EQ(kc_spawn(s2, cancelled_at_shutdown, gate), 0);
    while (!atomic_load(&started_at_shutdown)) kc_yield();
    kc_sched_shutdown(s2);
    /* not the library-bug code: a defined cancellation, and the coroutine returned */
    CHECK_EQ(atomic_load(&parked_code), KC_ECANCELED);
    CHECK_EQ(atomic_load(&retry_code), KC_ECANCELED);
    CHECK_EQ(atomic_load(&returned_at_shutdown), 1);
    kc_chan_destroy(gate);
    kc_sched_shutdown(s); /* the default one stays */
    CHECK_EQ(kc_spawn(s, count, (void *)(size_t)1), 0);
    CHECK_EQ(kc_sched_drain(s, -1), 0);

    /* bad input */
    CHECK_EQ(kc_spawn(NULL, count, NULL), -EINVAL);
    CHECK_EQ(kc_spawn(s, NULL, NULL), -EINVAL);
    CHECK_EQ(kc_spawn_co(s, NULL, NULL, 0, NULL), -EINVAL);
    CHECK_EQ(kc_spawn_co(s, count, NULL, SIZE_MAX, NULL), -ENOMEM); /* no such stack */
    CHECK_EQ(kc_sched_drain(NULL, 0), -EINVAL);
    kc_sched_get_stats(NULL, &after);
    kc_sched_get_stats(s, NULL);
    kc_sched_shutdown(NULL);
    kc_sleep_ms(-5);
    kc_yield();
    printf("test_sched: ok\n");
    return 0;
}
