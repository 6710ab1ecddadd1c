/*
 * The kcoro plugin ABI as the Go SDK's cgo preambles see it: the shared C header, whose
 * _Static_asserts pin every size and offset of crates/kcoro-abi, so a drift fails the Go
 * build. cgo's _cgo_export.h declares the entry symbol itself, with its own type.
 */
#ifndef KCORO_GO_ABI_H
#define KCORO_GO_ABI_H

#define KCORO_NO_ENTRY_DECL
#include "../../c/kcoro_plugin.h"

#endif /* KCORO_GO_ABI_H */
