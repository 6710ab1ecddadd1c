/*
 * ny_threads.h: detached worker threads and small parsing helpers for the C test plugins.
 * Threads are never joined: like nylon-ring's Go SDK, these plugins may still be running
 * code when `shutdown` returns, which the host must survive.
 */
#ifndef KCORO_TEST_NY_THREADS_H
#define KCORO_TEST_NY_THREADS_H

#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct NyThreadStart {
    void (*fn)(void *);
    void *arg;
} NyThreadStart;

static void *ny_thread_main(void *p) {
    NyThreadStart s = *(NyThreadStart *)p;
    free(p);
    s.fn(s.arg);
    return NULL;
}

/* Runs fn(arg) on a new detached thread; 0 on success. */
static inline int ny_spawn(void (*fn)(void *), void *arg) {
    NyThreadStart *s = (NyThreadStart *)malloc(sizeof *s);
    if (!s) return -1;
    s->fn = fn;
    s->arg = arg;
    pthread_t t;
    if (pthread_create(&t, NULL, ny_thread_main, s) != 0) {
        free(s);
        return -1;
    }
    pthread_detach(t);
    return 0;
}

static inline void ny_sleep_us(long us) {
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

/* A decimal count from a payload; `dflt` when empty, UINT64_MAX when not a number. */
static inline uint64_t ny_parse(const uint8_t *p, uint64_t len, uint64_t dflt) {
    if (len == 0) return dflt;
    uint64_t n = 0;
    for (uint64_t i = 0; i < len; i++) {
        unsigned d = (unsigned)p[i] - '0';
        if (d > 9 || n > (UINT64_MAX - d) / 10) return UINT64_MAX;
        n = n * 10 + d;
    }
    return n;
}

/* A heap copy of n bytes (1 byte for n == 0, never NULL unless out of memory). */
static inline uint8_t *ny_dup(const uint8_t *p, uint64_t n) {
    uint8_t *c = (uint8_t *)malloc(n ? (size_t)n : 1);
    if (c && n) memcpy(c, p, (size_t)n);
    return c;
}

#endif
