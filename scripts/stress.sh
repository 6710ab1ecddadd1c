#!/usr/bin/env bash
# Runs a test command N times while CPU hogs keep every core busy, and stops at the first
# failure, keeping its log. A test that fails only when the machine is busy fails here
# first, and is a defect to fix at its cause, never to retry.
#
#   scripts/stress.sh                     # the whole suite (scripts/test.sh), 3 times
#   scripts/stress.sh -n 25 -- cargo test --release -p kcoro --test suite
#   scripts/stress.sh -n 100 -j 5 -- target/tmp/test_bench_asan
#
#   -n N   runs (default 3)
#   -j J   runs at once (default 1); with J > 1 a batch of J starts together and the
#          first failing run of the batch stops the script
#   -h H   CPU hogs beside the runs (default: one per core, `nproc`)
#
# Logs go to target/stress/<start time>/run-K.log, a directory per invocation, so the next
# invocation cannot overwrite a failure's log; the failing run's log is printed (its last
# 60 lines) and kept. Exit 0 when all N runs passed, 1 at the first failure.
set -uo pipefail
cd "$(dirname "$0")/.."

runs=3
jobs=1
hogs=$(nproc)
while getopts "n:j:h:" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    j) jobs=$OPTARG ;;
    h) hogs=$OPTARG ;;
    *)
      sed -n '2,16p' "$0"
      exit 2
      ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
cmd=("$@")
[ ${#cmd[@]} -eq 0 ] && cmd=(scripts/test.sh)

logs=target/stress/$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$logs"
hog_pids=()
stop_hogs() {
  [ ${#hog_pids[@]} -gt 0 ] && kill "${hog_pids[@]}" 2>/dev/null
  wait "${hog_pids[@]}" 2>/dev/null
}
trap stop_hogs EXIT
for _ in $(seq "$hogs"); do
  # A busy loop in a shell of its own: no tool to install.
  bash -c 'while :; do :; done' &
  hog_pids+=($!)
done
echo "stress: ${cmd[*]} × $runs ($jobs at once) beside $hogs CPU hogs; logs in $logs/"

started=$SECONDS
k=0
while [ "$k" -lt "$runs" ]; do
  batch=()
  pids=()
  for _ in $(seq "$jobs"); do
    [ "$k" -ge "$runs" ] && break
    k=$((k + 1))
    log="$logs/run-$k.log"
    "${cmd[@]}" >"$log" 2>&1 </dev/null &
    pids+=($!)
    batch+=("$k")
  done
  for i in "${!pids[@]}"; do
    n=${batch[$i]}
    t0=$SECONDS
    if wait "${pids[$i]}"; then
      [ "$jobs" = 1 ] && echo "run $n: ok ($((SECONDS - t0)) s)"
    else
      rc=$?
      echo "run $n: FAILED (exit $rc); the last lines of $logs/run-$n.log:"
      tail -n 60 "$logs/run-$n.log" | sed 's/^/  | /'
      for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
      exit 1
    fi
  done
  [ "$jobs" != 1 ] && echo "runs up to $k: ok"
done
echo "stress: $runs of $runs passed in $((SECONDS - started)) s"
