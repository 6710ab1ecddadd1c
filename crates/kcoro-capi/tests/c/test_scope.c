/* Scopes through the C API: launch and wait, the token seen by children (ambient and via
 * kc_scope_token), wait_all with a timeout, cancel, producers, destroy with live children,
 * nested scopes (by token and by the ambient token), bad input. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "../../../../include/kcoro.h"
#include "../../../../include/kcoro_sched.h"
#include "check.h"

static atomic_long hits;
static atomic_long canceled; /* children whose blocking call returned KC_ECANCELED */

static void count(void *arg)
{
    atomic_fetch_add(&hits, (long)(size_t)arg);
}

/* Parks on a receive nobody answers; the scope's cancellation ends it (ambient token). */
static void park_on(void *ch)
{
    int v;
    int rc = kc_chan_recv((kc_chan_t *)ch, &v, -1);
    if (rc == KC_ECANCELED)
        atomic_fetch_add(&canceled, 1);
    else
        CHECK_EQ(rc, KC_EPIPE);
}

struct token_probe {
    kc_scope_t *s;
    kc_cancel_t *started; /* triggered once the child has looked at the token */
    atomic_int saw_unset, saw_set;
};

/* Reads the scope's token through kc_scope_token and waits on it. */
static void watch_token(void *p)
{
    struct token_probe *t = (struct token_probe *)p;
    const kc_cancel_t *tok = kc_scope_token(t->s);
    CHECK(tok != NULL);
    if (kc_cancel_is_set(tok) == 0)
        atomic_store(&t->saw_unset, 1);
    kc_cancel_trigger(t->started);
    CHECK_EQ(kc_cancel_wait(tok, -1), 0);
    if (kc_cancel_is_set(tok) == 1)
        atomic_store(&t->saw_set, 1);
}

static int produce_ints(kc_chan_t *ch, void *user)
{
    int n = *(int *)user;
    for (int i = 1; i <= n; i++) CHECK_EQ(kc_chan_send(ch, &i, -1), 0);
    return 0;
}

/* Sends forever: only the scope's cancellation stops it. */
static int produce_forever(kc_chan_t *ch, void *user)
{
    (void)user;
    for (int i = 0;; i++) {
        int rc = kc_chan_send(ch, &i, -1);
        if (rc != 0) {
            CHECK_EQ(rc, KC_ECANCELED);
            atomic_fetch_add(&canceled, 1);
            return rc;
        }
    }
}

struct nested {
    kc_scope_t *inner; /* made by the child with a NULL parent */
    kc_cancel_t *made;
};

/* Opens a scope from inside a child: its token follows the enclosing scope's. */
static void open_inner(void *p)
{
    struct nested *n = (struct nested *)p;
    CHECK_EQ(kc_scope_init(&n->inner, NULL), 0);
    kc_cancel_trigger(n->made);
}

static void check_launch_and_wait(void)
{
    kc_scope_t *s;
    CHECK_EQ(kc_scope_init(&s, NULL), 0);
    atomic_store(&hits, 0);
    for (int i = 0; i < 1000; i++) {
        kcoro_t *co = NULL;
        /* every other launch asks for a handle: one reference, the caller's to release */
        CHECK_EQ(kc_scope_launch(s, count, (void *)(size_t)1, i % 2 ? 16384 : 0, i % 2 ? &co : NULL), 0);
        if (i % 2) {
            CHECK(co != NULL);
            kcoro_release(co);
        }
    }
    CHECK_EQ(kc_scope_wait_all(s, -1), 0);
    CHECK_EQ(atomic_load(&hits), 1000);
    CHECK_EQ(kc_scope_wait_all(s, 0), 0); /* nothing left: a try succeeds */
    kc_scope_destroy(s);
}

static void check_token_and_timeout(void)
{
    kc_scope_t *s;
    CHECK_EQ(kc_scope_init(&s, NULL), 0);
    kc_chan_t *gate;
    CHECK_EQ(kc_chan_make(&gate, KC_RENDEZVOUS, sizeof(int), 0), 0);
    struct token_probe t = {.s = s};
    CHECK_EQ(kc_cancel_init(&t.started), 0);
    atomic_store(&canceled, 0);
    CHECK_EQ(kc_scope_launch(s, watch_token, &t, 0, NULL), 0);
    CHECK_EQ(kc_cancel_wait(t.started, -1), 0);
    CHECK_EQ(kc_scope_launch(s, park_on, gate, 0, NULL), 0);
    CHECK_EQ(kc_scope_wait_all(s, 0), KC_ETIME);
    CHECK_EQ(kc_scope_wait_all(s, 20), KC_ETIME);
    CHECK_EQ(kc_cancel_is_set(kc_scope_token(s)), 0);
    kc_scope_cancel(s);
    CHECK_EQ(kc_cancel_is_set(kc_scope_token(s)), 1);
    CHECK_EQ(kc_scope_wait_all(s, -1), 0);
    CHECK_EQ(atomic_load(&t.saw_unset), 1);
    CHECK_EQ(atomic_load(&t.saw_set), 1);
    CHECK_EQ(atomic_load(&canceled), 1); /* the parked receive returned KC_ECANCELED */
    /* the token works with the _c forms too */
    int v = 0;
    CHECK_EQ(kc_chan_recv_c(gate, &v, -1, kc_scope_token(s)), KC_ECANCELED);
    kc_scope_destroy(s);
    kc_chan_destroy(gate);
    kc_cancel_destroy(t.started);
}

static void check_produce(void)
{
    kc_scope_t *s;
    CHECK_EQ(kc_scope_init(&s, NULL), 0);
    int n = 500;
    kc_chan_t *ch = kc_scope_produce(s, KC_BUFFERED, sizeof(int), 8, produce_ints, &n);
    CHECK(ch != NULL);
    long sum = 0;
    int v, got = 0, rc;
    while ((rc = kc_chan_recv(ch, &v, -1)) == 0) {
        sum += v;
        got++;
    }
    CHECK_EQ(rc, KC_EPIPE); /* closed once the producer returned */
    CHECK_EQ(got, n);
    CHECK_EQ(sum, (long)n * (n + 1) / 2);
    kc_chan_destroy(ch); /* EPIPE seen: the producer no longer touches the handle */

    /* a producer that never ends stops with the scope, and its channel closes */
    atomic_store(&canceled, 0);
    ch = kc_scope_produce(s, KC_RENDEZVOUS, sizeof(int), 0, produce_forever, NULL);
    CHECK(ch != NULL);
    CHECK_EQ(kc_chan_recv(ch, &v, -1), 0);
    CHECK_EQ(kc_chan_recv(ch, &v, -1), 0);
    CHECK_EQ(v, 1);
    kc_scope_cancel(s);
    CHECK_EQ(kc_scope_wait_all(s, -1), 0);
    CHECK_EQ(atomic_load(&canceled), 1);
    CHECK_EQ(kc_chan_recv(ch, &v, -1), KC_EPIPE);
    kc_chan_destroy(ch);
    kc_scope_destroy(s);
}

static void check_destroy_with_live_children(void)
{
    kc_scope_t *s;
    CHECK_EQ(kc_scope_init(&s, NULL), 0);
    kc_chan_t *gate;
    CHECK_EQ(kc_chan_make(&gate, KC_RENDEZVOUS, sizeof(int), 0), 0);
    atomic_store(&canceled, 0);
    for (int i = 0; i < 50; i++) CHECK_EQ(kc_scope_launch(s, park_on, gate, 0, NULL), 0);
    kc_scope_destroy(s); /* cancels them, then waits for every one */
    CHECK_EQ(atomic_load(&canceled), 50);
    kc_chan_destroy(gate);
}

static void check_nested(void)
{
    kc_scope_t *outer, *inner;
    CHECK_EQ(kc_scope_init(&outer, NULL), 0);
    CHECK_EQ(kc_scope_init(&inner, kc_scope_token(outer)), 0);
    kc_chan_t *gate;
    CHECK_EQ(kc_chan_make(&gate, KC_RENDEZVOUS, sizeof(int), 0), 0);
    atomic_store(&canceled, 0);
    CHECK_EQ(kc_scope_launch(inner, park_on, gate, 0, NULL), 0);

    /* cancelling the inner scope leaves the outer one alone */
    kc_scope_t *sibling;
    CHECK_EQ(kc_scope_init(&sibling, kc_scope_token(outer)), 0);
    kc_scope_cancel(sibling);
    CHECK_EQ(kc_cancel_is_set(kc_scope_token(outer)), 0);
    CHECK_EQ(kc_cancel_is_set(kc_scope_token(inner)), 0);
    kc_scope_destroy(sibling);

    /* a scope opened inside a child with no parent follows the enclosing scope */
    struct nested n = {0};
    CHECK_EQ(kc_cancel_init(&n.made), 0);
    CHECK_EQ(kc_scope_launch(outer, open_inner, &n, 0, NULL), 0);
    CHECK_EQ(kc_cancel_wait(n.made, -1), 0);
    CHECK(n.inner != NULL);
    CHECK_EQ(kc_cancel_is_set(kc_scope_token(n.inner)), 0);

    kc_scope_cancel(outer);
    CHECK_EQ(kc_cancel_is_set(kc_scope_token(inner)), 1);
    CHECK_EQ(kc_cancel_is_set(kc_scope_token(n.inner)), 1);
    CHECK_EQ(kc_scope_wait_all(inner, -1), 0);
    CHECK_EQ(atomic_load(&canceled), 1);
    kc_scope_destroy(n.inner);
    kc_scope_destroy(inner);
    kc_scope_destroy(outer);
    kc_cancel_destroy(n.made);

    /* a scope under a cancel token that is destroyed first keeps working */
    kc_cancel_t *root;
    CHECK_EQ(kc_cancel_init(&root), 0);
    kc_scope_t *s;
    CHECK_EQ(kc_scope_init(&s, root), 0);
    kc_cancel_trigger(root);
    kc_cancel_destroy(root);
    CHECK_EQ(kc_cancel_is_set(kc_scope_token(s)), 1);
    kc_scope_destroy(s);
    kc_chan_destroy(gate);
}

static void check_bad_input(void)
{
    kc_scope_t *s;
    CHECK_EQ(kc_scope_init(NULL, NULL), -EINVAL);
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, sizeof(int), 1), 0);
    CHECK_EQ(kc_scope_init(&s, (const kc_cancel_t *)ch), -EINVAL); /* not a token */
    CHECK_EQ(kc_scope_init(&s, NULL), 0);
    CHECK_EQ(kc_scope_launch(NULL, count, NULL, 0, NULL), -EINVAL);
    CHECK_EQ(kc_scope_launch(s, NULL, NULL, 0, NULL), -EINVAL);
    CHECK_EQ(kc_scope_launch((kc_scope_t *)ch, count, NULL, 0, NULL), -EINVAL);
    int n = 1;
    CHECK(kc_scope_produce(NULL, KC_BUFFERED, sizeof(int), 1, produce_ints, &n) == NULL);
    CHECK(kc_scope_produce(s, KC_BUFFERED, sizeof(int), 1, NULL, &n) == NULL);
    CHECK(kc_scope_produce(s, -7, sizeof(int), 1, produce_ints, &n) == NULL);
    CHECK(kc_scope_produce(s, KC_BUFFERED, 0, 1, produce_ints, &n) == NULL);
    kc_actor_ctx_t ctx = {ch, sizeof(int), 0, NULL, NULL};
    CHECK(kc_scope_actor(NULL, &ctx) == NULL);
    CHECK(kc_scope_actor(s, NULL) == NULL);
    CHECK(kc_scope_actor(s, &ctx) == NULL); /* process is NULL */
    CHECK_EQ(kc_scope_wait_all(NULL, 0), -EINVAL);
    CHECK_EQ(kc_scope_wait_all((kc_scope_t *)ch, 0), -EINVAL);
    CHECK(kc_scope_token(NULL) == NULL);
    CHECK(kc_scope_token((kc_scope_t *)ch) == NULL);
    kc_scope_cancel(NULL);
    kc_scope_cancel((kc_scope_t *)ch);
    kc_scope_destroy(NULL);
    kc_scope_destroy((kc_scope_t *)ch);
    CHECK_EQ(kc_scope_wait_all(s, 0), 0); /* none of the bad calls started a child */
    kc_scope_destroy(s);
    CHECK_EQ(kc_chan_send(ch, &n, 0), 0); /* the channel survived being passed as a scope */
    kc_chan_destroy(ch);
}

int main(void)
{
    check_launch_and_wait();
    check_token_and_timeout();
    check_produce();
    check_destroy_with_live_children();
    check_nested();
    check_bad_input();
    printf("test_scope: ok\n");
    return 0;
}
