/*
 * kcoro_bench.h: the channel bench hooks of the kcoro C ABI (0.2). kc_bench_chan_start
 * loads a new channel with producer and consumer coroutines (bursts of packets_per_cycle,
 * then spin_iters spins and a yield) until kc_bench_chan_stop cancels, joins and frees
 * them and the channel (which the handle owns: read it, do not destroy it).
 */
#ifndef KCORO_BENCH_H
#define KCORO_BENCH_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_chan kc_chan_t;
typedef struct kc_bench_handle kc_bench_handle_t;

typedef struct kc_bench_params {
    int kind;
    size_t capacity;
    int producers;
    int consumers;
    int packets_per_cycle;
    int spin_iters;
    size_t packet_size;
    int pointer_mode;
} kc_bench_params_t;

int kc_bench_chan_start(const kc_bench_params_t *p, kc_bench_handle_t **out_handle, kc_chan_t **out_chan);
void kc_bench_chan_stop(kc_bench_handle_t *h);

#if defined(__SIZEOF_POINTER__) && __SIZEOF_POINTER__ == 8
#ifdef __cplusplus
#define KC_BENCH_STATIC_ASSERT static_assert
#else
#define KC_BENCH_STATIC_ASSERT _Static_assert
#endif
KC_BENCH_STATIC_ASSERT(sizeof(kc_bench_params_t) == 48, "kc_bench_params_t is 48 bytes");
KC_BENCH_STATIC_ASSERT(offsetof(kc_bench_params_t, producers) == 16, "producers at 16");
KC_BENCH_STATIC_ASSERT(offsetof(kc_bench_params_t, spin_iters) == 28, "spin_iters at 28");
KC_BENCH_STATIC_ASSERT(offsetof(kc_bench_params_t, packet_size) == 32, "packet_size at 32");
KC_BENCH_STATIC_ASSERT(offsetof(kc_bench_params_t, pointer_mode) == 40, "pointer_mode at 40");
#undef KC_BENCH_STATIC_ASSERT
#endif

#ifdef __cplusplus
}
#endif

#endif /* KCORO_BENCH_H */
