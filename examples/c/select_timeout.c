/* select_timeout.c: a coroutine waits on two channels at once with a timeout; a ticker
 * feeds one of them, and a cancel token ends the loop. Every wait parks. */
#include <stdio.h>

#include <kcoro.h>
#include <kcoro_sched.h>

static kc_chan_t *ticks, *quit;
static kc_cancel_t *stop;

static void ticker(void *arg)
{
    (void)arg;
    for (int i = 1; i <= 3; i++) {
        kc_sleep_ms(10);
        kc_chan_send(ticks, &i, -1);
    }
    kc_sleep_ms(60); /* long enough for the selector to time out once */
    kc_cancel_trigger(stop);
}

static void selector(void *arg)
{
    (void)arg;
    kc_select_t *sel;
    int tick = 0, q = 0, idx, res, timeouts = 0;
    kc_select_create(&sel, stop);
    kc_select_add_recv(sel, ticks, &tick);
    kc_select_add_recv(sel, quit, &q);
    for (;;) {
        int rc = kc_select_wait(sel, 40, &idx, &res);
        if (rc == 0)
            printf("clause %d: tick %d\n", idx, tick);
        else if (rc == KC_ETIME)
            timeouts++;
        else if (rc == KC_ECANCELED)
            break;
    }
    printf("select: cancelled after %s\n", timeouts > 0 ? "a timeout" : "no timeout");
    kc_select_destroy(sel);
}

int main(void)
{
    kc_sched_t *s = kc_sched_default();
    if (!s || kc_cancel_init(&stop) != 0 || kc_chan_make(&ticks, KC_BUFFERED, sizeof(int), 4) != 0 ||
        kc_chan_make(&quit, KC_RENDEZVOUS, sizeof(int), 0) != 0)
        return 1;
    kc_spawn(s, selector, NULL);
    kc_spawn(s, ticker, NULL);
    if (kc_sched_drain(s, 10000) != 0) return 1;
    kc_chan_destroy(ticks);
    kc_chan_destroy(quit);
    kc_cancel_destroy(stop);
    return 0;
}
