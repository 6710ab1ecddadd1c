/* capi_bench: the `capi` suite's C side (see bench/src/capi_suite/mod.rs for the shapes).
 * Usage: capi_bench <case> <n>. Runs an untimed warm-up of n/10+1 operations, then n,
 * on a two-worker scheduler, and prints {"ns_per_op": X} like every harness child. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kcoro.h"
#include "kcoro_sched.h"

static kc_sched_t *sched;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "capi_bench: %s failed: %d\n", what, rc);
    exit(1);
}

/* ---- pingpong: a driver coroutine and an echo coroutine, two rendezvous channels ---- */

static kc_chan_t *ping, *pong;
static uint64_t pp_n, pp_elapsed;

static void echo(void *arg)
{
    (void)arg;
    uint32_t v;
    for (uint64_t i = 0; i < pp_n; i++) {
        int rc = kc_chan_recv(ping, &v, -1);
        if (rc) die("echo recv", rc);
        if ((rc = kc_chan_send(pong, &v, -1))) die("echo send", rc);
    }
}

/* The driver spawns the echo from its own worker (as the Rust rows' block_on coroutine
 * does), so placement matches the Rust API rows. */
static void driver(void *arg)
{
    (void)arg;
    kc_spawn(kc_sched_current(), echo, NULL);
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < pp_n; i++) {
        uint32_t v = (uint32_t)i, back;
        int rc = kc_chan_send(ping, &v, -1);
        if (rc) die("ping send", rc);
        if ((rc = kc_chan_recv(pong, &back, -1))) die("pong recv", rc);
        if (back != v) die("pingpong echo", -1);
    }
    pp_elapsed = now_ns() - t0;
}

static uint64_t pingpong(uint64_t n)
{
    int rc;
    if ((rc = kc_chan_make(&ping, KC_RENDEZVOUS, sizeof(uint32_t), 0))) die("make", rc);
    if ((rc = kc_chan_make(&pong, KC_RENDEZVOUS, sizeof(uint32_t), 0))) die("make", rc);
    pp_n = n;
    kc_spawn(sched, driver, NULL);
    if ((rc = kc_sched_drain(sched, -1))) die("drain", rc);
    kc_chan_destroy(ping);
    kc_chan_destroy(pong);
    return pp_elapsed;
}

/* ---- pipes: producers send n elements in total into one channel, the last one out
 * closes it, consumers receive until KC_EPIPE ---- */

struct pipe {
    kc_chan_t *ch;
    size_t elem;
    int ptr_mode;
    atomic_int producers_left;
    atomic_ullong received;
};

struct party {
    struct pipe *p;
    uint64_t count;
};

static char payload[65536];

static void producer(void *arg)
{
    struct party *a = (struct party *)arg;
    struct pipe *p = a->p;
    unsigned char msg[64];
    memset(msg, 1, sizeof msg);
    for (uint64_t i = 0; i < a->count; i++) {
        int rc;
        if (p->ptr_mode)
            rc = kc_chan_send_ptr(p->ch, payload, sizeof payload, -1);
        else {
            memcpy(msg, &i, sizeof(uint32_t));
            rc = kc_chan_send(p->ch, msg, -1);
        }
        if (rc) die("send", rc);
    }
    if (atomic_fetch_sub(&p->producers_left, 1) == 1) kc_chan_close(p->ch);
}

static void consumer(void *arg)
{
    struct pipe *p = ((struct party *)arg)->p;
    unsigned char msg[64];
    unsigned long long got = 0;
    for (;;) {
        int rc;
        if (p->ptr_mode) {
            void *ptr;
            size_t len;
            rc = kc_chan_recv_ptr(p->ch, &ptr, &len, -1);
            if (rc == 0 && len != sizeof payload) die("ptr len", -1);
        } else
            rc = kc_chan_recv(p->ch, msg, -1);
        if (rc == KC_EPIPE) break;
        if (rc) die("recv", rc);
        got++;
    }
    atomic_fetch_add(&p->received, got);
}

struct launch {
    struct pipe *p;
    struct party *parties;
    int producers, consumers;
    uint64_t n, t0;
};

/* Spawns the parties from a coroutine (a worker), as the Rust rows do from block_on:
 * spawning from the main thread would send every party through the inject queue and
 * spread them over both workers, a different placement from the Rust rows. */
static void launcher(void *arg)
{
    struct launch *l = (struct launch *)arg;
    kc_sched_t *s = kc_sched_current();
    l->t0 = now_ns();
    for (int i = 0; i < l->producers; i++) {
        l->parties[i].p = l->p;
        l->parties[i].count = l->n / (uint64_t)l->producers + ((uint64_t)i < l->n % (uint64_t)l->producers);
        kc_spawn(s, producer, &l->parties[i]);
    }
    for (int i = 0; i < l->consumers; i++) {
        l->parties[l->producers + i].p = l->p;
        kc_spawn(s, consumer, &l->parties[l->producers + i]);
    }
}

static uint64_t pipes(int producers, int consumers, size_t cap, size_t elem, int ptr_mode, uint64_t n)
{
    struct pipe p;
    struct party parties[16];
    struct launch l = {&p, parties, producers, consumers, n, 0};
    int rc = ptr_mode ? kc_chan_make_ptr(&p.ch, KC_BUFFERED, cap) : kc_chan_make(&p.ch, KC_BUFFERED, elem, cap);
    if (rc) die("make", rc);
    p.elem = elem;
    p.ptr_mode = ptr_mode;
    atomic_init(&p.producers_left, producers);
    atomic_init(&p.received, 0);
    kc_spawn(sched, launcher, &l);
    if ((rc = kc_sched_drain(sched, -1))) die("drain", rc);
    uint64_t elapsed = now_ns() - l.t0;
    if (atomic_load(&p.received) != n) die("received count", -1);
    kc_chan_destroy(p.ch);
    return elapsed;
}

static uint64_t run(const char *c, uint64_t n)
{
    if (!strcmp(c, "pingpong_rendezvous")) return pingpong(n);
    if (!strcmp(c, "spsc_1024_4b")) return pipes(1, 1, 1024, 4, 0, n);
    if (!strcmp(c, "spsc_1024_64b")) return pipes(1, 1, 1024, 64, 0, n);
    if (!strcmp(c, "mpmc_4x4_1024_4b")) return pipes(4, 4, 1024, 4, 0, n);
    if (!strcmp(c, "mpmc_4x4_1024_64b")) return pipes(4, 4, 1024, 64, 0, n);
    if (!strcmp(c, "ptr_spsc_64k")) return pipes(1, 1, 1024, 0, 1, n);
    fprintf(stderr, "capi_bench: unknown case %s\n", c);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: capi_bench <case> <n>\n");
        return 2;
    }
    uint64_t n = strtoull(argv[2], NULL, 10);
    if (n == 0) return 2;
    kc_sched_opts_t o = {2, 0, 0};
    if (!(sched = kc_sched_init(&o))) die("kc_sched_init", -1);
    run(argv[1], n / 10 + 1);
    uint64_t ns = run(argv[1], n);
    printf("{\"ns_per_op\": %.3f}\n", (double)ns / (double)n);
    kc_sched_shutdown(sched);
    return 0;
}
