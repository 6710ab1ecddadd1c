#!/usr/bin/env bash
# Other architectures: what only a real aarch64 target can tell about the kcoro crate.
# Under qemu-user: the context switch and stacks (the unit tests of `coro`: stack pool,
# guard pages, park state), unwinding a panic across coroutine stacks (rt_panic's
# children), spawning and parking on several workers (rt_spawn, rt_park), and the stack and
# overflow tests (rt_stack) with 4 KiB and again with 64 KiB pages; a build check of the
# whole crate and its tests for riscv64. Memory orderings are loom's job
# (scripts/loom.sh): qemu-user on an x86_64 host runs aarch64 code with the host's stronger
# ordering, so it cannot find a missing fence.
#
# Installs what it needs when missing (rustup targets; Debian's qemu-user,
# gcc-aarch64-linux-gnu and libc6-dev-arm64-cross, which needs root and apt). When that is
# impossible (no network, not root, not Debian) it prints a `note:` and skips; it fails
# only when a build or a test fails.
#
# Under qemu-user a few checks skip themselves, each with a `note:`: qemu accepts
# `setrlimit(RLIMIT_AS)` and `madvise(MADV_GUARD_INSTALL)` and ignores both, so the
# out-of-memory test and the guard-pages-do-not-split-mappings test have nothing to
# measure there (the runtime notices the ignored madvise and uses mprotect guards, which
# the overflow test then exercises). Tests that re-execute their own binary (the
# stack-overflow, out-of-memory and panic children) go through the runner set here.
set -euo pipefail
cd "$(dirname "$0")/.."

AARCH64=aarch64-unknown-linux-gnu
RISCV64=riscv64gc-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu

note() { echo "note: $*"; }

# Runs a command quietly; on failure prints its first error line (or its last line) and
# returns its status.
quietly() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    { grep -m 1 -E '^(error|E):' "$log" || tail -n 1 "$log"; } | sed "s/^/  $1: /"
  fi
  rm -f "$log"
  return "$rc"
}

have_target() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }

# The rustup targets, added when missing. Returns non-zero if any is still missing.
ensure_targets() {
  local t missing=()
  for t in "$@"; do have_target "$t" || missing+=("$t"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v rustup >/dev/null 2>&1 || return 1
  quietly rustup target add "${missing[@]}" || return 1
}

qemu_aarch64() { command -v qemu-aarch64 || command -v qemu-aarch64-static; }

aarch64_tools_present() {
  qemu_aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null && [ -e "$SYSROOT/lib/libc.so.6" ]
}

# qemu, the cross linker and the aarch64 C library, from Debian, when missing.
ensure_aarch64_tools() {
  aarch64_tools_present && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends)
  local pkgs=(qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
  # A fresh machine may have no package lists yet: update once, then retry.
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${pkgs[@]}" >/dev/null 2>&1 ||
    { quietly apt-get -o DPkg::Lock::Timeout=300 -qq update &&
      DEBIAN_FRONTEND=noninteractive quietly "${apt[@]}" install "${pkgs[@]}"; } ||
    return 1
  aarch64_tools_present
}

if ensure_targets "$AARCH64" && ensure_aarch64_tools; then
  qemu=$(qemu_aarch64)
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER:-$qemu -L $SYSROOT}"

  echo "== kcoro on $AARCH64 (under $(basename "$qemu")): coro, rt_panic, rt_spawn, rt_park, rt_stack"
  cargo test -q -p kcoro --target "$AARCH64" --lib coro::
  # `cross`: those four modules of `suite` in a binary of their own (a fifth of its build).
  cargo test -q -p kcoro --target "$AARCH64" --test cross

  # aarch64 kernels run with 4, 16 or 64 KiB pages; qemu-user reports the host's (4 KiB)
  # unless told otherwise. Only the stack tests run here: with emulated 64 KiB pages qemu
  # 7.2 crashes on any panic unwind, which the rest of the suite exercises.
  if "$qemu" -h 2>/dev/null | grep -q -- '^-p pagesize'; then
    echo "== stack and overflow tests with 64 KiB pages"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$qemu -p 65536 -L $SYSROOT" \
      cargo test -q -p kcoro --target "$AARCH64" --lib coro::stack
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$qemu -p 65536 -L $SYSROOT" \
      cargo test -q -p kcoro --target "$AARCH64" --test cross -- rt_stack:: --nocapture
  else
    note "$(basename "$qemu") cannot emulate 64 KiB pages (-p); skipping the 64 KiB page run"
  fi
else
  note "could not install the $AARCH64 target, qemu-user or the aarch64 cross linker; skipping the aarch64 tests"
fi

if ensure_targets "$RISCV64"; then
  echo "== cargo check -p kcoro --target $RISCV64 --lib --tests"
  cargo check -p kcoro --target "$RISCV64" --lib --tests
else
  note "could not install the $RISCV64 target; skipping the riscv64 build check"
fi
