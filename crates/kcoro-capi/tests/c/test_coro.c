/* Manually resumed coroutines (kcoro_core.h): ping-pong with the thread's main coroutine
 * through rendezvous channels (a parked coroutine is completed by a later matching
 * operation, then resumed), yield/resume order, park/unpark tokens, thread mains,
 * reference counts, destroy (never started, yielded, parked, finished, by itself), resumes
 * across threads, bad input. test_coro_abandon.c destroys one parked in a channel. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "../../../../include/kcoro.h"
#include "../../../../include/kcoro_core.h"
#include "../../../../include/kcoro_sched.h"
#include "check.h"

/* an event log: each step appends one letter */
static char trail[256];
static void step(char c)
{
    size_t n = strlen(trail);
    CHECK(n + 1 < sizeof trail);
    trail[n] = c;
    trail[n + 1] = '\0';
}

/* ---- ping-pong: the coroutine receives on ping, answers v+1 on pong ---- */
struct echo {
    kc_chan_t *ping, *pong;
    int served;
    int last_rc;
};

static void echo_fn(void *p)
{
    struct echo *e = (struct echo *)p;
    int v;
    int rc;
    while ((rc = kc_chan_recv(e->ping, &v, -1)) == 0) {
        v++;
        CHECK_EQ(kc_chan_send(e->pong, &v, -1), 0);
        e->served++;
    }
    e->last_rc = rc;
}

static void ping_pong(void)
{
    struct echo e = {0};
    CHECK_EQ(kc_chan_make(&e.ping, KC_RENDEZVOUS, sizeof(int), 0), 0);
    CHECK_EQ(kc_chan_make(&e.pong, KC_RENDEZVOUS, sizeof(int), 0), 0);
    kcoro_t *co = kcoro_create(echo_fn, &e, 0);
    CHECK(co != NULL);
    CHECK_EQ(kcoro_is_parked(co), 0); /* created, not started */
    kcoro_resume(co);                 /* runs until it parks in recv */
    CHECK_EQ(kcoro_is_parked(co), 1);
    for (int i = 0; i < 1000; i++) {
        /* the receiver is parked: a try-send matches it at once and wakes it */
        CHECK_EQ(kc_chan_try_send(e.ping, &i), 0);
        CHECK_EQ(kcoro_is_parked(co), 0);
        kcoro_resume(co); /* takes i, then parks sending i+1 */
        CHECK_EQ(kcoro_is_parked(co), 1);
        CHECK_EQ(e.served, i);
        int back = -1;
        CHECK_EQ(kc_chan_try_recv(e.pong, &back), 0); /* the parked sender's value */
        CHECK_EQ(back, i + 1);
        kcoro_resume(co); /* its send completed: counts, parks in recv again */
        CHECK_EQ(e.served, i + 1);
        CHECK_EQ(kcoro_is_parked(co), 1);
    }
    /* a resume before anything woke it does nothing */
    kcoro_resume(co);
    CHECK_EQ(kcoro_is_parked(co), 1);
    CHECK_EQ(e.served, 1000);
    kc_chan_close(e.ping); /* wakes it with KC_EPIPE */
    CHECK_EQ(kcoro_is_parked(co), 0);
    kcoro_resume(co); /* it returns */
    CHECK_EQ(e.last_rc, KC_EPIPE);
    kcoro_resume(co); /* finished: nothing */
    kcoro_destroy(co);
    kc_chan_destroy(e.ping);
    kc_chan_destroy(e.pong);
}

/* ---- yield/resume order; kcoro_current; kc_yield ---- */
static kcoro_t *seen_self;
static kcoro_t *seen_main;

static void abc(void *p)
{
    char base = *(char *)p;
    seen_self = kcoro_current();
    seen_main = kcoro_thread_main();
    step(base);
    kcoro_yield();
    step((char)(base + 1));
    kc_yield(); /* the same inside a manual coroutine */
    step((char)(base + 2));
}

static void yield_order(void)
{
    kcoro_t *m = kcoro_thread_main();
    char a = 'a', x = 'x';
    kcoro_t *c1 = kcoro_create(abc, &a, 0);
    kcoro_t *c2 = kcoro_create(abc, &x, 32 * 1024);
    CHECK(c1 && c2 && c1 != c2);
    trail[0] = '\0';
    kcoro_resume(c1);
    CHECK(seen_self == c1);
    CHECK(seen_main == m);
    step('-');
    kcoro_resume(c2);
    CHECK(seen_self == c2);
    step('-');
    kcoro_resume(c1);
    kcoro_yield_to(c2); /* from the main coroutine: runs c2 until it suspends */
    kcoro_resume(c1);
    step('-');
    kcoro_resume(c1); /* finished: nothing */
    kcoro_resume(c2);
    CHECK(strcmp(trail, "a-x-byc-z") == 0);
    CHECK(kcoro_current() == m);
    kcoro_release(c1);
    kcoro_release(c2);
}

/* ---- park/unpark tokens ---- */
static void parker(void *p)
{
    (void)p;
    step('1');
    kcoro_park();
    step('2');
    kcoro_park(); /* a token left before the first park does not count twice */
    step('3');
}

static void park_tokens(void)
{
    trail[0] = '\0';
    kcoro_t *co = kcoro_create(parker, NULL, 0);
    kcoro_resume(co);
    CHECK_EQ(kcoro_is_parked(co), 1);
    kcoro_resume(co); /* parked and not woken: nothing */
    CHECK(strcmp(trail, "1") == 0);
    kcoro_unpark(co);
    kcoro_unpark(co);
    CHECK_EQ(kcoro_is_parked(co), 0);
    kcoro_resume(co);
    CHECK(strcmp(trail, "12") == 0);
    CHECK_EQ(kcoro_is_parked(co), 1);
    kcoro_unpark(co);
    kcoro_resume(co);
    CHECK(strcmp(trail, "123") == 0);
    kcoro_release(co);

    /* an unpark before the park: the park returns at once */
    trail[0] = '\0';
    co = kcoro_create(parker, NULL, 0);
    kcoro_unpark(co);
    kcoro_resume(co);
    CHECK(strcmp(trail, "12") == 0);
    CHECK_EQ(kcoro_is_parked(co), 1);
    kcoro_release(co); /* parked in kcoro_park: its stack is freed */

    /* the main coroutine: a pending unpark makes its park return */
    kcoro_t *m = kcoro_thread_main();
    kcoro_unpark(m);
    kcoro_park();
    CHECK_EQ(kcoro_is_parked(m), 0);
}

/* ---- the main thread parked, woken by another thread ---- */
static void *unpark_later(void *p)
{
    kcoro_t *m = (kcoro_t *)p;
    while (!kcoro_is_parked(m)) kc_sleep_ms(1);
    kcoro_unpark(m);
    return NULL;
}

static void main_parks(void)
{
    kcoro_t *m = kcoro_thread_main();
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, unpark_later, m), 0);
    kcoro_park();
    CHECK_EQ(pthread_join(t, NULL), 0);
}

/* ---- thread mains ---- */
static void *other_thread(void *p)
{
    kcoro_t *main_of_first = (kcoro_t *)p;
    CHECK(kcoro_thread_main() == NULL);
    CHECK(kcoro_current() == NULL);
    kcoro_t *m = kcoro_create_main();
    CHECK(m != NULL && m != main_of_first);
    CHECK(kcoro_create_main() == m);
    kcoro_set_thread_main(main_of_first); /* another thread's: ignored */
    CHECK(kcoro_thread_main() == m);
    kcoro_retain(m);
    kcoro_set_thread_main(NULL); /* forgotten; our reference keeps it */
    CHECK(kcoro_thread_main() == NULL);
    kcoro_set_thread_main(m);
    CHECK(kcoro_thread_main() == m);
    kcoro_release(m);
    return NULL;
}

/* ---- resumes from other threads ---- */
struct hop {
    pthread_t ran_on[3];
    atomic_int gate;
    int steps;
};

static void hopper(void *p)
{
    struct hop *h = (struct hop *)p;
    for (int i = 0; i < 3; i++) {
        h->ran_on[i] = pthread_self();
        h->steps++;
        if (i == 1) {
            atomic_store(&h->gate, 1); /* running: the main thread tries to resume us */
            while (atomic_load(&h->gate) != 2) sched_yield();
        }
        if (i < 2) kcoro_yield();
    }
}

static void *resume_there(void *p)
{
    kcoro_resume((kcoro_t *)p);
    return NULL;
}

static void across_threads(void)
{
    struct hop h;
    memset(&h, 0, sizeof h);
    kcoro_t *co = kcoro_create(hopper, &h, 0);
    kcoro_resume(co);
    CHECK(pthread_equal(h.ran_on[0], pthread_self()));
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, resume_there, co), 0);
    while (atomic_load(&h.gate) != 1) kc_sleep_ms(1);
    kcoro_resume(co); /* running on the other thread: refused */
    CHECK_EQ(h.steps, 2);
    atomic_store(&h.gate, 2);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK(pthread_equal(h.ran_on[1], t));
    kcoro_resume(co);
    CHECK_EQ(h.steps, 3);
    kcoro_release(co);
}

/* ---- a timed wait ends at the first resume after its deadline ---- */
static int timed_rc;
static void timed(void *p)
{
    int v;
    timed_rc = kc_chan_recv((kc_chan_t *)p, &v, 5);
}

static void timed_wait(void)
{
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_RENDEZVOUS, sizeof(int), 0), 0);
    kcoro_t *co = kcoro_create(timed, ch, 0);
    timed_rc = 1;
    kcoro_resume(co);
    CHECK_EQ(timed_rc, 1);
    while (kcoro_is_parked(co)) kc_sleep_ms(1); /* the deadline passes */
    kcoro_resume(co);
    CHECK_EQ(timed_rc, KC_ETIME);
    kcoro_release(co);
    kc_chan_destroy(ch);
}

/* ---- reference counts and destroy in each state ---- */
static void self_release(void *p)
{
    (void)p;
    kcoro_t *me = kcoro_current();
    kcoro_yield();
    kcoro_resume(me); /* resuming itself while running: refused */
    step('s');
    kcoro_release(me); /* drops the creator's reference; the resume holds one */
    step('t');
}

static void lifetimes(void)
{
    /* retain/release: usable until the last reference goes */
    kcoro_t *co = kcoro_create(abc, &(char){'a'}, 0);
    kcoro_retain(co);
    kcoro_release(co);
    trail[0] = '\0';
    kcoro_resume(co);
    CHECK(strcmp(trail, "a") == 0);
    kcoro_set_name(co, "alpha");
    kcoro_set_name(co, NULL);
    kcoro_release(co); /* yielded in kcoro_yield: abandoned, stack freed */

    kcoro_destroy(kcoro_create(abc, NULL, 0)); /* never started */

    co = kcoro_create(parker, NULL, 0);
    kcoro_resume(co);
    kcoro_unpark(co);
    kcoro_resume(co);
    kcoro_unpark(co);
    kcoro_resume(co); /* finished */
    kcoro_destroy(co);

    trail[0] = '\0';
    co = kcoro_create(self_release, NULL, 0);
    kcoro_resume(co);
    kcoro_resume(co); /* releases its own (last) handle, then returns: freed after */
    CHECK(strcmp(trail, "st") == 0);

}

static void bad_input(void)
{
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_RENDEZVOUS, sizeof(int), 0), 0);
    CHECK(kcoro_create(NULL, NULL, 0) == NULL);
    kcoro_resume(NULL);
    kcoro_resume((kcoro_t *)ch); /* not a coroutine */
    kcoro_resume(kcoro_thread_main()); /* not resumable */
    kcoro_yield_to(NULL);
    kcoro_destroy(NULL);
    kcoro_release(NULL);
    kcoro_retain(NULL);
    kcoro_unpark(NULL);
    kcoro_unpark((kcoro_t *)ch);
    CHECK_EQ(kcoro_is_parked(NULL), 0);
    CHECK_EQ(kcoro_is_parked((kcoro_t *)ch), 0);
    kcoro_set_name(NULL, "x");
    kcoro_set_thread_main((kcoro_t *)ch);
    kcoro_yield(); /* a plain thread: sched_yield */
    kc_chan_destroy(ch);
}

int main(void)
{
    CHECK(kcoro_thread_main() == NULL);
    CHECK(kcoro_current() == NULL);
    kcoro_t *m = kcoro_create_main();
    CHECK(m != NULL);
    CHECK(kcoro_create_main() == m); /* idempotent */
    CHECK(kcoro_thread_main() == m);
    CHECK(kcoro_current() == m);
    CHECK_EQ(kcoro_is_parked(m), 0);

    ping_pong();
    yield_order();
    park_tokens();
    main_parks();
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, other_thread, m), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    across_threads();
    timed_wait();
    lifetimes();
    bad_input();
    CHECK(kcoro_thread_main() == m);
    printf("test_coro: ok\n");
    return 0;
}
