/* Actors through the C API: process's non-zero return stops the actor, stop (drain what
 * is queued) against cancel (now), on_done exactly once (also registered after the end),
 * a closed mailbox, an extra cancel token, idle timeouts, pointer mailboxes, scope actors,
 * bad input. Completion is awaited through on_done callbacks that trigger cancel tokens:
 * nothing sleeps to let time pass. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "../../../../include/kcoro.h"
#include "../../../../include/kcoro_sched.h"
#include "check.h"

struct state {
    atomic_long sum, handled, done_calls, late_calls;
    atomic_int gate_rc;
    kc_chan_t *gate;      /* the first message waits on it (NULL: no wait) */
    kc_cancel_t *entered; /* triggered when the first message is being handled */
    kc_cancel_t *done;    /* triggered by on_done */
};

static void state_init(struct state *s)
{
    memset(s, 0, sizeof *s);
    CHECK_EQ(kc_cancel_init(&s->entered), 0);
    CHECK_EQ(kc_cancel_init(&s->done), 0);
}

static void state_free(struct state *s)
{
    kc_cancel_destroy(s->entered);
    kc_cancel_destroy(s->done);
}

static void on_done(void *arg)
{
    struct state *s = (struct state *)arg;
    atomic_fetch_add(&s->done_calls, 1);
    kc_cancel_trigger(s->done);
}

static void on_done_late(void *arg)
{
    atomic_fetch_add(&((struct state *)arg)->late_calls, 1);
}

/* Adds each int; -1 asks to stop (non-zero return). */
static int add(const void *msg, void *user)
{
    struct state *s = (struct state *)user;
    int v;
    memcpy(&v, msg, sizeof v);
    if (v == -1)
        return 1;
    if (atomic_fetch_add(&s->handled, 1) == 0) {
        kc_cancel_trigger(s->entered);
        if (s->gate) {
            int g;
            atomic_store(&s->gate_rc, kc_chan_recv(s->gate, &g, -1));
        }
    }
    atomic_fetch_add(&s->sum, v);
    return 0;
}

static int add_ptr(const void *msg, void *user)
{
    struct kc_chan_ptrmsg m;
    memcpy(&m, msg, sizeof m);
    struct state *s = (struct state *)user;
    atomic_fetch_add(&s->sum, *(int *)m.ptr + (long)m.len);
    atomic_fetch_add(&s->handled, 1);
    return 0;
}

static kc_chan_t *mailbox(int cap)
{
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, sizeof(int), cap), 0);
    return ch;
}

static void send_all(kc_chan_t *ch, int from, int to)
{
    for (int i = from; i <= to; i++) CHECK_EQ(kc_chan_send(ch, &i, -1), 0);
}

static void check_nonzero_return_stops(void)
{
    struct state s;
    state_init(&s);
    kc_chan_t *mb = mailbox(16);
    kc_actor_ctx_t ctx = {mb, sizeof(int), 0, add, &s};
    kc_actor_t a = kc_actor_start(&ctx);
    CHECK(a != NULL);
    kc_actor_on_done(a, on_done, &s);
    send_all(mb, 1, 10);
    int stop = -1;
    CHECK_EQ(kc_chan_send(mb, &stop, -1), 0);
    CHECK_EQ(kc_cancel_wait(s.done, -1), 0);
    CHECK_EQ(atomic_load(&s.sum), 55);
    CHECK_EQ(atomic_load(&s.done_calls), 1);
    /* finished: later messages stay queued, and nothing fires twice */
    int v = 7;
    CHECK_EQ(kc_chan_send(mb, &v, -1), 0);
    kc_actor_stop(a);
    kc_actor_cancel(a);
    kc_actor_on_done(a, on_done_late, &s); /* after the end: at once, on this thread */
    CHECK_EQ(atomic_load(&s.late_calls), 1);
    CHECK_EQ(atomic_load(&s.done_calls), 1);
    CHECK_EQ(kc_chan_len(mb), 1);
    CHECK_EQ(atomic_load(&s.handled), 10);
    kc_chan_destroy(mb);
    state_free(&s);
}

/* The first message blocks on a gate; the rest are queued behind it. */
static kc_actor_t gated(struct state *s, kc_chan_t *mb)
{
    CHECK_EQ(kc_chan_make(&s->gate, KC_RENDEZVOUS, sizeof(int), 0), 0);
    kc_actor_ctx_t ctx = {mb, 0 /* the element size */, 0, add, s};
    kc_actor_t a = kc_actor_start(&ctx);
    CHECK(a != NULL);
    kc_actor_on_done(a, on_done, s);
    send_all(mb, 1, 5);
    CHECK_EQ(kc_cancel_wait(s->entered, -1), 0);
    return a;
}

static void check_stop_drains(void)
{
    struct state s;
    state_init(&s);
    kc_chan_t *mb = mailbox(16);
    kc_actor_t a = gated(&s, mb);
    kc_actor_stop(a);
    kc_chan_close(s.gate); /* releases the first message: the gate recv gets KC_EPIPE */
    CHECK_EQ(kc_cancel_wait(s.done, -1), 0);
    CHECK_EQ(atomic_load(&s.gate_rc), KC_EPIPE);
    CHECK_EQ(atomic_load(&s.handled), 5); /* everything queued was handled */
    CHECK_EQ(atomic_load(&s.sum), 15);
    CHECK_EQ(kc_chan_len(mb), 0);
    int v = 1;
    CHECK_EQ(kc_chan_send(mb, &v, 0), 0); /* stop did not close the mailbox */
    CHECK_EQ(atomic_load(&s.done_calls), 1);
    kc_chan_destroy(mb);
    kc_chan_destroy(s.gate);
    state_free(&s);

    /* stop on an idle actor ends it */
    state_init(&s);
    mb = mailbox(4);
    kc_actor_ctx_t ctx = {mb, sizeof(int), -1, add, &s};
    a = kc_actor_start(&ctx);
    kc_actor_on_done(a, on_done, &s);
    kc_actor_stop(a);
    CHECK_EQ(kc_cancel_wait(s.done, -1), 0);
    CHECK_EQ(atomic_load(&s.handled), 0);
    kc_chan_destroy(mb);
    state_free(&s);
}

static void check_cancel_is_immediate(void)
{
    struct state s;
    state_init(&s);
    kc_chan_t *mb = mailbox(16);
    kc_actor_t a = gated(&s, mb);
    kc_actor_cancel(a); /* the gate recv under way returns KC_ECANCELED */
    CHECK_EQ(kc_cancel_wait(s.done, -1), 0);
    CHECK_EQ(atomic_load(&s.gate_rc), KC_ECANCELED);
    CHECK_EQ(atomic_load(&s.handled), 1);
    CHECK_EQ(kc_chan_len(mb), 4); /* the queued messages were left alone */
    CHECK_EQ(atomic_load(&s.done_calls), 1);
    kc_chan_destroy(mb);
    kc_chan_destroy(s.gate);
    state_free(&s);
}

static void check_closed_mailbox_and_timeout(void)
{
    struct state s;
    state_init(&s);
    kc_chan_t *mb = mailbox(4);
    /* idle timeouts just wait again: the actor outlives many of them */
    kc_actor_ctx_t ctx = {mb, sizeof(int), 1, add, &s};
    kc_actor_t a = kc_actor_start(&ctx);
    kc_actor_on_done(a, on_done, &s);
    kc_actor_on_done(a, on_done_late, &s); /* two registrations, one call each */
    kc_sleep_ms(30);
    CHECK_EQ(kc_cancel_is_set(s.done), 0);
    send_all(mb, 1, 3);
    kc_chan_close(mb); /* drained, then the actor ends */
    CHECK_EQ(kc_cancel_wait(s.done, -1), 0);
    CHECK_EQ(atomic_load(&s.sum), 6);
    CHECK_EQ(atomic_load(&s.done_calls), 1);
    /* the second callback runs after the first, on the same thread, before or soon after
     * the wait returned: the actor ends only once both were called */
    kc_sched_t *d = kc_sched_default();
    CHECK_EQ(kc_sched_drain(d, -1), 0);
    CHECK_EQ(atomic_load(&s.late_calls), 1);
    kc_chan_destroy(mb);
    state_free(&s);
}

static void check_start_ex_token(void)
{
    struct state s;
    state_init(&s);
    kc_chan_t *mb = mailbox(4);
    kc_cancel_t *tok;
    CHECK_EQ(kc_cancel_init(&tok), 0);
    kc_actor_ctx_ex_t ctx = {{mb, sizeof(int), 0, add, &s}, tok};
    kc_actor_t a = kc_actor_start_ex(&ctx);
    CHECK(a != NULL);
    kc_actor_on_done(a, on_done, &s);
    send_all(mb, 1, 1);
    CHECK_EQ(kc_cancel_wait(s.entered, -1), 0);
    kc_cancel_trigger(tok);
    CHECK_EQ(kc_cancel_wait(s.done, -1), 0);
    send_all(mb, 2, 2);
    CHECK_EQ(kc_chan_len(mb), 1); /* nobody handles it any more */
    CHECK_EQ(atomic_load(&s.handled), 1);
    kc_cancel_destroy(tok);
    kc_chan_destroy(mb);
    state_free(&s);
}

static void check_pointer_mailbox(void)
{
    struct state s;
    state_init(&s);
    kc_chan_t *mb;
    CHECK_EQ(kc_chan_make_ptr(&mb, KC_UNLIMITED, 0), 0);
    kc_actor_ctx_t ctx = {mb, sizeof(struct kc_chan_ptrmsg), 0, add_ptr, &s};
    kc_actor_t a = kc_actor_start(&ctx);
    CHECK(a != NULL);
    kc_actor_on_done(a, on_done, &s);
    int vals[3] = {100, 200, 300};
    for (int i = 0; i < 3; i++) CHECK_EQ(kc_chan_send_ptr(mb, &vals[i], (size_t)i, -1), 0);
    kc_chan_close(mb);
    CHECK_EQ(kc_cancel_wait(s.done, -1), 0);
    CHECK_EQ(atomic_load(&s.sum), 600 + 0 + 1 + 2);
    kc_chan_destroy(mb);
    state_free(&s);
}

static void check_scope_actor(void)
{
    struct state s;
    state_init(&s);
    kc_chan_t *mb = mailbox(4);
    kc_scope_t *sc;
    CHECK_EQ(kc_scope_init(&sc, NULL), 0);
    kc_actor_ctx_t ctx = {mb, sizeof(int), 0, add, &s};
    kc_actor_t a = kc_scope_actor(sc, &ctx);
    CHECK(a != NULL);
    kc_actor_on_done(a, on_done, &s);
    send_all(mb, 4, 4);
    CHECK_EQ(kc_cancel_wait(s.entered, -1), 0);
    CHECK_EQ(kc_scope_wait_all(sc, 0), KC_ETIME); /* the actor is a child */
    kc_scope_destroy(sc);                          /* cancels it and waits for it */
    CHECK_EQ(atomic_load(&s.done_calls), 1);
    CHECK_EQ(atomic_load(&s.sum), 4);
    kc_actor_stop(a); /* finished: nothing happens */
    kc_chan_destroy(mb);
    state_free(&s);
}

static void check_bad_input(void)
{
    struct state s;
    state_init(&s);
    kc_chan_t *mb = mailbox(4);
    CHECK(kc_actor_start(NULL) == NULL);
    CHECK(kc_actor_start_ex(NULL) == NULL);
    kc_actor_ctx_t ctx = {NULL, sizeof(int), 0, add, &s};
    CHECK(kc_actor_start(&ctx) == NULL); /* no mailbox */
    ctx.chan = mb;
    ctx.process = NULL;
    CHECK(kc_actor_start(&ctx) == NULL); /* no process */
    ctx.process = add;
    ctx.msg_size = 3;
    CHECK(kc_actor_start(&ctx) == NULL); /* not the element size */
    ctx.msg_size = sizeof(int);
    ctx.chan = (kc_chan_t *)s.done; /* not a channel */
    CHECK(kc_actor_start(&ctx) == NULL);
    ctx.chan = mb;
    kc_actor_ctx_ex_t ex = {ctx, (const kc_cancel_t *)mb}; /* not a token */
    CHECK(kc_actor_start_ex(&ex) == NULL);
    kc_chan_t *zc;
    CHECK_EQ(kc_chan_make(&zc, KC_BUFFERED, sizeof(int), 4), 0);
    CHECK_EQ(kc_chan_enable_zero_copy(zc), 0);
    ctx.chan = zc;
    CHECK(kc_actor_start(&ctx) == NULL); /* zero-copy mailboxes carry descriptors */
    kc_chan_destroy(zc);
    kc_actor_stop(NULL);
    kc_actor_cancel(NULL);
    kc_actor_on_done(NULL, on_done_late, &s);
    kc_actor_on_done((kc_actor_t)(uintptr_t)UINTPTR_MAX, on_done_late, &s); /* never issued */
    CHECK_EQ(atomic_load(&s.late_calls), 0);
    kc_actor_stop((kc_actor_t)(uintptr_t)UINTPTR_MAX);
    ctx.chan = mb;
    kc_actor_t a = kc_actor_start(&ctx);
    kc_actor_on_done(a, NULL, NULL);
    kc_actor_on_done(a, on_done, &s);
    kc_actor_cancel(a);
    CHECK_EQ(kc_cancel_wait(s.done, -1), 0);
    CHECK_EQ(atomic_load(&s.done_calls), 1);
    kc_chan_destroy(mb);
    state_free(&s);
}

int main(void)
{
    check_nonzero_return_stops();
    check_stop_drains();
    check_cancel_is_immediate();
    check_closed_mailbox_and_timeout();
    check_start_ex_token();
    check_pointer_mailbox();
    check_scope_actor();
    check_bad_input();
    printf("test_actor: ok\n");
    return 0;
}
