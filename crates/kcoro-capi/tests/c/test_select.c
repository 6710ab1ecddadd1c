/* Select through the C API: biased choice, try, timeout, cancel, close, send clauses,
 * pointer clauses, empty select, one select waited on by two coroutines, bad input. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "../../../../include/kcoro.h"
#include "../../../../include/kcoro_sched.h"
#include "check.h"

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

struct delayed {
    kc_chan_t *ch;
    int value;
    kc_cancel_t *cancel;
};

static void *send_later(void *p)
{
    struct delayed *d = (struct delayed *)p;
    nap_ms(20);
    CHECK_EQ(kc_chan_send(d->ch, &d->value, -1), 0);
    return NULL;
}

static void *cancel_later(void *p)
{
    nap_ms(20);
    kc_cancel_trigger(((struct delayed *)p)->cancel);
    return NULL;
}

/* One select, two coroutines on one worker waiting on it: whichever comes second is
 * refused at once with -EBUSY (waiting for the select would block the worker the first
 * is parked on) and sends the value the first one receives. */
static kc_select_t *shared_sel;
static kc_chan_t *shared_ch;
static int shared_slot;
static int sel_busy, sel_won;

static void select_waiter(void *arg)
{
    (void)arg;
    int idx = -1, res = -1;
    int r = kc_select_wait(shared_sel, -1, &idx, &res);
    if (r == -EBUSY) {
        sel_busy++;
        CHECK_EQ(kc_select_add_recv(shared_sel, shared_ch, &shared_slot), -EBUSY);
        int v = 42;
        CHECK_EQ(kc_chan_send(shared_ch, &v, -1), 0);
        return;
    }
    CHECK_EQ(r, 0);
    CHECK_EQ(idx, 0);
    CHECK_EQ(res, 0);
    CHECK_EQ(shared_slot, 42);
    sel_won++;
}

static void one_select_two_waiters(void)
{
    kc_sched_opts_t o = {1, 0, 0};
    kc_sched_t *s = kc_sched_init(&o);
    CHECK(s != NULL);
    CHECK_EQ(kc_chan_make(&shared_ch, KC_RENDEZVOUS, sizeof(int), 0), 0);
    CHECK_EQ(kc_select_create(&shared_sel, NULL), 0);
    CHECK_EQ(kc_select_add_recv(shared_sel, shared_ch, &shared_slot), 0);
    CHECK_EQ(kc_spawn(s, select_waiter, NULL), 0);
    CHECK_EQ(kc_spawn(s, select_waiter, NULL), 0);
    CHECK_EQ(kc_sched_drain(s, 10000), 0);
    CHECK_EQ(sel_busy, 1);
    CHECK_EQ(sel_won, 1);
    /* free again once the wait returned */
    CHECK_EQ(kc_select_add_recv(shared_sel, shared_ch, &shared_slot), 0);
    kc_select_destroy(shared_sel);
    kc_chan_destroy(shared_ch);
    kc_sched_shutdown(s);
}

int main(void)
{
    kc_chan_t *a, *b, *out;
    CHECK_EQ(kc_chan_make(&a, KC_BUFFERED, sizeof(int), 4), 0);
    CHECK_EQ(kc_chan_make(&b, KC_BUFFERED, sizeof(int), 4), 0);
    CHECK_EQ(kc_chan_make(&out, KC_BUFFERED, sizeof(int), 1), 0);
    kc_select_t *s;
    int idx = 99, res = 99, ra = 0, rb = 0, one = 1, two = 2;

    /* empty select */
    CHECK_EQ(kc_select_create(&s, NULL), 0);
    CHECK_EQ(kc_select_wait(s, 0, &idx, &res), -EINVAL);
    CHECK_EQ(idx, -1);

    CHECK_EQ(kc_select_add_recv(s, a, &ra), 0);
    CHECK_EQ(kc_select_add_recv(s, b, &rb), 0);
    /* nothing ready: try and bounded wait */
    CHECK_EQ(kc_select_wait(s, 0, &idx, &res), KC_EAGAIN);
    CHECK_EQ(idx, -1);
    CHECK_EQ(kc_select_wait(s, 15, &idx, &res), KC_ETIME);

    /* both ready: biased, the first clause wins, every time */
    CHECK_EQ(kc_chan_send(a, &one, 0), 0);
    CHECK_EQ(kc_chan_send(b, &two, 0), 0);
    CHECK_EQ(kc_select_wait(s, -1, &idx, &res), 0);
    CHECK_EQ(idx, 0);
    CHECK_EQ(res, 0);
    CHECK_EQ(ra, 1);
    CHECK_EQ(kc_select_wait(s, -1, &idx, &res), 0);
    CHECK_EQ(idx, 1);
    CHECK_EQ(rb, 2);

    /* a parked select wakes for a send from another thread */
    pthread_t t;
    struct delayed d = {b, 42, NULL};
    pthread_create(&t, NULL, send_later, &d);
    CHECK_EQ(kc_select_wait(s, 60000, &idx, &res), 0);
    CHECK_EQ(idx, 1);
    CHECK_EQ(rb, 42);
    pthread_join(t, NULL);

    /* a closed channel completes its clause with KC_EPIPE */
    kc_chan_close(a);
    CHECK_EQ(kc_select_wait(s, -1, &idx, &res), 0);
    CHECK_EQ(idx, 0);
    CHECK_EQ(res, KC_EPIPE);
    kc_select_destroy(s);

    /* cancel wins over a long timeout */
    kc_cancel_t *c;
    CHECK_EQ(kc_cancel_init(&c), 0);
    CHECK_EQ(kc_select_create(&s, c), 0);
    CHECK_EQ(kc_select_add_recv(s, b, &rb), 0);
    struct delayed dc = {NULL, 0, c};
    pthread_create(&t, NULL, cancel_later, &dc);
    CHECK_EQ(kc_select_wait(s, 60000, &idx, &res), KC_ECANCELED);
    CHECK_EQ(idx, -1);
    pthread_join(t, NULL);
    CHECK_EQ(kc_select_wait(s, 0, &idx, &res), KC_ECANCELED);

    /* reset, then a send clause into a free slot, and a pointer-mode clause */
    kc_select_destroy(s);
    CHECK_EQ(kc_select_create(&s, NULL), 0);
    int v = 7, got = 0;
    CHECK_EQ(kc_select_add_recv(s, b, &rb), 0);
    kc_select_reset(s);
    CHECK_EQ(kc_select_add_send(s, out, &v), 0);
    CHECK_EQ(kc_select_wait(s, 0, &idx, &res), 0);
    CHECK_EQ(idx, 0);
    CHECK_EQ(kc_chan_recv(out, &got, 0), 0);
    CHECK_EQ(got, 7);

    kc_chan_t *pc;
    CHECK_EQ(kc_chan_make_ptr(&pc, KC_BUFFERED, 2), 0);
    CHECK_EQ(kc_chan_send_ptr(pc, &v, sizeof v, 0), 0);
    struct kc_chan_ptrmsg pm = {NULL, 0};
    kc_select_reset(s);
    CHECK_EQ(kc_select_add_recv(s, pc, &pm), 0);
    CHECK_EQ(kc_select_wait(s, 0, &idx, &res), 0);
    CHECK(pm.ptr == &v && pm.len == sizeof v);

    /* bad input */
    CHECK_EQ(kc_select_create(NULL, NULL), -EINVAL);
    CHECK_EQ(kc_select_add_recv(s, NULL, &rb), -EINVAL);
    CHECK_EQ(kc_select_add_recv(s, b, NULL), -EINVAL);
    CHECK_EQ(kc_select_add_send(NULL, b, &v), -EINVAL);
    CHECK_EQ(kc_select_wait(NULL, 0, &idx, &res), -EINVAL);
    kc_select_destroy(s);
    kc_select_destroy(NULL);

    kc_chan_destroy(pc);
    kc_cancel_destroy(c);
    kc_chan_destroy(a);
    kc_chan_destroy(b);
    kc_chan_destroy(out);
    one_select_two_waiters();
    printf("test_select: ok\n");
    return 0;
}
