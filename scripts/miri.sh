#!/usr/bin/env bash
# Runs the unit tests of kcoro's pure-Rust unsafe code under Miri: the run queue, the
# timer wheel, the Signal protocol, cancellation tokens, the overflow report formatter and the
# region allocator's free lists. Stacks, context
# switches and the reactor call into the OS (mmap, epoll) and are covered by loom models
# and the integration tests instead. Needs a nightly toolchain with the miri component;
# skips with a note otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "note: cargo +nightly miri is not installed; skipping the Miri run"
  exit 0
fi
cargo +nightly miri test -p kcoro --lib -- runtime::queue runtime::timer park::tests sync::cancel coro::overflow zcopy::alloc "$@"
