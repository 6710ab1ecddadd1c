#!/usr/bin/env bash
# The whole kcoro test suite: formatting, lints, rustdoc, every crate's tests (unit,
# integration, doc) in debug with backtraces on, the runtime's tests once in release, the
# Go SDK's tests, the loom models, the kcoro crate's stacks and context switch on aarch64
# (scripts/cross.sh: under qemu-user, with 4 and 64 KiB pages, and a riscv64 build
# check), and the smoke run of every documented command. The fuzzers' corpus is replayed
# by the debug tests; the timed fuzz run is scripts/fuzz.sh, on its own (nightly).
# Needs the Rust toolchain and a C/C++ compiler (the plugin tests build the C and C++
# example plugins); the Go tests run when `go` is installed and are skipped with a note
# otherwise, and the cross checks install their tools or are skipped with a note.
#
# Ends with a table of each phase's wall time and CPU time, so the next slow step shows
# (also when a phase fails: the table stops at it). The machine has few cores: a phase
# that takes much CPU slows what runs beside it, so CPU is what to cut first.
set -euo pipefail
cd "$(dirname "$0")/.."

phases=()
suite_started=$SECONDS
mkdir -p target/ci

# children_cpu: CPU seconds (user + system) of every child this shell has waited for, read
# from the kernel's count for this shell (the `times` builtin would run in a subshell here).
children_cpu() {
  local stat fields
  stat=$(</proc/$$/stat)
  read -r -a fields <<<"${stat##*) }" # from field 3 on: cutime is field 16, cstime 17
  echo $(((fields[13] + fields[14]) / $(getconf CLK_TCK)))
}

# record NAME T0 RC CPU0: one row of the phase table (start offset, wall time, CPU time
# since CPU0, outcome).
record() {
  phases+=("$(printf '%5s s %5s s %6s s  %-52s %s' $(($2 - suite_started)) $((SECONDS - $2)) \
    $(($(children_cpu) - $4)) "$1" "$([ "$3" = 0 ] && echo ok || echo "FAILED ($3)")")")
}

# phase NAME CMD...: runs CMD as the phase NAME and records its time and exit status.
phase() {
  local name=$1 t0=$SECONDS cpu0 rc=0
  cpu0=$(children_cpu)
  shift
  echo "== $name"
  "$@" || rc=$?
  record "$name" "$t0" "$rc" "$cpu0"
  return "$rc"
}

# beside NAME CMD...: starts CMD as the phase NAME in the background, beside the phases
# that follow, with its output in target/ci/NAME.log; `joined` waits for it and prints
# that output. Used where the foreground mostly waits (tests on sockets, timers and child
# processes; the smoke run's servers and monitors) and the background compiles.
bg_pid=""
beside() {
  bg_name=$1 bg_t0=$SECONDS bg_log="target/ci/${1%% *}.log"
  shift
  echo "== $bg_name (beside what follows; output in $bg_log)"
  "$@" >"$bg_log" 2>&1 </dev/null &
  bg_pid=$!
}
joined() {
  local rc=0 cpu0
  cpu0=$(children_cpu) # a background job's CPU is counted when it is waited for
  wait "$bg_pid" || rc=$?
  bg_pid=""
  echo "== $bg_name: done (exit $rc); its output:"
  sed 's/^/  | /' "$bg_log"
  record "$bg_name" "$bg_t0" "$rc" "$cpu0"
  return "$rc"
}

phase_table() {
  local rc=$?
  # `|| true`: a job that already ended makes `kill` fail, and under `set -e` that ended
  # this function before the table, on exactly the runs that failed.
  [ -n "$bg_pid" ] && { kill "$bg_pid" 2>/dev/null || true; }
  echo "== phases (start, wall time, CPU time; rows that overlap ran side by side)"
  printf '%s\n' "${phases[@]}"
  printf '%13s s %6s s  %-52s %s\n' $((SECONDS - suite_started)) "$(children_cpu)" "total" \
    "$([ $rc = 0 ] && echo ok || echo "FAILED ($rc)")"
}
trap phase_table EXIT

# Tools the tests use, installed when we can (root with apt); without them the tests that
# need them skip with a note. tmux drives chanmon's screen in a real terminal; nats-server
# (with JetStream) serves kcoro-nats's tests, benchmark and smoke run; wrk loads the net
# suite's https rows (the built-in load generator speaks no TLS).
install_tools() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
  local missing=()
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]}"
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
    (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null 2>&1) ||
    echo "note: cannot install ${missing[*]}; the tests that need them will skip"
}

go_sdk() {
  if command -v go >/dev/null 2>&1; then
    (cd sdk/go && go vet ./... && go test ./...)
  else
    echo "note: go not installed; skipping the Go plugin SDK tests"
  fi
}

# The suite builds from scratch on a fresh clone: incremental compilation's caches only cost
# there (measured on the debug test build: 268 → 223 CPU-s), and full debug info in the
# workspace's own debug builds is for debuggers, not tests: backtraces need the line
# tables, which stay (223 → 191 CPU-s). Without incremental compilation, Cargo's 256
# codegen units per crate in debug builds only add work, mostly system time: 16 took the
# debug test build from 273 to 263 and from 303 to 297 CPU-s (two alternated pairs on a
# fresh target; 4 and 1 were no better). The partition decides where each function is
# compiled, not how: at opt-level 0 nothing is inlined across it. These
# settings are the suite's own; a plain `cargo test` keeps the workspace's profile, in
# artifacts of its own.
export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only CARGO_PROFILE_DEV_CODEGEN_UNITS=16

phase "tools (tmux, nats-server, wrk)" install_tools
phase "cargo fmt --check" cargo fmt --all -- --check
# The release builds below share their dependencies' compiles only while their features
# agree (crates/kcoro-workspace-hack); two seconds to check, a minute of CPU when they drift.
phase "release builds share dependencies (unified.sh)" scripts/unified.sh
# Linting inside the debug build instead (clippy-driver as RUSTC_WORKSPACE_WRAPPER) was
# measured and is slower: cargo doc then checks every dependency itself (16 -> 73 CPU-s),
# which the clippy pass does for it. Measured again inside `cargo test --no-run` itself (so
# no second build of the test targets): the clippy pass's 206 CPU-s became 39 more in the
# test build and 118 more in cargo doc, 49 saved of ~2000; not worth a build that lints.
# Testing kcoro-bench, kcoro-cli and kcoro-nats against the smoke run's release
# dependencies (their own code at opt-level 0) cut the debug build from 295 to 130 CPU-s
# but added as much to the release builds (their test harnesses, a second compile each),
# and that mix (a crate at opt-level 0 over optimised dependencies) overflowed a 64 KiB
# coroutine stack in kcoro-nats's multi-process test, which neither all-debug nor
# all-release does. Not kept.
phase "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
phase "cargo doc (rustdoc -D warnings)" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Panics must stay contained whatever the environment: run with backtraces on, as most
# developers do (see docs/ARCHITECTURE.md, "Panics and deep stacks").
export RUST_BACKTRACE=1

phase "cargo test --workspace: build (debug)" cargo test --workspace --no-run

# Optimisation changes inlining and stack use: the runtime's tests once more in release.
# Without the workspace's thin LTO, as a crate depending on kcoro builds it by default
# (Cargo's release profile has no LTO). kcoro itself keeps the DWARF line tables:
# symbolising a backtrace on a coroutine stack (parsing them) is the deepest stack the panic
# tests exercise. Line tables only, not full debug info: the same symbolised frames, and the
# test build takes 139 s of CPU instead of 183. Its dependencies go without, as in the smoke
# run's builds, so both use the same compiled tokio, mio, corosensei... (with debug info
# everywhere they were built twice). Set in Cargo.toml (`profile.release.package.kcoro`),
# so for every release build, not for the tests alone: the smoke run's `-p kcoro --examples`
# and libkcoro reuse the tests' kcoro and examples instead of compiling them again
# (27 CPU-s). Built, with what the smoke run uses, while the debug tests run. (The smoke
# run's kcoro-bench and kcoro-nats examples build in the dev profile, over what the debug
# test build compiled: scripts/smoke.sh says why.)
# Dependencies in one codegen unit instead of the workspace's 4: without LTO across
# crates, rustc still runs ThinLTO across one crate's units and compiles their shared
# inline functions once per unit, which one unit skips. The workspace's larger crates keep
# 4 (Cargo.toml names them): in one unit each would compile alone on one core at the end of
# a build (everything in one unit saved 56 CPU-s on kcoro-cli and kcoro-bench alone, but
# in the suite this phase then ran 410 s with a core idle a third of the time). This
# phase's builds on a fresh target, two alternated pairs: 570 and 581 CPU-s (302, 307 s)
# against 609 and 605 (322, 322 s). The same optimisation level, in fewer pieces.
# (Cargo's default 16 units did not build faster than 4: 443 CPU-s against 422. Everything
# at opt-level 1 instead of 3: this phase's builds took 825 CPU-s against 892, not worth
# building something other than what users run.)
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
release_kcoro=(--release -p kcoro)
beside "builds (release kcoro tests, smoke --build)" \
  bash -c "cargo test ${release_kcoro[*]@Q} --no-run && scripts/smoke.sh --build"
phase "cargo test --workspace: run (debug)" cargo test --workspace
joined
# The loom models and the other architectures compile for minutes and then run on their
# own; the release tests, the Go tests and the smoke run mostly wait. Started first: they
# end the suite.
beside "loom models and other architectures (loom.sh, cross.sh)" bash -c 'scripts/loom.sh && scripts/cross.sh'
phase "cargo test --release -p kcoro (no LTO)" cargo test "${release_kcoro[@]}"
phase "Go plugin SDK: go vet, go test" go_sdk
phase "every documented command (scripts/smoke.sh)" scripts/smoke.sh
joined
