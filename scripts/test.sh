#!/usr/bin/env bash
# The whole kcoro test suite: formatting, every crate's tests (unit, integration, doc),
# the loom models of the lock-free state machines, and the kcoro crate on other
# architectures (scripts/cross.sh: aarch64 under qemu-user, a riscv64 build check). Needs
# the Rust toolchain and a C/C++ compiler (the plugin tests build the C and C++ example
# plugins); the Go plugin tests run when `go` is installed and are skipped with a note
# otherwise, and the cross checks install their tools or are skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo test --workspace"
cargo test --workspace

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
