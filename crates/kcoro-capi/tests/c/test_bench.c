/* The channel bench hooks: producers and consumers load a channel (copy and pointer mode)
 * until stopped; the counters show the traffic; stop joins and frees; bad input. */
#include <string.h>

#include "../../../../include/kcoro.h"
#include "../../../../include/kcoro_bench.h"
#include "../../../../include/kcoro_sched.h"
#include "check.h"

/* Waits (sleeping, never asserting a rate) until the channel has seen `n` receives. */
static void await_recvs(kc_chan_t *ch, unsigned long n)
{
    struct kc_chan_snapshot s;
    for (;;) {
        CHECK_EQ(kc_chan_snapshot(ch, &s), 0);
        if (s.total_recvs >= n)
            return;
        kc_sleep_ms(1);
    }
}

static void run(int kind, size_t cap, int pointer_mode, size_t packet)
{
    kc_bench_params_t p = {kind, cap, 2, 3, 16, 10, packet, pointer_mode};
    kc_bench_handle_t *h = NULL;
    kc_chan_t *ch = NULL;
    CHECK_EQ(kc_bench_chan_start(&p, &h, &ch), 0);
    CHECK(h != NULL && ch != NULL);
    await_recvs(ch, 2000);
    struct kc_chan_snapshot s;
    CHECK_EQ(kc_chan_snapshot(ch, &s), 0);
    CHECK_EQ(s.ptr_mode, pointer_mode);
    CHECK_EQ(s.elem_sz, pointer_mode ? sizeof(struct kc_chan_ptrmsg) : packet);
    CHECK(s.total_sends >= s.total_recvs);
    CHECK_EQ(s.total_bytes_recv, s.total_recvs * packet); /* true payload lengths */
    kc_bench_chan_stop(h); /* cancels, joins, frees the channel too */
}

/* Coroutines of the default scheduler not yet finished. */
static unsigned long unfinished(void)
{
    kc_sched_stats_t st;
    kc_sched_get_stats(kc_sched_default(), &st);
    return st.tasks_submitted - st.tasks_completed;
}

/* Stop returns only once every coroutine it started has finished: started and stopped
 * over and over, at once or after some traffic, the scheduler never counts one of them
 * unfinished after stop. (Stop once woke on a wait group the coroutines counted down
 * themselves, before they had finished and let go of the group: a program exiting right
 * after stop then leaked them.) */
static void stop_finishes_every_coroutine(void)
{
    unsigned long before = unfinished();
    for (int i = 0; i < 300; i++) {
        kc_bench_params_t p = {i % 3 ? KC_BUFFERED : KC_RENDEZVOUS, 8, 2, 2, 4, 0, 16, i % 2};
        kc_bench_handle_t *h = NULL;
        kc_chan_t *ch = NULL;
        CHECK_EQ(kc_bench_chan_start(&p, &h, &ch), 0);
        if (i % 4 == 0)
            await_recvs(ch, 20);
        kc_bench_chan_stop(h);
        CHECK_EQ(unfinished(), before);
    }
}

int main(void)
{
    stop_finishes_every_coroutine();

    run(KC_BUFFERED, 64, 0, sizeof(int));
    run(KC_RENDEZVOUS, 0, 0, 256);
    run(KC_UNLIMITED, 0, 1, 1500);

    /* stopped at once, and with only one side (its coroutines park until stopped) */
    kc_bench_params_t p = {KC_BUFFERED, 4, 1, 0, 0, 0, 8, 0};
    kc_bench_handle_t *h;
    kc_chan_t *ch;
    CHECK_EQ(kc_bench_chan_start(&p, &h, &ch), 0);
    kc_bench_chan_stop(h);
    p.producers = 0;
    p.consumers = 2;
    CHECK_EQ(kc_bench_chan_start(&p, &h, &ch), 0);
    kc_bench_chan_stop(h);

    /* bad input */
    CHECK_EQ(kc_bench_chan_start(NULL, &h, &ch), -EINVAL);
    CHECK_EQ(kc_bench_chan_start(&p, NULL, &ch), -EINVAL);
    CHECK_EQ(kc_bench_chan_start(&p, &h, NULL), -EINVAL);
    p.consumers = -1;
    CHECK_EQ(kc_bench_chan_start(&p, &h, &ch), -EINVAL);
    p.consumers = 1;
    p.packet_size = 0; /* copy mode needs an element size */
    CHECK_EQ(kc_bench_chan_start(&p, &h, &ch), -EINVAL);
    p.packet_size = 8;
    p.kind = -9;
    CHECK_EQ(kc_bench_chan_start(&p, &h, &ch), -EINVAL);
    p.kind = KC_BUFFERED;
    p.pointer_mode = 1; /* a packet no party could fill: refused, not an abort */
    p.packet_size = (size_t)1 << 40;
    CHECK_EQ(kc_bench_chan_start(&p, &h, &ch), -EINVAL);
    p.packet_size = 16 << 20; /* allowed alone, not for 1024 + 1 parties */
    p.producers = 1024;
    CHECK_EQ(kc_bench_chan_start(&p, &h, &ch), -EINVAL);
    p.producers = 1;
    p.pointer_mode = 0;
    p.packet_size = 8;
    kc_bench_chan_stop(NULL);
    kc_bench_chan_stop((kc_bench_handle_t *)ch); /* not a bench handle: ignored */
    printf("test_bench: ok\n");
    return 0;
}
