/* scope_actor.c: a scope runs a producer (numbers on a channel it closes when done), a
 * forwarder coroutine, and an actor that sums what reaches its mailbox. Waiting for the
 * scope waits for all three; on_done reports the actor's end. Every wait parks. */
#include <stdatomic.h>
#include <stdio.h>

#include <kcoro.h>

#define N 1000

static atomic_long sum, handled, done_calls;

static int numbers(kc_chan_t *ch, void *user)
{
    (void)user;
    for (int i = 1; i <= N; i++)
        if (kc_chan_send(ch, &i, -1) != 0)
            return -1; /* cancelled with the scope */
    return 0;          /* the scope closes ch */
}

static int add(const void *msg, void *user)
{
    (void)user;
    atomic_fetch_add(&sum, *(const int *)msg);
    atomic_fetch_add(&handled, 1);
    return 0; /* non-zero would stop the actor */
}

static void actor_done(void *arg)
{
    (void)arg;
    atomic_fetch_add(&done_calls, 1);
}

struct pipe {
    kc_chan_t *from, *mailbox;
};

/* Moves every number into the mailbox, then closes it: the actor drains it and ends. */
static void forward(void *arg)
{
    struct pipe *p = (struct pipe *)arg;
    int v;
    while (kc_chan_recv(p->from, &v, -1) == 0) kc_chan_send(p->mailbox, &v, -1);
    kc_chan_close(p->mailbox);
}

int main(void)
{
    kc_scope_t *scope;
    if (kc_scope_init(&scope, NULL) != 0)
        return 1;
    kc_chan_t *mailbox;
    kc_chan_make(&mailbox, KC_BUFFERED, sizeof(int), 64);
    kc_actor_ctx_t ctx = {mailbox, sizeof(int), 0, add, NULL};
    kc_actor_t actor = kc_scope_actor(scope, &ctx);
    kc_actor_on_done(actor, actor_done, NULL);
    struct pipe p = {kc_scope_produce(scope, KC_BUFFERED, sizeof(int), 16, numbers, NULL), mailbox};
    kc_scope_launch(scope, forward, &p, 0, NULL);

    int rc = kc_scope_wait_all(scope, -1); /* producer, forwarder and actor */
    printf("scope_actor: sum %ld of %ld messages, on_done called %ld time(s), wait %d\n",
           atomic_load(&sum), atomic_load(&handled), atomic_load(&done_calls), rc);
    kc_scope_destroy(scope);
    kc_chan_destroy(p.from);
    kc_chan_destroy(mailbox);
    return atomic_load(&sum) == (long)N * (N + 1) / 2 && atomic_load(&done_calls) == 1 ? 0 : 1;
}
