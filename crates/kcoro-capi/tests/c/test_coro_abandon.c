/* A manual coroutine destroyed while it is parked inside a channel operation: its wait
 * stays registered with the channel, so its stack (and the coroutine's bookkeeping, which
 * that stack references) is kept rather than freed — a later matching operation completes
 * against it and the value goes nowhere, but nothing crashes or touches freed memory.
 * That memory is leaked on purpose, so the leak checker is off for this program only. */
#include "../../../../include/kcoro.h"
#include "../../../../include/kcoro_core.h"
#include "check.h"

const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

static int rc = 1;

static void receive(void *p)
{
    int v;
    rc = kc_chan_recv((kc_chan_t *)p, &v, -1);
}

int main(void)
{
    kc_chan_t *ch;
    CHECK_EQ(kc_chan_make(&ch, KC_RENDEZVOUS, sizeof(int), 0), 0);
    kcoro_t *co = kcoro_create(receive, ch, 0);
    kcoro_resume(co);
    CHECK_EQ(kcoro_is_parked(co), 1);
    kcoro_destroy(co);
    int v = 9;
    CHECK_EQ(kc_chan_try_send(ch, &v), 0); /* matched the abandoned receiver */
    CHECK_EQ(kc_chan_try_send(ch, &v), KC_EAGAIN); /* which is gone now */
    CHECK_EQ(rc, 1);                               /* and never ran again */
    kc_chan_destroy(ch);
    printf("test_coro_abandon: ok\n");
    return 0;
}
