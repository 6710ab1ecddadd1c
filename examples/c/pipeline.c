/* pipeline.c: producers -> a buffered stage -> consumers, all coroutines on the default
 * scheduler. Each stage waits by parking its coroutine; closing a channel ends the stage
 * after it. Prints the total and the stage channel's counters. */
#include <stdatomic.h>
#include <stdio.h>

#include <kcoro.h>
#include <kcoro_sched.h>

enum { PRODUCERS = 4, CONSUMERS = 3, ITEMS = 25000 };

static kc_chan_t *input, *stage;
static atomic_int producers_left = PRODUCERS, stage_left = 1;
static atomic_long total;

static void producer(void *arg)
{
    long base = (long)(size_t)arg * ITEMS;
    for (long i = 0; i < ITEMS; i++) {
        long v = base + i;
        kc_chan_send(input, &v, -1);
    }
    if (atomic_fetch_sub(&producers_left, 1) == 1) kc_chan_close(input); /* last one out */
}

static void doubler(void *arg)
{
    (void)arg;
    long v;
    while (kc_chan_recv(input, &v, -1) == 0) { /* KC_EPIPE once closed and drained */
        v *= 2;
        kc_chan_send(stage, &v, -1);
    }
    if (atomic_fetch_sub(&stage_left, 1) == 1) kc_chan_close(stage);
}

static void consumer(void *arg)
{
    (void)arg;
    long v, sum = 0;
    while (kc_chan_recv(stage, &v, -1) == 0) sum += v;
    atomic_fetch_add(&total, sum);
}

int main(void)
{
    kc_sched_t *s = kc_sched_default();
    if (!s || kc_chan_make(&input, KC_RENDEZVOUS, sizeof(long), 0) != 0 ||
        kc_chan_make(&stage, KC_BUFFERED, sizeof(long), 256) != 0)
        return 1;
    for (int i = 0; i < CONSUMERS; i++) kc_spawn(s, consumer, NULL);
    kc_spawn(s, doubler, NULL);
    for (int i = 0; i < PRODUCERS; i++) kc_spawn(s, producer, (void *)(size_t)i);
    if (kc_sched_drain(s, -1) != 0) return 1;

    long n = (long)PRODUCERS * ITEMS;
    struct kc_chan_snapshot snap;
    kc_chan_snapshot(stage, &snap);
    printf("pipeline: total %ld (expected %ld)\n", atomic_load(&total), n * (n - 1));
    printf("stage: %lu sent, %lu received, %lu bytes, capacity %zu\n", snap.total_sends,
           snap.total_recvs, snap.total_bytes_sent, snap.capacity);
    kc_chan_destroy(input);
    kc_chan_destroy(stage);
    return atomic_load(&total) == n * (n - 1) ? 0 : 1;
}
