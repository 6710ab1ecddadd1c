#!/usr/bin/env bash
# Model-checks kcoro's lock-free state machines (park state, Signal, run queue, task
# registry, channel claim protocol) and the adapter session's credit cell with loom.
# One cargo invocation for both crates: their test builds overlap instead of queueing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}" LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}" \
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}" \
  cargo test -p kcoro -p kcoro-adapter --lib --release loom_ "$@"
