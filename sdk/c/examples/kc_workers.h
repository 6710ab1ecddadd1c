/*
 * kc_workers.h: background threads a plugin can wait for in shutdown.
 *
 * Why not plain detached threads: the host may dlclose the library right after shutdown,
 * and a detached thread that has sent its last frame can still be running the library's
 * code (its own epilogue), which then is unmapped under it. So every worker is joinable;
 * it parks its own handle on a "done" list as its last step, spawns reap that list, and
 * kc_workers_join_all (called from shutdown) waits for every worker and joins it:
 * pthread_join returns only once the thread has left our code for good.
 *
 * Header-only, POSIX threads; link with -lpthread.
 */
#ifndef KC_WORKERS_H
#define KC_WORKERS_H

#include <pthread.h>
#include <stdlib.h>

typedef struct KcWorkers {
    pthread_mutex_t mu;
    pthread_cond_t idle; /* signalled when `running` drops to zero */
    size_t running;
    pthread_t *done; /* finished threads not yet joined */
    size_t done_len, done_cap;
} KcWorkers;

#define KC_WORKERS_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, NULL, 0, 0 }

typedef struct KcJob {
    KcWorkers *workers;
    void (*fn)(void *arg);
    void *arg;
} KcJob;

static inline void *kc_worker_main(void *p) {
    KcJob job = *(KcJob *)p;
    free(p);
    job.fn(job.arg);

    KcWorkers *w = job.workers;
    pthread_mutex_lock(&w->mu);
    if (w->done_len == w->done_cap) {
        size_t cap = w->done_cap ? w->done_cap * 2 : 8;
        pthread_t *grown = (pthread_t *)realloc(w->done, cap * sizeof *grown);
        if (grown) {
            w->done = grown;
            w->done_cap = cap;
        }
    }
    if (w->done_len < w->done_cap)
        w->done[w->done_len++] = pthread_self();
    else
        pthread_detach(pthread_self()); /* out of memory: fall back to detaching */
    if (--w->running == 0) pthread_cond_broadcast(&w->idle);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Takes the done list under the lock and joins it outside (each join is immediate: the
 * thread is past its last lock). */
static inline void kc_workers_reap(KcWorkers *w) {
    pthread_mutex_lock(&w->mu);
    pthread_t *done = w->done;
    size_t n = w->done_len;
    w->done = NULL;
    w->done_len = w->done_cap = 0;
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n; i++) pthread_join(done[i], NULL);
    free(done);
}

/* Runs fn(arg) on a new thread. Returns 0, or -1 when no thread could be started (then
 * fn never runs and the caller still owns arg). */
static inline int kc_workers_spawn(KcWorkers *w, void (*fn)(void *), void *arg) {
    kc_workers_reap(w);
    KcJob *job = (KcJob *)malloc(sizeof *job);
    if (!job) return -1;
    job->workers = w;
    job->fn = fn;
    job->arg = arg;
    pthread_mutex_lock(&w->mu);
    w->running++;
    pthread_mutex_unlock(&w->mu);
    pthread_t t;
    if (pthread_create(&t, NULL, kc_worker_main, job) != 0) {
        free(job);
        pthread_mutex_lock(&w->mu);
        if (--w->running == 0) pthread_cond_broadcast(&w->idle);
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    return 0;
}

/* Waits until every worker has finished, and joins them. For shutdown: a worker blocked
 * in send_result holds this up, so the host must not wait for the plugin's frames while
 * it calls shutdown. */
static inline void kc_workers_join_all(KcWorkers *w) {
    pthread_mutex_lock(&w->mu);
    while (w->running > 0) pthread_cond_wait(&w->idle, &w->mu);
    pthread_mutex_unlock(&w->mu);
    kc_workers_reap(w);
}

#endif /* KC_WORKERS_H */
