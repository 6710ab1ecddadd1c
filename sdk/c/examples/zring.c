/*
 * zring: an out-of-tree zero-copy backend in C. Each channel bound to it gets a ring of
 * ZRING_SLOTS descriptors in the backend's own memory; a program dlopen()s this library,
 * fetches the ops table with kc_zring_backend_ops() and registers it by name
 * (kcoro::zcopy::register_c, or kc_zcopy_register from C), then uses it through ordinary
 * kcoro channels.
 *
 * kcoro calls send/recv of one channel under that channel's lock, one at a time, and does
 * all waiting itself (tmo_ms is 0): so a ring needs no lock of its own, only "full" and
 * "empty" answers (KC_EAGAIN). attach/detach may run for different channels at once,
 * hence the mutex around the table of rings.
 *
 *   cc -std=c11 -O2 -fPIC -shared -Iinclude -o libzring.so sdk/c/examples/zring.c -lpthread
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "kcoro_zcopy.h"

#define ZRING_SLOTS 64u /* descriptors per channel */
#define ZRING_CHANNELS 64u /* channels bound at once */

struct zring {
    _Atomic(kc_chan_t *) owner; /* NULL when the slot is free */
    unsigned head;              /* next to receive */
    unsigned tail;              /* next to fill; tail - head = stored */
    kc_zdesc_t slots[ZRING_SLOTS];
};

static struct zring rings[ZRING_CHANNELS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static struct zring *find(kc_chan_t *ch) {
    for (unsigned i = 0; i < ZRING_CHANNELS; i++) {
        if (atomic_load_explicit(&rings[i].owner, memory_order_acquire) == ch) return &rings[i];
    }
    return NULL;
}

static int zring_attach(kc_chan_t *ch, const void *opts) {
    (void)opts;
    int rc = -ENOMEM;
    pthread_mutex_lock(&table_lock);
    if (find(ch) != NULL) {
        rc = 0; /* idempotent */
    } else {
        for (unsigned i = 0; i < ZRING_CHANNELS; i++) {
            if (atomic_load_explicit(&rings[i].owner, memory_order_relaxed) == NULL) {
                rings[i].head = rings[i].tail = 0;
                atomic_store_explicit(&rings[i].owner, ch, memory_order_release);
                rc = 0;
                break;
            }
        }
    }
    pthread_mutex_unlock(&table_lock);
    return rc;
}

static void zring_detach(kc_chan_t *ch) {
    pthread_mutex_lock(&table_lock);
    struct zring *r = find(ch);
    if (r != NULL) atomic_store_explicit(&r->owner, NULL, memory_order_release);
    pthread_mutex_unlock(&table_lock);
}

static int zring_send(kc_chan_t *ch, const kc_zdesc_t *d, long tmo_ms) {
    (void)tmo_ms;
    struct zring *r = find(ch);
    if (r == NULL) return -EINVAL;
    if (d->len == 0) return -EINVAL;
    if (r->tail - r->head == ZRING_SLOTS) return -EAGAIN;
    r->slots[r->tail % ZRING_SLOTS] = *d;
    r->tail++;
    return 0;
}

static int zring_recv(kc_chan_t *ch, kc_zdesc_t *d, long tmo_ms) {
    (void)tmo_ms;
    struct zring *r = find(ch);
    if (r == NULL) return -EINVAL;
    if (r->tail == r->head) return -EAGAIN;
    *d = r->slots[r->head % ZRING_SLOTS];
    r->head++;
    return 0;
}

static int zring_send_c(kc_chan_t *ch, const kc_zdesc_t *d, long tmo_ms, const kc_cancel_t *ct) {
    (void)ct;
    return zring_send(ch, d, tmo_ms);
}

static int zring_recv_c(kc_chan_t *ch, kc_zdesc_t *d, long tmo_ms, const kc_cancel_t *ct) {
    (void)ct;
    return zring_recv(ch, d, tmo_ms);
}

/* The ops table, valid for as long as the library stays loaded (never unload it). */
const kc_zcopy_backend_ops_t *kc_zring_backend_ops(void) {
    static const kc_zcopy_backend_ops_t ops = {
        zring_attach, zring_detach, zring_send, zring_recv, zring_send_c, zring_recv_c,
    };
    return &ops;
}

/* Slots per channel, so a host can check it found the ring it expects. */
unsigned kc_zring_capacity(void) { return ZRING_SLOTS; }
