// Every header, included together from C++ under -Wall -Wextra -Werror.
#include "../../../../include/kcoro.h"
#include "../../../../include/kcoro_abi.h"
#include "../../../../include/kcoro_bench.h"
#include "../../../../include/kcoro_core.h"
#include "../../../../include/kcoro_port.h"
#include "../../../../include/kcoro_sched.h"
#include "../../../../include/kcoro_zcopy.h"

#include <cstdio>

int main()
{
    static_assert(KCORO_ABI_MAJOR == 0 && KCORO_ABI_MINOR == 2, "ABI 0.2");
    kc_chan_t *ch = nullptr;
    if (kc_chan_make(&ch, KC_BUFFERED, sizeof(int), 4) != 0) return 1;
    int v = 3, got = 0;
    if (kc_chan_try_send(ch, &v) != 0 || kc_chan_try_recv(ch, &got) != 0 || got != 3) return 1;
    if (kc_chan_is_zero_copy(ch)) return 1;
    kc_chan_destroy(ch);
    kcoro_t *m = kcoro_create_main();
    if (m == nullptr || kcoro_create_main() != m || kcoro_thread_main() != m) return 1;
    if (kc_scope_init(nullptr, nullptr) != -EINVAL) return 1; // NULL out is refused
    std::printf("test_headers: ok\n");
    return 0;
}
