/*
 * kcoro_port.h: the error codes of the kcoro C API. Every call returns 0 on success or
 * one of these negative Linux errno values (also -EINVAL, -ENOMEM, -ENOENT, -EEXIST
 * where they apply; -ENOTRECOVERABLE if the library caught a bug of its own).
 */
#ifndef KCORO_PORT_H
#define KCORO_PORT_H

#include <errno.h>

#define KC_EAGAIN (-EAGAIN)       /* try (timeout 0) found nothing to do: -11 */
#define KC_EPIPE (-EPIPE)         /* channel closed (and drained, for receives): -32 */
#define KC_ETIME (-ETIME)         /* bounded wait ran out: -62 */
#define KC_ECANCELED (-ECANCELED) /* cancel token fired (wins over timeout): -125 */
#define KC_ENOTSUP (-ENOTSUP)     /* not supported (no backend bound, not implemented): -95 */

#endif /* KCORO_PORT_H */
