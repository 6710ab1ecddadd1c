#!/usr/bin/env bash
# The whole kcoro test suite: formatting, lints, rustdoc, every crate's tests (unit,
# integration, doc) in debug with backtraces on, the runtime's tests once in release, the
# Go SDK's tests, the loom models, and the smoke run of every documented command. Needs the
# Rust toolchain and a C/C++ compiler (the plugin tests build the C and C++ example
# plugins); the Go tests run when `go` is installed and are skipped with a note otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

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
echo "== cargo test --release -p kcoro (RUST_BACKTRACE=1)"
cargo test --release -p kcoro

if command -v go >/dev/null 2>&1; then
  echo "== Go plugin SDK: go vet, go test"
  (cd sdk/go && go vet ./... && go test ./...)
else
  echo "note: go not installed; skipping the Go plugin SDK tests"
fi

echo "== loom models"
scripts/loom.sh

# aarch64 is checked by build when its standard library is installed
# (`rustup target add aarch64-unknown-linux-gnu`); otherwise say so and move on.
if rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
  echo "== cargo check --target aarch64-unknown-linux-gnu"
  cargo check -p kcoro --target aarch64-unknown-linux-gnu
else
  echo "note: aarch64-unknown-linux-gnu not installed; skipping the aarch64 build check"
fi

echo "== every documented command (scripts/smoke.sh)"
scripts/smoke.sh
