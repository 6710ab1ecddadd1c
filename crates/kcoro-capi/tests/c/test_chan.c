/* Channels through the C API: every kind in copy, pointer and zref mode; timeouts; close;
 * cancellation winning over timeout; undelivered callbacks; exact snapshot and rate
 * numbers; every bad-input case. Plain threads here: operations park the thread. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "../../../../include/kcoro.h"
#include "check.h"

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- kinds, copy mode ---- */

struct sender_arg {
    kc_chan_t *ch;
    int from, n;
};

static void *send_ints(void *p)
{
    struct sender_arg *a = (struct sender_arg *)p;
    for (int i = a->from; i < a->from + a->n; i++) CHECK_EQ(kc_chan_send(a->ch, &i, -1), 0);
    return NULL;
}

static void test_rendezvous(void)
{
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_RENDEZVOUS, sizeof(int), 0), 0);
    int v = 7;
    CHECK_EQ(kc_chan_try_send(ch, &v), KC_EAGAIN); /* no receiver waiting */
    CHECK_EQ(kc_chan_send(ch, &v, 20), KC_ETIME);
    pthread_t t;
    struct sender_arg a = {ch, 0, 100};
    pthread_create(&t, NULL, send_ints, &a);
    for (int i = 0; i < 100; i++) {
        int got = -1;
        CHECK_EQ(kc_chan_recv(ch, &got, -1), 0);
        CHECK_EQ(got, i);
    }
    pthread_join(t, NULL);
    struct kc_chan_snapshot s;
    CHECK_EQ(kc_chan_snapshot(ch, &s), 0);
    CHECK_EQ(s.kind, KC_RENDEZVOUS);
    CHECK_EQ(s.capacity, 0);
    CHECK_EQ(s.total_sends, 100);
    CHECK_EQ(s.total_recvs, 100);
    CHECK_EQ(s.send_eagain, 1);
    CHECK_EQ(s.send_etime, 1);
    CHECK(s.rv_matches > 0 && s.rv_matches <= 100);
    kc_chan_destroy(ch);
}

static void test_buffered(void)
{
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, 64, 4), 0);
    char msg[64], out[64];
    for (int i = 0; i < 4; i++) {
        memset(msg, 'a' + i, sizeof msg);
        CHECK_EQ(kc_chan_send(ch, msg, 0), 0);
    }
    CHECK_EQ(kc_chan_len(ch), 4);
    CHECK_EQ(kc_chan_try_send(ch, msg), KC_EAGAIN); /* full */
    CHECK_EQ(kc_chan_send(ch, msg, 15), KC_ETIME);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(kc_chan_recv(ch, out, 0), 0);
        CHECK(out[0] == 'a' + i && out[63] == 'a' + i);
    }
    CHECK_EQ(kc_chan_try_recv(ch, out), KC_EAGAIN);
    kc_chan_destroy(ch);

    /* capacity rules: KC_BUFFERED with 0 gets 64; kind 5 with 0 gets 5 */
    struct kc_chan_snapshot s;
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, 4, 0), 0);
    CHECK_EQ(kc_chan_snapshot(ch, &s), 0);
    CHECK_EQ(s.capacity, 64);
    kc_chan_destroy(ch);
    CHECK_EQ(kc_chan_make(&ch, 5, 4, 0), 0);
    CHECK_EQ(kc_chan_snapshot(ch, &s), 0);
    CHECK_EQ(s.capacity, 5);
    CHECK_EQ(s.kind, KC_BUFFERED);
    kc_chan_destroy(ch);

    /* large elements (boxed) keep every byte */
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, 1000, 2), 0);
    char big[1000], bigout[1000];
    for (int i = 0; i < 1000; i++) big[i] = (char)(i * 7);
    CHECK_EQ(kc_chan_send(ch, big, 0), 0);
    CHECK_EQ(kc_chan_recv(ch, bigout, 0), 0);
    CHECK(memcmp(big, bigout, sizeof big) == 0);
    kc_chan_destroy(ch);
}

static int ud_count;
static long ud_sum;
static void on_ud(void *elem, size_t len, void *arg)
{
    CHECK_EQ(len, sizeof(int));
    CHECK(arg == (void *)&ud_count);
    int v;
    memcpy(&v, elem, sizeof v);
    ud_count++;
    ud_sum += v;
}

static void test_conflated_and_undelivered(void)
{
    kc_chan_t *ch;
    ud_count = 0;
    ud_sum = 0;
    CHECK_EQ(kc_chan_make_ex(&ch, KC_CONFLATED, sizeof(int), 0, on_ud, NULL, &ud_count), 0);
    for (int i = 1; i <= 3; i++) CHECK_EQ(kc_chan_send(ch, &i, 0), 0); /* never waits */
    CHECK_EQ(ud_count, 2); /* 1 and 2 were overwritten */
    CHECK_EQ(ud_sum, 3);
    int got = 0;
    CHECK_EQ(kc_chan_recv(ch, &got, 0), 0);
    CHECK_EQ(got, 3);
    CHECK_EQ(kc_chan_try_recv(ch, &got), KC_EAGAIN);
    kc_chan_destroy(ch);
    CHECK_EQ(ud_count, 2);

    /* destroy with elements buffered: each goes to the callback exactly once */
    ud_count = 0;
    ud_sum = 0;
    CHECK_EQ(kc_chan_make_ex(&ch, KC_BUFFERED, sizeof(int), 8, on_ud, NULL, &ud_count), 0);
    for (int i = 10; i < 13; i++) CHECK_EQ(kc_chan_send(ch, &i, 0), 0);
    CHECK_EQ(kc_chan_recv(ch, &got, 0), 0);
    kc_chan_destroy(ch);
    CHECK_EQ(ud_count, 2);
    CHECK_EQ(ud_sum, 11 + 12);
}

/* every element size class, with sizes that have their own copy code and sizes that do
 * not: bytes round-trip, byte counters count elem_sz per message, and an undelivered
 * element reaches the callback with its exact bytes */
static size_t ud_len;
static unsigned char ud_bytes[256];
static void on_ud_bytes(void *elem, size_t len, void *arg)
{
    (void)arg;
    CHECK(len <= sizeof ud_bytes);
    ud_len = len;
    memcpy(ud_bytes, elem, len);
}

static void test_element_sizes(void)
{
    const size_t sizes[] = {1, 3, 4, 5, 8, 12, 16, 32, 40, 63, 64, 65, 200};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t sz = sizes[k];
        unsigned char in[256], out[256];
        kc_chan_t *ch;
        CHECK_EQ(kc_chan_make_ex(&ch, KC_BUFFERED, sz, 2, on_ud_bytes, NULL, NULL), 0);
        for (int round = 0; round < 2; round++) {
            for (size_t i = 0; i < sz; i++) in[i] = (unsigned char)(i * 31 + sz + (size_t)round);
            memset(out, 0xee, sizeof out);
            CHECK_EQ(kc_chan_send(ch, in, 0), 0);
            CHECK_EQ(kc_chan_recv(ch, out, 0), 0);
            CHECK(memcmp(in, out, sz) == 0);
            CHECK_EQ(out[sz], 0xee); /* nothing written past the element */
        }
        struct kc_chan_snapshot s;
        CHECK_EQ(kc_chan_snapshot(ch, &s), 0);
        CHECK_EQ(s.total_bytes_sent, 2 * sz);
        CHECK_EQ(s.total_bytes_recv, 2 * sz);
        ud_len = 0;
        CHECK_EQ(kc_chan_send(ch, in, 0), 0);
        kc_chan_destroy(ch);
        CHECK_EQ(ud_len, sz);
        CHECK(memcmp(ud_bytes, in, sz) == 0);
    }
}

static void test_unlimited(void)
{
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_UNLIMITED, sizeof(uint64_t), 0), 0);
    for (uint64_t i = 0; i < 10000; i++) CHECK_EQ(kc_chan_send(ch, &i, -1), 0);
    CHECK_EQ(kc_chan_len(ch), 10000);
    for (uint64_t i = 0; i < 10000; i++) {
        uint64_t got;
        CHECK_EQ(kc_chan_recv(ch, &got, 0), 0);
        CHECK_EQ(got, i);
    }
    kc_chan_destroy(ch);
}

/* ---- pointer mode ---- */

static void test_pointer_mode(void)
{
    int kinds[] = {KC_BUFFERED, KC_CONFLATED, KC_UNLIMITED};
    for (unsigned k = 0; k < 3; k++) {
        kc_chan_t *ch;
        CHECK_EQ(kc_chan_make_ptr(&ch, kinds[k], 4), 0);
        CHECK_EQ(kc_chan_capabilities(ch) & KC_CHAN_CAP_PTR, KC_CHAN_CAP_PTR);
        static char payload[65536];
        CHECK_EQ(kc_chan_send_ptr(ch, payload, sizeof payload, 0), 0);
        void *p = NULL;
        size_t len = 0;
        CHECK_EQ(kc_chan_recv_ptr(ch, &p, &len, 0), 0);
        CHECK(p == payload);
        CHECK_EQ(len, sizeof payload);
        struct kc_chan_snapshot s;
        CHECK_EQ(kc_chan_snapshot(ch, &s), 0);
        CHECK_EQ(s.ptr_mode, 1);
        CHECK_EQ(s.total_bytes_sent, 65536); /* counts len, not the descriptor */
        CHECK_EQ(s.total_bytes_recv, 65536);
        int dummy = 0;
        CHECK_EQ(kc_chan_send(ch, &dummy, 0), -EINVAL); /* copy op on a pointer channel */
        kc_chan_destroy(ch);
    }
    kc_chan_t *rv;
    CHECK_EQ(kc_chan_make_ptr(&rv, KC_RENDEZVOUS, 0), 0);
    CHECK_EQ(kc_chan_send_ptr(rv, rv, 1, 0), KC_EAGAIN);
    kc_chan_destroy(rv);
}

/* ---- zref ---- */

static void test_zref(void)
{
    int kinds[] = {KC_RENDEZVOUS, KC_BUFFERED, KC_CONFLATED, KC_UNLIMITED};
    for (unsigned k = 1; k < 4; k++) {
        kc_chan_t *ch;
        CHECK_EQ(kc_chan_make(&ch, kinds[k], sizeof(void *), 4), 0);
        CHECK_EQ(kc_chan_is_zero_copy(ch), 0);
        CHECK_EQ(kc_chan_enable_zero_copy(ch), 0);
        CHECK_EQ(kc_chan_enable_zero_copy(ch), 0); /* idempotent */
        CHECK_EQ(kc_chan_is_zero_copy(ch), 1);
        static char buf[4096];
        CHECK_EQ(kc_chan_send_zref(ch, buf, 0, 0), -EINVAL); /* zero length */
        CHECK_EQ(kc_chan_send_zref(ch, buf, sizeof buf, 0), 0);
        void *p;
        size_t len;
        CHECK_EQ(kc_chan_recv_zref(ch, &p, &len, 0), 0);
        CHECK(p == buf);
        CHECK_EQ(len, sizeof buf);
        CHECK_EQ(kc_chan_recv_zref(ch, &p, &len, 0), KC_EAGAIN);
        kc_zdesc_t d = {buf, 100, 0, 0, 0}, got;
        CHECK_EQ(kc_chan_send_desc(ch, &d, 0), 0);
        CHECK_EQ(kc_chan_recv_desc(ch, &got, 0), 0);
        CHECK(got.addr == buf && got.len == 100);
        struct kc_chan_zstats z;
        CHECK_EQ(kc_chan_get_zstats(ch, &z), 0);
        CHECK_EQ(z.zref_sent, 2);
        CHECK_EQ(z.zref_received, 2);
        CHECK_EQ(z.zref_fallback_small, 0);
        struct kc_chan_snapshot s;
        CHECK_EQ(kc_chan_snapshot(ch, &s), 0);
        CHECK_EQ(s.zref_mode, 1);
        CHECK_EQ(s.total_bytes_sent, 4096 + 100);
        int x = 0;
        CHECK_EQ(kc_chan_send(ch, &x, 0), -EINVAL); /* copy op after zero copy */
        kc_chan_close(ch);
        CHECK_EQ(kc_chan_send_zref(ch, buf, 1, 0), KC_EPIPE);
        CHECK_EQ(kc_chan_get_zstats(ch, &z), 0);
        CHECK_EQ(z.zref_aborted_close, 1);
        kc_chan_destroy(ch);
    }
    /* not before the first operation; descriptors need a backend */
    kc_chan_t *ch;
    int v = 1;
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, sizeof v, 4), 0);
    kc_zdesc_t d = {&v, 4, 0, 0, 0};
    CHECK_EQ(kc_chan_send_desc(ch, &d, 0), KC_ENOTSUP);
    CHECK_EQ(kc_chan_send(ch, &v, 0), 0);
    CHECK_EQ(kc_chan_enable_zero_copy(ch), -EINVAL);
    kc_chan_destroy(ch);
    CHECK_EQ(kc_zcopy_resolve("zref"), 0);
    CHECK_EQ(kc_zcopy_resolve("no-such-backend"), -ENOENT);
    CHECK_EQ(kc_zcopy_resolve(NULL), -EINVAL);
    CHECK_EQ(kc_zcopy_register(NULL, NULL, 0), -EINVAL);
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, 8, 4), 0);
    CHECK(kc_chan_enable_zero_copy_backend(ch, 4242, NULL) < 0); /* unknown backend */
    kc_chan_destroy(ch);
}

/* ---- close ---- */

static void *recv_expect_epipe(void *p)
{
    int v;
    CHECK_EQ(kc_chan_recv((kc_chan_t *)p, &v, -1), KC_EPIPE);
    return NULL;
}

static void test_close(void)
{
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, sizeof(int), 4), 0);
    int a = 1, b = 2, got;
    CHECK_EQ(kc_chan_send(ch, &a, 0), 0);
    CHECK_EQ(kc_chan_send(ch, &b, 0), 0);
    kc_chan_close(ch);
    kc_chan_close(ch); /* idempotent */
    CHECK_EQ(kc_chan_send(ch, &a, -1), KC_EPIPE);
    CHECK_EQ(kc_chan_recv(ch, &got, 0), 0);
    CHECK_EQ(got, 1);
    CHECK_EQ(kc_chan_recv(ch, &got, -1), 0);
    CHECK_EQ(got, 2);
    CHECK_EQ(kc_chan_recv(ch, &got, -1), KC_EPIPE);
    kc_chan_destroy(ch);

    /* close wakes a receiver parked forever */
    CHECK_EQ(kc_chan_make(&ch, KC_RENDEZVOUS, sizeof(int), 0), 0);
    pthread_t t;
    pthread_create(&t, NULL, recv_expect_epipe, ch);
    nap_ms(20);
    kc_chan_close(ch);
    pthread_join(t, NULL);
    kc_chan_destroy(ch);
}

/* ---- cancellation ---- */

static void *trigger_later(void *p)
{
    nap_ms(20);
    kc_cancel_trigger((kc_cancel_t *)p);
    return NULL;
}

static void test_cancel(void)
{
    kc_cancel_t *c;
    CHECK_EQ(kc_cancel_init(&c), 0);
    CHECK_EQ(kc_cancel_is_set(c), 0);
    CHECK_EQ(kc_cancel_wait(c, 0), KC_EAGAIN);
    CHECK_EQ(kc_cancel_wait(c, 10), KC_ETIME);
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, sizeof(int), 1), 0);
    int v = 0;
    /* a token that fires while a bounded wait is parked wins over the timeout */
    pthread_t t;
    pthread_create(&t, NULL, trigger_later, c);
    CHECK_EQ(kc_chan_recv_c(ch, &v, 60000, c), KC_ECANCELED);
    pthread_join(t, NULL);
    CHECK_EQ(kc_cancel_is_set(c), 1);
    CHECK_EQ(kc_cancel_wait(c, -1), 0);
    /* and a token already set wins over try and over a ready operation */
    CHECK_EQ(kc_chan_recv_c(ch, &v, 0, c), KC_ECANCELED);
    CHECK_EQ(kc_chan_send_c(ch, &v, 0, c), KC_ECANCELED);
    CHECK_EQ(kc_chan_send_c(ch, &v, 0, NULL), 0); /* NULL token: plain send */
    CHECK_EQ(kc_chan_send_c(ch, &v, 1000, c), KC_ECANCELED);
    kc_chan_destroy(ch);

    /* child tokens */
    kc_cancel_t *root;
    CHECK_EQ(kc_cancel_init(&root), 0);
    kc_cancel_ctx_t ctx;
    CHECK_EQ(kc_cancel_ctx_init(&ctx, root), 0);
    CHECK(ctx.parent == root && ctx.token != NULL);
    CHECK_EQ(kc_cancel_is_set(ctx.token), 0);
    kc_cancel_trigger(root);
    CHECK_EQ(kc_cancel_is_set(ctx.token), 1);
    kc_cancel_ctx_destroy(&ctx);
    CHECK(ctx.token == NULL);
    CHECK_EQ(kc_cancel_ctx_init(NULL, root), -EINVAL);
    kc_cancel_destroy(root);
    kc_cancel_destroy(c);

    /* pointer mode honours the token too */
    CHECK_EQ(kc_cancel_init(&c), 0);
    CHECK_EQ(kc_chan_make_ptr(&ch, KC_RENDEZVOUS, 0), 0);
    pthread_create(&t, NULL, trigger_later, c);
    CHECK_EQ(kc_chan_send_ptr_c(ch, &v, 4, -1, c), KC_ECANCELED);
    pthread_join(t, NULL);
    kc_chan_destroy(ch);
    kc_cancel_destroy(c);
}

/* ---- stats, snapshot, rate ---- */

static void test_stats(void)
{
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, 4, 8), 0);
    struct kc_chan_snapshot zero, s1, s2;
    memset(&zero, 0, sizeof zero);
    uint32_t v = 0;
    for (int i = 0; i < 5; i++) CHECK_EQ(kc_chan_send(ch, &v, 0), 0);
    CHECK_EQ(kc_chan_snapshot(ch, &s1), 0);
    nap_ms(5);
    for (int i = 0; i < 5; i++) CHECK_EQ(kc_chan_recv(ch, &v, 0), 0);
    CHECK_EQ(kc_chan_try_recv(ch, &v), KC_EAGAIN);
    CHECK_EQ(kc_chan_recv(ch, &v, 5), KC_ETIME);
    kc_chan_close(ch);
    CHECK_EQ(kc_chan_send(ch, &v, 0), KC_EPIPE);
    CHECK_EQ(kc_chan_recv(ch, &v, 0), KC_EPIPE);
    CHECK_EQ(kc_chan_snapshot(ch, &s2), 0);

    CHECK(s2.chan == (void *)ch);
    CHECK_EQ(s2.kind, KC_BUFFERED);
    CHECK_EQ(s2.elem_sz, 4);
    CHECK_EQ(s2.capacity, 8);
    CHECK_EQ(s2.count, 0);
    CHECK_EQ(s2.closed, 1);
    CHECK_EQ(s2.ptr_mode, 0);
    CHECK_EQ(s2.zref_mode, 0);
    CHECK_EQ(s2.total_sends, 5);
    CHECK_EQ(s2.total_recvs, 5);
    CHECK_EQ(s2.total_bytes_sent, 20);
    CHECK_EQ(s2.total_bytes_recv, 20);
    CHECK_EQ(s2.send_eagain, 0);
    CHECK_EQ(s2.send_etime, 0);
    CHECK_EQ(s2.send_epipe, 1);
    CHECK_EQ(s2.recv_eagain, 1);
    CHECK_EQ(s2.recv_etime, 1);
    CHECK_EQ(s2.recv_epipe, 1);
    CHECK(s2.first_op_time_ns > 0 && s2.last_op_time_ns >= s2.first_op_time_ns);
    CHECK_EQ(s1.count, 5);

    struct kc_chan_rate_sample r;
    CHECK_EQ(kc_chan_compute_rate(&s1, &s2, &r), 0);
    CHECK_EQ(r.delta_sends, 0);
    CHECK_EQ(r.delta_recvs, 5);
    CHECK_EQ(r.delta_bytes_recv, 20);
    CHECK_EQ(r.delta_recv_eagain, 1);
    CHECK_EQ(r.delta_send_epipe, 1);
    CHECK_EQ(r.delta_recv_epipe, 1);
    CHECK(r.interval_sec >= 0.005); /* the snapshots were at least the nap apart */
    CHECK(r.recvs_per_sec == 5.0 / r.interval_sec);
    CHECK(r.bytes_recv_per_sec == 20.0 / r.interval_sec);
    CHECK(r.sends_per_sec == 0.0);
    /* a zeroed prev is valid: deltas are the totals */
    CHECK_EQ(kc_chan_compute_rate(&zero, &s2, &r), 0);
    CHECK_EQ(r.delta_sends, 5);
    CHECK_EQ(r.delta_bytes_sent, 20);

    struct kc_chan_stats st;
    CHECK_EQ(kc_chan_get_stats(ch, &st), 0);
    CHECK_EQ(st.total_sends, 5);
    CHECK_EQ(st.total_bytes_recv, 20);
    CHECK(st.duration_sec >= 0.0);
    kc_chan_destroy(ch);
}

/* ---- bad input ---- */

static void test_bad_input(void)
{
    kc_chan_t *ch;
    int v = 0;
    void *p;
    size_t len;
    uint64_t foreign[8] = {0};
    kc_chan_t *bogus = (kc_chan_t *)foreign;
    CHECK_EQ(kc_chan_make(NULL, KC_BUFFERED, 4, 4), -EINVAL);
    CHECK_EQ(kc_chan_make(&ch, -3, 4, 4), -EINVAL);
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, 0, 4), -EINVAL);
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, (size_t)1 << 40, 4), -EINVAL);
    /* room past the address space is asked for, not taken: such a channel works */
    size_t huge[] = {(size_t)1 << 30, SIZE_MAX};
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, 64, huge[i]), 0);
        char big[64] = {7}, back[64] = {0};
        CHECK_EQ(kc_chan_send(ch, big, 0), 0);
        CHECK_EQ(kc_chan_recv(ch, back, 0), 0);
        CHECK_EQ(back[0], 7);
        kc_chan_destroy(ch);
        CHECK_EQ(kc_chan_make_ptr(&ch, KC_BUFFERED, huge[i]), 0);
        kc_chan_destroy(ch);
    }
    CHECK_EQ(kc_chan_make_ptr(NULL, KC_BUFFERED, 4), -EINVAL);
    CHECK_EQ(kc_chan_make_ptr(&ch, 99 - 200, 4), -EINVAL);
    CHECK_EQ(kc_chan_send(NULL, &v, 0), -EINVAL);
    CHECK_EQ(kc_chan_recv(NULL, &v, 0), -EINVAL);
    CHECK_EQ(kc_chan_send(bogus, &v, 0), -EINVAL);
    CHECK_EQ(kc_chan_recv_ptr(bogus, &p, &len, 0), -EINVAL);
    CHECK_EQ(kc_chan_len(NULL), 0);
    CHECK_EQ(kc_chan_capabilities(bogus), 0);
    kc_chan_close(NULL);
    kc_chan_destroy(NULL);
    kc_chan_destroy(bogus); /* refused, not freed */

    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, sizeof v, 4), 0);
    CHECK_EQ(kc_chan_send(ch, NULL, 0), -EINVAL);
    CHECK_EQ(kc_chan_recv(ch, NULL, 0), -EINVAL);
    CHECK_EQ(kc_chan_send_ptr(ch, &v, 4, 0), -EINVAL); /* pointer op on a copy channel */
    CHECK_EQ(kc_chan_recv_ptr(ch, &p, &len, 0), -EINVAL);
    CHECK_EQ(kc_chan_send_zref(ch, &v, 4, 0), KC_ENOTSUP); /* zero copy not enabled */
    CHECK_EQ(kc_chan_recv_desc(ch, NULL, 0), -EINVAL);
    CHECK_EQ(kc_chan_send_c(ch, &v, 0, (const kc_cancel_t *)foreign), -EINVAL);
    CHECK_EQ(kc_chan_snapshot(ch, NULL), -EINVAL);
    CHECK_EQ(kc_chan_get_stats(ch, NULL), -EINVAL);
    CHECK_EQ(kc_chan_get_zstats(ch, NULL), -EINVAL);
    CHECK_EQ(kc_chan_compute_rate(NULL, NULL, NULL), -EINVAL);
    kc_chan_destroy(ch);

    kc_chan_t *pc;
    CHECK_EQ(kc_chan_make_ptr(&pc, KC_BUFFERED, 4), 0);
    CHECK_EQ(kc_chan_recv_ptr(pc, NULL, &len, 0), -EINVAL);
    CHECK_EQ(kc_chan_recv(pc, &v, 0), -EINVAL);
    kc_chan_destroy(pc);

    CHECK_EQ(kc_cancel_init(NULL), -EINVAL);
    CHECK_EQ(kc_cancel_is_set(NULL), 0);
    CHECK_EQ(kc_cancel_wait(NULL, 0), -EINVAL);
    kc_cancel_trigger(NULL);
    kc_cancel_destroy(NULL);
}

int main(void)
{
    test_rendezvous();
    test_buffered();
    test_conflated_and_undelivered();
    test_element_sizes();
    test_unlimited();
    test_pointer_mode();
    test_zref();
    test_close();
    test_cancel();
    test_stats();
    test_bad_input();
    printf("test_chan: ok\n");
    return 0;
}
