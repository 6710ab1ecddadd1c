#!/usr/bin/env bash
# Model-checks kcoro's lock-free state machines (park state, Signal, run queue, task
# registry, channel claim protocol, the region allocator's free list and holders word), the
# adapter session's credit cell and kcoro-ipc's shared-memory rings (their wake-ups) with
# loom. One cargo invocation for the three crates: their test builds overlap instead of
# queueing.
# Built without optimisation by default: what loom explores does not depend on it, and the
# build is most of the cost (measured: 97 CPU-s at opt-level 3, 61 at 0, the models
# themselves 11 s against 28 s). Set CARGO_PROFILE_RELEASE_OPT_LEVEL=3 for deeper runs
# (a larger LOOM_MAX_PREEMPTIONS), where the models' time dominates.
# Loom's own crates (its scheduler, the `generator` coroutines it switches threads with,
# the tracing calls on its hot path) are optimised all the same: they are where a model
# spends its time and little to build (measured: the models 28 s -> 13 s, the whole
# script 103 -> 67 CPU-s, against the same build with nothing optimised).
# Without backtraces: a model that fails panics on one of loom's own small stacks, and
# symbolising a backtrace there overflowed it, which left the test hanging, not failing.
set -euo pipefail
cd "$(dirname "$0")/.."
optimised=()
for crate in loom generator scoped-tls tracing tracing-core; do
  optimised+=(--config "profile.release.package.$crate.opt-level=3")
done
RUST_BACKTRACE=0 RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}" LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}" \
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}" \
  CARGO_PROFILE_RELEASE_OPT_LEVEL="${CARGO_PROFILE_RELEASE_OPT_LEVEL:-0}" \
  cargo test "${optimised[@]}" -p kcoro -p kcoro-adapter -p kcoro-ipc --lib --release loom_ "$@"
