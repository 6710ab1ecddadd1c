#!/usr/bin/env bash
# The whole kcoro test suite: formatting, lints, rustdoc, every crate's tests (unit,
# integration, doc) in debug with backtraces on, the runtime's tests once in release, the
# Go SDK's tests, the loom models, the kcoro crate on other architectures
# (scripts/cross.sh: aarch64 under qemu-user, a riscv64 build check), and the smoke run of
# every documented command. Needs the Rust toolchain and a C/C++ compiler (the plugin
# tests build the C and C++ example plugins); the Go tests run when `go` is installed and
# are skipped with a note otherwise, and the cross checks install their tools or are
# skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."

# tmux drives chanmon's screen in a real terminal (its test and the smoke run skip with a
# note without it); installed here when we can (root with apt).
if ! command -v tmux >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing tmux"
  apt-get install -y -q tmux >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q tmux >/dev/null 2>&1) ||
    echo "note: cannot install tmux; the real-terminal tests will skip"
fi

# nats-server (with JetStream) for kcoro-nats's tests, benchmark and smoke run (they skip
# with a note without it); installed here when we can (root with apt).
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ] && [ "$(id -u)" = 0 ] &&
  command -v apt-get >/dev/null 2>&1; then
  echo "== installing nats-server"
  apt-get install -y -q nats-server >/dev/null 2>&1 ||
    (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q nats-server >/dev/null 2>&1) ||
    echo "note: cannot install nats-server; the kcoro-nats tests will skip"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo doc --workspace --no-deps (RUSTDOCFLAGS=-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Panics must stay contained whatever the environment: run with backtraces on, as most
# developers do (see docs/ARCHITECTURE.md, "Panics and deep stacks").
export RUST_BACKTRACE=1

echo "== cargo test --workspace (RUST_BACKTRACE=1)"
cargo test --workspace

# Optimisation changes inlining and stack use: the runtime's tests once more in release.
# Without the workspace's thin LTO, as a crate depending on kcoro builds it by default
# (Cargo's release profile has no LTO): thin-linking the 25 test binaries made the build
# take 221 s instead of 94 s on 2 cores. Debug info stays on: symbolising a backtrace on a
# coroutine stack is the deepest stack the panic tests exercise.
echo "== cargo test --release -p kcoro, no LTO (RUST_BACKTRACE=1)"
CARGO_PROFILE_RELEASE_LTO=false cargo test --release -p kcoro

if command -v go >/dev/null 2>&1; then
  echo "== Go plugin SDK: go vet, go test"
  (cd sdk/go && go vet ./... && go test ./...)
else
  echo "note: go not installed; skipping the Go plugin SDK tests"
fi

echo "== loom models"
scripts/loom.sh

echo "== other architectures"
scripts/cross.sh

echo "== fuzzing the wire decoders"
scripts/fuzz.sh

echo "== every documented command (scripts/smoke.sh)"
scripts/smoke.sh
