/* Regions through the C API: register, export id, descriptor round trip with the address
 * filled in on receive, deregistration refused while descriptors are in flight (sent, in a
 * select, dropped with their channel), out-of-bounds spans, forged flags, bad input. */
#include <stdint.h>
#include <string.h>

#include "../../../../include/kcoro.h"
#include "check.h"

static char mem[4096];

static kc_region_t *reg(void *addr, size_t len, unsigned long *id)
{
    kc_region_t *r = NULL;
    CHECK_EQ(kc_region_register(&r, addr, len, KC_REGION_F_NONE), 0);
    CHECK(r != NULL);
    CHECK_EQ(kc_region_export_id(r, id), 0);
    CHECK(*id != 0);
    return r;
}

static kc_chan_t *zchan(int kind, size_t cap)
{
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, kind, sizeof(int), cap), 0);
    CHECK_EQ(kc_chan_enable_zero_copy(ch), 0);
    return ch;
}

static kc_zdesc_t in_region(unsigned long id, uint64_t off, size_t len)
{
    kc_zdesc_t d;
    memset(&d, 0, sizeof d);
    d.region_id = id;
    d.offset = off;
    d.len = len;
    return d;
}

static void check_round_trip_and_in_flight(void)
{
    unsigned long id, id2;
    kc_region_t *r = reg(mem, sizeof mem, &id);
    kc_region_t *r2 = reg(mem + 100, 10, &id2); /* a span of 10 bytes: not rounded */
    CHECK(id != id2);
    kc_chan_t *ch = zchan(KC_BUFFERED, 4);

    kc_zdesc_t d = in_region(id, 100, 50), got;
    CHECK_EQ(kc_chan_send_desc(ch, &d, 0), 0);
    CHECK_EQ(kc_region_deregister(r), -EBUSY); /* one in flight: refused, nothing changed */
    CHECK_EQ(kc_chan_recv_desc(ch, &got, 0), 0);
    CHECK(got.addr == (void *)(mem + 100)); /* translated on receive */
    CHECK_EQ(got.region_id, id);
    CHECK_EQ(got.offset, 100);
    CHECK_EQ(got.len, 50);
    CHECK_EQ(got.flags, 0);

    /* zref receive translates too; a forged held flag is cleared and counts nothing */
    d = in_region(id, 0, 4096);
    d.flags = KC_ZDESC_F_HELD;
    CHECK_EQ(kc_chan_send_desc(ch, &d, 0), 0);
    void *p = NULL;
    size_t len = 0;
    CHECK_EQ(kc_chan_recv_zref(ch, &p, &len, 0), 0);
    CHECK(p == (void *)mem);
    CHECK_EQ(len, 4096);

    /* out of bounds: refused at send, nothing in flight */
    d = in_region(id, 4000, 97);
    CHECK_EQ(kc_chan_send_desc(ch, &d, 0), -EINVAL);
    d = in_region(id2, 0, 11);
    CHECK_EQ(kc_chan_send_desc(ch, &d, 0), -EINVAL);

    /* a failed send (full channel) hands the count back */
    kc_chan_t *one = zchan(KC_BUFFERED, 1);
    d = in_region(id2, 0, 10);
    CHECK_EQ(kc_chan_send_desc(one, &d, 0), 0);
    CHECK_EQ(kc_chan_send_desc(one, &d, 0), KC_EAGAIN);
    CHECK_EQ(kc_region_deregister(r2), -EBUSY);

    /* select: a losing send clause hands its count back; a receive clause translates */
    kc_select_t *sel;
    CHECK_EQ(kc_select_create(&sel, NULL), 0);
    kc_zdesc_t d2 = in_region(id, 8, 8);
    CHECK_EQ(kc_select_add_send(sel, one, &d2), 0);
    int idx = 7, res = 7;
    CHECK_EQ(kc_select_wait(sel, 0, &idx, &res), KC_EAGAIN);
    CHECK_EQ(kc_region_deregister(r), 0); /* nothing of r in flight */
    kc_select_reset(sel);
    kc_zdesc_t out;
    CHECK_EQ(kc_select_add_recv(sel, one, &out), 0);
    CHECK_EQ(kc_select_wait(sel, -1, &idx, &res), 0);
    CHECK_EQ(idx, 0);
    CHECK_EQ(res, 0);
    CHECK(out.addr == (void *)(mem + 100));
    CHECK_EQ(kc_region_deregister(r2), 0);

    /* a descriptor of a region no longer registered passes through untranslated */
    d = in_region(id, 0, 1);
    CHECK_EQ(kc_chan_send_desc(ch, &d, 0), 0);
    CHECK_EQ(kc_chan_recv_desc(ch, &got, 0), 0);
    CHECK(got.addr == NULL);
    kc_select_destroy(sel);
    kc_chan_destroy(one);
    kc_chan_destroy(ch);
}

static void check_select_send_and_undelivered(void)
{
    unsigned long id;
    kc_region_t *r = reg(mem, sizeof mem, &id);
    kc_chan_t *ch = zchan(KC_UNLIMITED, 0);
    kc_select_t *sel;
    CHECK_EQ(kc_select_create(&sel, NULL), 0);
    kc_zdesc_t d = in_region(id, 1, 2);
    CHECK_EQ(kc_select_add_send(sel, ch, &d), 0);
    int idx, res;
    CHECK_EQ(kc_select_wait(sel, 0, &idx, &res), 0);
    CHECK_EQ(idx, 0);
    CHECK_EQ(kc_region_deregister(r), -EBUSY); /* the winning send is in flight */
    CHECK_EQ(kc_select_wait(sel, 0, &idx, &res), 0);
    kc_select_destroy(sel);
    kc_chan_destroy(ch); /* two undelivered descriptors dropped with the channel */
    CHECK_EQ(kc_region_deregister(r), 0);
}

static void check_bad_input(void)
{
    kc_region_t *r = NULL;
    unsigned long id = 0;
    CHECK_EQ(kc_region_register(NULL, mem, 10, 0), -EINVAL);
    CHECK_EQ(kc_region_register(&r, NULL, 10, 0), -EINVAL);
    CHECK_EQ(kc_region_register(&r, mem, 0, 0), -EINVAL);
    CHECK_EQ(kc_region_register(&r, mem, 10, 1u), -EINVAL);
    CHECK(r == NULL);
    CHECK_EQ(kc_region_deregister(NULL), -EINVAL);
    CHECK_EQ(kc_region_export_id(NULL, &id), -EINVAL);
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_BUFFERED, sizeof(int), 1), 0);
    CHECK_EQ(kc_region_deregister((kc_region_t *)ch), -EINVAL);
    CHECK_EQ(kc_region_export_id((kc_region_t *)ch, &id), -EINVAL);
    r = reg(mem, 16, &id);
    CHECK_EQ(kc_region_export_id(r, NULL), -EINVAL);
    CHECK_EQ(kc_region_deregister(r), 0);
    kc_chan_destroy(ch);
}

int main(void)
{
    check_round_trip_and_in_flight();
    check_select_send_and_undelivered();
    check_bad_input();
    printf("test_region: ok\n");
    return 0;
}
