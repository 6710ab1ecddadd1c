#!/usr/bin/env bash
# The whole kcoro test suite: formatting, every crate's tests (unit, integration, doc),
# and the loom models of the lock-free state machines. Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo test --workspace"
cargo test --workspace

echo "== loom models"
scripts/loom.sh
