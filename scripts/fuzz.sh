#!/usr/bin/env bash
# Fuzzes the decoders of everything that crosses a process boundary, for FUZZ_SECONDS
# (default 60) per target, with libFuzzer through cargo-fuzz. Needs a nightly toolchain;
# installs cargo-fuzz when it is missing; skips with a note when neither can be had.
# New inputs go to a scratch directory, so the checked-in corpus only grows on purpose
# (`cargo +nightly fuzz run frames` in crates/kcoro-ipc adds to it; then `cargo fuzz cmin`).
#
# Not part of scripts/test.sh (a nightly build and a timed run): run it before changing a
# decoder or to what a connection may reach. CI replays each target's checked-in corpus on
# stable (kcoro-ipc's tests/proto.rs and tests/fuzz_replay.rs), so whatever the fuzzer
# found once stays a test. `scripts/fuzz.sh --list` names the targets.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"

# CRATE_DIR TARGET, one line each.
targets=("crates/kcoro-ipc frames" "crates/kcoro-ipc two_connections" "crates/kcoro-ipc rings" "adapters/nats values")

if [ "${1:-}" = "--list" ]; then
  for t in "${targets[@]}"; do echo "${t#* }"; done
  exit 0
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "note: no nightly toolchain; skipping the fuzz run"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  if ! cargo install cargo-fuzz --locked -q >/dev/null 2>&1; then
    echo "note: cannot install cargo-fuzz; skipping the fuzz run"
    exit 0
  fi
fi

run() { # run CRATE_DIR TARGET
  local scratch leaks=1
  scratch=$(mktemp -d)
  # two_connections keeps one server and client for the process (its World): the client's
  # writer coroutine holds its 64 KiB outbox on a kcoro stack, which LeakSanitizer does not
  # scan, so at exit it reports that buffer as leaked though the World still owns it.
  # Leaks are not this target's question (what B can reach of A is); the others keep LSan.
  [ "$2" = two_connections ] && leaks=0
  echo "== fuzz $2 for ${seconds}s"
  (cd "$1" && ASAN_OPTIONS="detect_leaks=$leaks" cargo +nightly fuzz run "$2" "$scratch" "fuzz/corpus/$2" -- \
    -max_total_time="$seconds" -max_len=100000 -print_final_stats=1 -detect_leaks="$leaks" 2>&1 | tail -n 4)
  rm -rf "$scratch"
}

for t in "${targets[@]}"; do
  # shellcheck disable=SC2086 # two words: the crate's folder and the target
  run $t
done
