#!/usr/bin/env bash
# Checks that the release builds the documented commands run one package at a time share
# their dependencies' compiles: within each group below, every crate must resolve to one
# set of features, or Cargo compiles it once per set (scripts/test.sh builds them all).
# crates/kcoro-workspace-hack lists the features that align them; when this fails, add the
# crate it names there with the union of the features shown.
#
# Groups: kcoro's own tests, examples and libkcoro build kcoro without its optional
# features; the CLI, the benchmarks and kcoro-nats's examples build it with them. The one
# crate allowed two sets is kcoro-adapter: the CLI's `kcheck --mutant` compiles its
# injected bugs in (feature `mutants`), which the benchmarks must not carry.
#
# Needs a nightly toolchain (Cargo's unit graph is unstable) and jq; skips with a note
# without them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1 || ! command -v jq >/dev/null 2>&1; then
  echo "note: no nightly toolchain or no jq; the feature alignment of the release builds is not checked"
  exit 0
fi
# As scripts/test.sh builds them (the profile decides which units exist).
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_DEBUG=false

# units ARGS...: one line per unit `cargo ARGS --release` compiles (libraries, binaries,
# build scripts; not the runs of build scripts): package, target, opt-level, features.
# Fails when the graph names none, so a change in its format cannot pass as "aligned".
units() {
  local lines
  lines=$(cargo +nightly "$@" --release --unit-graph -Z unstable-options |
    jq -r '.units[] | select(.mode == "build") |
      [(.pkg_id | sub("^registry\\+[^#]*#"; "")), .target.name, (.profile.opt_level | tostring), (.features | join(","))] | @tsv')
  if [ -z "$lines" ]; then
    echo "unified.sh: cargo $* --unit-graph named no unit" >&2
    return 1
  fi
  echo "$lines"
}

# group NAME BUILD...: each BUILD is one `cargo` argument list, as a single word.
failed=0
group() {
  local name=$1 build split
  shift
  split=$(for build in "$@"; do
    # shellcheck disable=SC2086 # each build is a word list on purpose
    units $build
  done | sort -u | awk -F'\t' '{ n[$1 FS $2 FS $3]++; f[$1 FS $2 FS $3] = f[$1 FS $2 FS $3] "\n    [" $4 "]" }
    END { for (k in n) if (n[k] > 1 && k !~ /kcoro-adapter/) print "  " k f[k] }')
  if [ -n "$split" ]; then
    echo "$name: crates compiled once per feature set (package, target, opt-level):"
    echo "$split"
    failed=1
  else
    echo "$name: one compile of each dependency"
  fi
}

group "kcoro's tests, examples and libkcoro" \
  "test -p kcoro --no-run" "build -p kcoro --examples" "build -p kcoro-capi"
group "the CLI, the benchmarks and kcoro-nats's examples" \
  "build -p kcoro-cli" "build -p kcoro-cli --examples" "build -p kcoro-bench" \
  "build -p kcoro-bench --examples" "build -p kcoro-nats --examples"
exit $failed
