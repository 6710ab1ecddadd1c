/*
 * kcoro_abi.h: the version of the kcoro C ABI these headers describe.
 * libkcoro (crates/kcoro-capi) implements ABI 0.2 on the Rust kcoro runtime.
 */
#ifndef KCORO_ABI_H
#define KCORO_ABI_H

#define KCORO_ABI_MAJOR 0
#define KCORO_ABI_MINOR 2

#endif /* KCORO_ABI_H */
