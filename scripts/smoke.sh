#!/usr/bin/env bash
# Runs every command that README.md, docs/*.md and the SDK READMEs show, as a user would
# type it, and checks each one's exit code and one line of its output. scripts/test.sh runs
# this, so a documented command that breaks fails CI.
#
# A command is run as printed, or with its quickest setting where the printed form runs for
# minutes (a shorter --seconds, fewer profiles, one benchmark case): what is checked is that
# it starts, does its job and says so, not how fast. Each `doc` line names the documented
# text it covers; the coverage check at the end extracts every command from the docs and
# fails if one has no `doc` line here. So adding a command to the docs means adding it here.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d)
# The screens run on a tmux server of this run's own, kept alive between them by a session
# that does nothing: tmux ends a server when its last session goes, and a session started
# while it is ending fails ("server exited unexpectedly", once in ~200 back-to-back tries).
tmux_() { tmux -S "$tmp/tmux.sock" "$@"; } # its socket goes with $tmp
trap 'tmux_ kill-server 2>/dev/null; rm -rf "$tmp"' EXIT

# Release builds without the workspace's thin LTO and without debug info: both change how
# fast the binaries run or how a debugger sees them, not what they do, and together they
# were most of this script's time (kcoro-cli, kcoro-bench and the kcoro-nats examples
# built in 221 s instead of 412 s). kcoro itself keeps its line tables (Cargo.toml), as the
# runtime's release tests in scripts/test.sh build it, so both share one compiled kcoro.
# Dependencies in one codegen unit, as scripts/test.sh builds them (less CPU without LTO;
# why there; the workspace's larger crates keep 4, Cargo.toml). A caller's setting wins.
export CARGO_PROFILE_RELEASE_LTO="${CARGO_PROFILE_RELEASE_LTO:-false}"
export CARGO_PROFILE_RELEASE_DEBUG="${CARGO_PROFILE_RELEASE_DEBUG:-false}"
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS="${CARGO_PROFILE_RELEASE_CODEGEN_UNITS:-1}"
# kcoro-bench and the kcoro-nats examples run in the dev profile, not the `--release` their
# documented commands print: here each runs its quickest setting to show it starts, does its
# job and says so, which needs no optimiser, and the dev build reuses what scripts/test.sh's
# debug tests compiled (kcoro-bench with its examples: 21 CPU-s, against about 230 for the
# release build of it and of its peers: async-nats, rustls, reqwest, may, ipc-channel...).
# The two crates' sources have no `cfg(debug_assertions)`, so the release build compiles
# the same code (checked at the end of this script). The same settings as scripts/test.sh's
# debug build (why there), so that build is reused; a caller's setting wins.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
export CARGO_PROFILE_DEV_CODEGEN_UNITS="${CARGO_PROFILE_DEV_CODEGEN_UNITS:-16}"

echo "== smoke: building what the documented commands use"
# One package per build, as the documented `cargo run -p X` commands build them: building
# two together unifies their dependencies' features, and each `cargo run` would rebuild.
# `scripts/smoke.sh --build` only builds (scripts/test.sh does that while tests run).
cargo build -q --release -p kcoro-cli || exit 1
cargo build -q --release -p kcoro --examples || exit 1
cargo build -q -p kcoro-bench || exit 1
cargo build -q -p kcoro-bench --examples || exit 1
cargo build -q -p kcoro-nats --examples || exit 1
cargo build -q -p kcoro-plugin-echo -p kcoro-test-nylon02 || exit 1
[ "${1:-}" = "--build" ] && exit 0
export PATH="$root/target/release:$PATH" # `kcoro ...` and `kcheck ...` as the docs print them
echo_lib=target/debug/libkcoro_plugin_echo.so

failures=0
failed_summaries=()
covered=()

# failed WHAT OUTPUT: counts a failure of WHAT and keeps its summary (the last lines of
# OUTPUT) for the end of the run, where a log cut to its first and last lines still shows it.
failed() {
  failures=$((failures + 1))
  failed_summaries+=("FAIL $1" "$(tail -n 4 <<<"$2" | cut -c1-200 | sed 's/^/     | /')")
}

# nats_server: true if a nats-server binary is installed (its path in $nats_bin).
nats_server() {
  nats_bin=$(command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null) && [ -n "$nats_bin" ]
}
started=$SECONDS

# doc TEXT: the documented command TEXT is covered by the next check.
doc() { covered+=("$(normalise "$1")"); }

# normalise TEXT: drops a trailing `# comment` and squeezes blanks, as the coverage check does.
normalise() { sed -e 's/[[:space:]]#.*$//' -e 's/[[:space:]]\+/ /g' -e 's/^ //' -e 's/ $//' <<<"$1"; }

# expect RC PATTERN CMD...: runs CMD; passes if it exits RC and a line of its output
# (stdout and stderr) matches the extended regex PATTERN.
expect() {
  local want=$1 pattern=$2 out rc t0=$SECONDS
  shift 2
  out=$("$@" 2>&1 </dev/null)
  rc=$?
  if [ "$rc" = "$want" ] && grep -qE -- "$pattern" <<<"$out"; then
    printf 'ok   %-90s %3ss\n' "$*" $((SECONDS - t0))
  else
    printf 'FAIL %s\n     exit %s (wanted %s); no line matched /%s/; last lines:\n' "$*" "$rc" "$want" "$pattern"
    tail -n 15 <<<"$out" | sed 's/^/     | /'
    failed "$* (exit $rc, wanted $want; /$pattern/)" "$out"
  fi
}

# expect_stdin RC PATTERN INPUT CMD...: as expect, with INPUT on stdin.
expect_stdin() {
  local want=$1 pattern=$2 input=$3 out rc t0=$SECONDS
  shift 3
  out=$(printf '%s' "$input" | "$@" 2>&1)
  rc=$?
  if [ "$rc" = "$want" ] && grep -qE -- "$pattern" <<<"$out"; then
    printf 'ok   %-90s %3ss\n' "$* < input" $((SECONDS - t0))
  else
    printf 'FAIL %s < input\n     exit %s (wanted %s); no line matched /%s/\n' "$*" "$rc" "$want" "$pattern"
    tail -n 15 <<<"$out" | sed 's/^/     | /'
    failed "$* < input (exit $rc, wanted $want; /$pattern/)" "$out"
  fi
}

# expect_tui PATTERN CMD...: runs the full-screen CMD in a 120x40 tmux pane; passes if the
# screen shows PATTERN (extended regex) within 15 s and `q` then ends CMD with exit 0.
expect_tui() {
  local pattern=$1 t0=$SECONDS session="smoke-$$" i rc=""
  shift
  if ! command -v tmux >/dev/null 2>&1; then
    echo "note: tmux not installed; not running the screen of: $*"
    return
  fi
  rm -f "$tmp/tui.rc"
  tmux_ has-session -t keep 2>/dev/null || tmux_ new-session -d -s keep "sleep 100000"
  tmux_ new-session -d -s "$session" -x 120 -y 40 "$(printf '%q ' "$@"); echo \$? > $tmp/tui.rc; sleep 60"
  for i in $(seq 300); do
    tmux_ capture-pane -p -t "$session" | grep -qE -- "$pattern" && break
    sleep 0.05
  done
  local screen
  screen=$(tmux_ capture-pane -p -t "$session")
  tmux_ send-keys -t "$session" q
  for i in $(seq 200); do [ -s "$tmp/tui.rc" ] && break; sleep 0.05; done
  [ -s "$tmp/tui.rc" ] && rc=$(cat "$tmp/tui.rc")
  tmux_ kill-session -t "$session" 2>/dev/null
  if [ "$rc" = 0 ] && grep -qE -- "$pattern" <<<"$screen"; then
    printf 'ok   %-90s %3ss\n' "(screen) $*" $((SECONDS - t0))
  else
    printf 'FAIL (screen) %s\n     exit %s; no line matched /%s/; the screen:\n' "$*" "$rc" "$pattern"
    sed 's/^/     | /' <<<"$screen"
    failed "(screen) $* (exit $rc; /$pattern/)" "$(grep -v '^ *$' <<<"$screen")"
  fi
}

echo "== smoke: README set-up"
doc 'cargo run --release -p kcoro-cli -- demo'
expect 0 '^exactly-once check: PASS' cargo run -q --release -p kcoro-cli -- demo --seconds 0.5
doc 'scripts/test.sh' # this script runs inside it
doc 'scripts/loom.sh'  # scripts/test.sh runs it
doc 'scripts/cross.sh' # scripts/test.sh runs it
doc 'scripts/unified.sh' # scripts/test.sh runs it
doc 'scripts/fuzz.sh' # a timed nightly run of its own; here, that it starts and names its targets
expect 0 '^frames$' scripts/fuzz.sh --list
doc 'cargo build --release -p kcoro-cli' # this script builds it first
doc 'cargo build --release -p kcoro-cli --bin kcoro' # the net suite's lb rows build it so
expect 0 '' cargo build -q --release -p kcoro-cli --bin kcoro
doc 'scripts/smoke.sh' # this script
doc 'scripts/miri.sh'
doc 'scripts/stress.sh'
doc 'scripts/stress.sh -n 3' # the whole suite under load; here, that it repeats, counts and stops
expect 0 '^stress: 4 of 4 passed' scripts/stress.sh -n 4 -j 2 -h 1 -- true
expect 1 '^run 1: FAILED \(exit 3\)' scripts/stress.sh -n 2 -h 1 -- sh -c 'exit 3'
doc 'scripts/stress.sh -n 500 -j 5 -- target/tmp/test_bench_asan' # built by cargo test -p kcoro-capi
if [ -x target/tmp/test_bench_asan ]; then
  expect 0 '^stress: 20 of 20 passed' scripts/stress.sh -n 20 -j 5 -- target/tmp/test_bench_asan
else
  echo "note: target/tmp/test_bench_asan not built (cargo test -p kcoro-capi builds it); not stressed here"
fi
if cargo +nightly miri --version >/dev/null 2>&1; then
  echo "note: Miri is installed; scripts/miri.sh is a multi-minute run, not repeated here"
else
  expect 0 'miri is not installed' scripts/miri.sh
fi

echo "== smoke: the kcoro binary"
expect 0 'exactly-once check: PASS' kcoro demo --seconds 0.3 --stage1 unlimited --stage2 conflated
expect 1 'exactly-once check: FAIL' kcoro demo --seconds 0.3 --inject-fault lose
expect 0 'ring' kcoro demo spawn
expect 2 'unexpected argument|unknown|invalid' kcoro demo --no-such-flag
doc 'cargo run --release -p kcoro-cli -- localadapter-demo --flows 4 --trace trace.jsonl'
expect 0 'flows' cargo run -q --release -p kcoro-cli -- localadapter-demo --flows 4 --trace "$tmp/trace.jsonl"
expect 0 '"flow' head -c 2000 "$tmp/trace.jsonl"

echo "== smoke: plugins"
doc 'kcoro plugin info target/debug/libkcoro_plugin_echo.so'
expect 0 'echo-rust' kcoro plugin info "$echo_lib"
doc 'kcoro plugin call target/debug/libkcoro_plugin_echo.so echo --data hello'
expect 0 '^hello' kcoro plugin call "$echo_lib" echo --data hello
doc 'kcoro plugin call target/debug/libkcoro_plugin_echo.so echo --data hello --header k=v'
expect 0 '^hello' kcoro plugin call "$echo_lib" echo --data hello --header k=v
printf '{"hello":"file"}' >"$tmp/request.json"
doc 'kcoro plugin call LIB echo --data @request.json'
expect 0 '"hello":"file"' kcoro plugin call "$echo_lib" echo --data @"$tmp/request.json"
expect_stdin 0 '^from stdin' 'from stdin' kcoro plugin call "$echo_lib" echo --data -
doc 'kcoro plugin stream target/debug/libkcoro_plugin_echo.so stream --data 3'
doc 'kcoro plugin stream LIB stream --data 3'
expect 0 '^frame-3' kcoro plugin stream "$echo_lib" stream --data 3
expect 1 'Err|boom' kcoro plugin call "$echo_lib" error

doc 'printf '"'"'a\nb\n'"'"' | kcoro plugin bidi target/debug/libkcoro_plugin_echo.so bidi'
expect_stdin 0 '^b$' $'a\nb\n' kcoro plugin bidi "$echo_lib" bidi
doc 'cargo build -p kcoro-test-nylon02 && kcoro plugin info target/debug/libkcoro_test_nylon02.so'
expect 0 '^layout: +nylon-0.2' kcoro plugin info target/debug/libkcoro_test_nylon02.so
expect 0 '^ny' kcoro plugin call target/debug/libkcoro_test_nylon02.so echo --data ny
expect 0 '^POST /users\?' kcoro plugin stream "$echo_lib" describe --method POST --path /users --header k=v
doc 'kcoro completions bash > /etc/bash_completion.d/kcoro'
expect 0 'complete' kcoro completions bash
expect 0 '^kcoro [0-9]' kcoro --version

echo "== smoke: distributed channels"
sock="$tmp/kcoro.sock"
doc 'kcoro ipc serve --listen unix:/tmp/kcoro.sock --channel jobs:buffered:1024 --channel events:unlimited'
kcoro ipc serve --listen "unix:$sock" --channel jobs:buffered:1024 --channel events:unlimited --seconds 30 >"$tmp/serve.out" 2>&1 &
serve_pid=$!
# Ready once it says so: the socket file exists from the bind, a moment before the line.
for _ in $(seq 200); do grep -q '^serving ' "$tmp/serve.out" && break; sleep 0.05; done
expect 0 '^serving jobs\(buffered\), events\(unlimited\)' cat "$tmp/serve.out"
doc 'kcoro ipc send unix:/tmp/kcoro.sock jobs --data hello'
expect 0 'sent 1 to jobs' kcoro ipc send "unix:$sock" jobs --data hello
doc 'seq 3 | kcoro ipc send unix:/tmp/kcoro.sock jobs --lines'
expect_stdin 0 'sent 3 to jobs' $'1\n2\n3\n' kcoro ipc send "unix:$sock" jobs --lines
doc 'kcoro ipc ls unix:/tmp/kcoro.sock'
expect 0 '^jobs +buffered +1024 +4 ' kcoro ipc ls "unix:$sock"
doc 'kcoro ipc recv unix:/tmp/kcoro.sock jobs --count 4'
expect 0 '^3$' kcoro ipc recv "unix:$sock" jobs --count 4
expect 1 'then operation timed out' kcoro ipc recv "unix:$sock" jobs --count 1 --timeout 0.2
doc 'kcoro ipc send shm:/tmp/kcoro.sock events --data ring'
expect 0 'sent 1 to events' kcoro ipc send "shm:$sock" events --data ring
doc 'kcoro ipc recv shm:/tmp/kcoro.sock events --count 1'
expect 0 '^ring$' kcoro ipc recv "shm:$sock" events --count 1
expect 1 'No such file|cannot|refused' kcoro ipc ls "unix:$tmp/nobody.sock"
# Honest exits: a send that cannot be delivered says which were not; a receive whose
# server dies fails; SIGTERM to a server removes its socket file.
small="$tmp/small.sock"
kcoro ipc serve --listen "unix:$small" --channel small:buffered:2 >"$tmp/small.out" 2>&1 &
small_pid=$!
# Serving, not only bound: the sends below have 0.3 s each.
for _ in $(seq 200); do grep -q '^serving ' "$tmp/small.out" && break; sleep 0.05; done
expect_stdin 1 '^sent 2 to small; lines 3-5 not delivered' $'1\n2\n3\n4\n5\n' kcoro ipc send "unix:$small" small --lines --timeout 0.3
expect 0 '^received 2 from small' kcoro ipc recv "unix:$small" small --count 2
# The server is killed once the receive is open: when it has printed the value sent before
# it (on a busy machine a fixed wait could end before the receive had even connected).
expect 0 'sent 1 to small' kcoro ipc send "unix:$small" small --data before-the-kill
kcoro ipc recv "unix:$small" small --timeout 30 >"$tmp/lost.out" 2>&1 &
recv_pid=$!
for _ in $(seq 600); do grep -q '^before-the-kill$' "$tmp/lost.out" && break; sleep 0.05; done
kill -KILL "$small_pid"
wait "$small_pid" 2>/dev/null
wait "$recv_pid"
recv_rc=$?
expect 1 '^received 1 from small: then the connection was lost' bash -c "cat '$tmp/lost.out'; exit $recv_rc"
rm -f "$small" # the killed server's socket file: wait for the new server's own
kcoro ipc serve --listen "unix:$small" --channel small:buffered:2 >/dev/null 2>&1 &
small_pid=$!
for _ in $(seq 100); do [ -S "$small" ] && break; sleep 0.05; done
kill -TERM "$small_pid"
wait "$small_pid"
serve_rc=$?
expect 0 '^exit 0, socket removed' bash -c "[ $serve_rc = 0 ] && [ ! -e '$small' ] && echo 'exit 0, socket removed'"

echo "== smoke: proxy"
doc 'kcoro proxy --config examples/proxy/proxy.toml --check'
expect 0 'ok \(1 listeners, 1 pools\)' kcoro proxy --config examples/proxy/proxy.toml --check
printf '[[listener]]\nname = "web"\nbind = "127.0.0.1:0"\npool = "ap"\n' >"$tmp/bad-proxy.toml"
expect 2 'bad-proxy.toml:4:8: no pool named "ap"' kcoro proxy --check --config "$tmp/bad-proxy.toml"
# The example live, on free ports, its pool first pointed at a closed port and then, by a
# SIGHUP reload, at the proxy's own metrics endpoint: a request through it needs no other
# server, and its answer counts the very connection it came through.
sed -e 's/127.0.0.1:8080/127.0.0.1:0/' -e 's/127.0.0.1:9465/127.0.0.1:0/' \
  -e 's/^backends = .*/backends = ["127.0.0.1:9"]/' examples/proxy/proxy.toml >"$tmp/proxy.toml"
doc 'kcoro proxy --config examples/proxy/proxy.toml'
doc 'kcoro proxy --config examples/proxy/proxy.toml --monitor unix:/tmp/proxy.sock'
kcoro proxy --config "$tmp/proxy.toml" --monitor "unix:$tmp/proxy.sock" >"$tmp/proxy.out" 2>&1 &
proxy_pid=$!
for _ in $(seq 200); do grep -q '^metrics:' "$tmp/proxy.out" && break; sleep 0.05; done
listen=$(sed -n 's/^listening: web on //p' "$tmp/proxy.out")
metrics=$(sed -n 's|^metrics: http://\(.*\)/metrics$|\1|p' "$tmp/proxy.out")
sed -i "s/\"127.0.0.1:9\"/\"$metrics\"/" "$tmp/proxy.toml"
kill -HUP "$proxy_pid"
for _ in $(seq 200); do grep -q '^reloaded' "$tmp/proxy.out" && break; sleep 0.05; done
expect 0 '^kcoro_proxy_connections_total\{listener="web"\} 1' \
  bash -c "exec 3<>/dev/tcp/${listen%:*}/${listen##*:} && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3"
doc 'kcoro chanmon unix:/tmp/proxy.sock --once'
expect 0 '"name":"proxy accept"' kcoro chanmon "unix:$tmp/proxy.sock" --once
# and the proxy's own counters, with the connection the request above came through
expect 0 '"name":"kcoro_proxy_connections_total",[^}]*"labels":\[\["listener","web"\]\],"value":[1-9]' \
  kcoro chanmon "unix:$tmp/proxy.sock" --once
doc "kcoro chanmon unix:/tmp/proxy.sock --check 'kcoro_proxy_backend_up{pool=\"app\"} == 0 for 5s'"
expect 0 '' kcoro chanmon "unix:$tmp/proxy.sock" --check 'kcoro_proxy_backend_up{pool="app"} == 0 for 5s' \
  --samples 3 --interval 0.1
expect 1 'check crossed: .*kcoro_proxy_connections_total\{listener="web"\}: [1-9]' \
  kcoro chanmon "unix:$tmp/proxy.sock" --check 'kcoro_proxy_connections_total{listener="web"} >= 1' --interval 0.1
kill -TERM "$proxy_pid"
wait "$proxy_pid"
proxy_rc=$?
expect 0 '^stopped: ' bash -c "cat '$tmp/proxy.out'; exit $proxy_rc"

echo "== smoke: chanmon"
doc 'kcoro chanmon --demo --once'
expect 0 '"schema":1.*"demo.ingress"' kcoro chanmon --demo --once
expect 0 '"metrics":\[\{"name":"demo_items_total"' kcoro chanmon --demo --once
doc 'kcoro chanmon --demo --json samples.ndjson --samples 5 --interval 0.2'
expect 0 '' kcoro chanmon --demo --json "$tmp/samples.ndjson" --samples 5 --interval 0.2
expect 0 '^5 ' wc -l "$tmp/samples.ndjson"
doc 'kcoro chanmon --replay samples.ndjson --json'
expect 0 '"source":"demo"' kcoro chanmon --replay "$tmp/samples.ndjson" --json
doc "kcoro chanmon --demo --check 'demo.results:fill>0.9 for 1s' --interval 0.2"
expect 1 'check crossed: demo.results:fill>0.9' kcoro chanmon --demo --check 'demo.results:fill>0.9 for 1s' --interval 0.2
doc "kcoro chanmon --demo --check 'parked_senders>100' --samples 3 --interval 0.2"
expect 0 '' kcoro chanmon --demo --check 'parked_senders>100' --samples 3 --interval 0.2
doc 'kcoro chanmon --demo --prometheus 127.0.0.1:9464 --samples 10 --interval 0.2'
# As printed where the port is free; where something else already listens on it, on a
# free port (the check is that it serves, not which port it got).
if (exec 3<>/dev/tcp/127.0.0.1/9464) 2>/dev/null; then
  echo "note: 127.0.0.1:9464 is taken here; serving on a free port instead"
  expect 0 '^serving http://127.0.0.1:[0-9]+/metrics' kcoro chanmon --demo --prometheus 127.0.0.1:0 --samples 10 --interval 0.2
else
  expect 0 '^serving http://127.0.0.1:9464/metrics' kcoro chanmon --demo --prometheus 127.0.0.1:9464 --samples 10 --interval 0.2
fi
# The demo's supervisor waits on demo.control, which carried its one message at the start.
doc 'kcoro chanmon --demo --check stuck --stuck-after 2s --interval 0.2'
expect 1 'supervisor.*stuck: no sender on demo.control' kcoro chanmon --demo --check stuck --stuck-after 2s --interval 0.2
# The screen: in a real terminal (tmux), until the table shows, then `q`.
doc 'kcoro chanmon --demo'
expect_tui 'demo.results' kcoro chanmon --demo
doc 'kcoro chanmon unix:/tmp/app.sock'
kcoro ipc serve --listen "unix:$tmp/app.sock" --channel jobs:buffered:8 --seconds 30 >/dev/null 2>&1 &
app_pid=$!
for _ in $(seq 100); do [ -S "$tmp/app.sock" ] && break; sleep 0.05; done
expect_tui 'jobs +buf +0/8' kcoro chanmon "unix:$tmp/app.sock"
kill "$app_pid" 2>/dev/null
wait "$app_pid" 2>/dev/null
# The deadlock example: chanmon finds the deadlock, on screen and as a check, and so does
# the program's own runtime (its stderr). `cargo run` execs the example: its pid is ours.
doc 'cargo run --release -p kcoro-cli --example deadlock -- unix:/tmp/deadlock.sock'
cargo run -q --release -p kcoro-cli --example deadlock -- "unix:$tmp/deadlock.sock" >/dev/null 2>"$tmp/deadlock.err" &
deadlock_pid=$!
for _ in $(seq 1200); do [ -S "$tmp/deadlock.sock" ] && break; sleep 0.1; done
doc 'kcoro chanmon unix:/tmp/deadlock.sock'
expect_tui 'DEADLOCK for .*: 2 coroutines wait for each other' kcoro chanmon "unix:$tmp/deadlock.sock"
doc 'kcoro chanmon unix:/tmp/deadlock.sock --check deadlock'
expect 1 '"b" waits on recv on right' kcoro chanmon "unix:$tmp/deadlock.sock" --check deadlock
for _ in $(seq 100); do grep -q '^kcoro: deadlock' "$tmp/deadlock.err" && break; sleep 0.1; done
expect 0 '"a" waits on recv on left' cat "$tmp/deadlock.err"
kill "$deadlock_pid" 2>/dev/null
wait "$deadlock_pid" 2>/dev/null
kill "$serve_pid" 2>/dev/null
wait "$serve_pid" 2>/dev/null

echo "== smoke: the SDK examples build and load"
doc 'cc -std=c11 -O2 -fPIC -shared -Isdk/c -o libecho_c.so sdk/c/examples/echo.c -lpthread'
expect 0 '' cc -std=c11 -O2 -fPIC -shared -Isdk/c -o "$tmp/libecho_c.so" sdk/c/examples/echo.c -lpthread
expect 0 'echo-c' kcoro plugin info "$tmp/libecho_c.so"
doc 'cc -std=c11 -O2 -fPIC -shared -Isdk/c -o libv1_c.so sdk/c/examples/v1_only.c -lpthread'
expect 0 '' cc -std=c11 -O2 -fPIC -shared -Isdk/c -o "$tmp/libv1_c.so" sdk/c/examples/v1_only.c -lpthread
doc 'kcoro plugin info libecho_c.so'
doc 'kcoro plugin --abi kcoro-v1 call libv1_c.so echo --data hi'
expect 0 '^hi' kcoro plugin --abi kcoro-v1 call "$tmp/libv1_c.so" echo --data hi
expect 1 'kcoro-v1, nylon-0.1' kcoro plugin call "$tmp/libv1_c.so" echo --data hi
# An entry a 6-slot plugin serves only in handle_raw: reached with --raw alone.
doc 'kcoro plugin call --raw LIB fast_echo --data hi'
expect 0 '' cc -std=c11 -O2 -fPIC -shared -DNY_SLOTS=6 -Itests/plugins/c -o "$tmp/libc_nylon_6slot.so" tests/plugins/c/early.c -lpthread
expect 0 '^hi' kcoro plugin call --raw "$tmp/libc_nylon_6slot.so" fast_echo --data hi
expect 1 'status: Unsupported' kcoro plugin call "$tmp/libc_nylon_6slot.so" fast_echo --data hi
doc 'c++ -std=c++17 -O2 -fPIC -shared -Isdk/c -Isdk/cpp -o libecho_cpp.so sdk/cpp/examples/echo.cpp -lpthread'
expect 0 '' c++ -std=c++17 -O2 -fPIC -shared -Isdk/c -Isdk/cpp -o "$tmp/libecho_cpp.so" sdk/cpp/examples/echo.cpp -lpthread
expect 0 '^frame-2' kcoro plugin stream "$tmp/libecho_cpp.so" stream --data 2
doc 'cc -std=c11 -O2 -fPIC -shared -Isdk/c -o libabi0.so sdk/c/examples/bad/abi0.c'
expect 0 '' cc -std=c11 -O2 -fPIC -shared -Isdk/c -o "$tmp/libabi0.so" sdk/c/examples/bad/abi0.c
expect 1 'ABI|abi' kcoro plugin info "$tmp/libabi0.so"
doc 'cd sdk/go'
doc 'go build -buildmode=c-shared -o libecho_go.so ./examples/echo'
doc 'go build -buildmode=c-shared -o libecho_go_lowlevel.so ./examples/lowlevel'
doc 'go vet ./... && go test ./...' # scripts/test.sh runs these
doc 'kcoro plugin --abi kcoro-v1 call libecho_go_lowlevel.so echo --data low' # run below
if command -v go >/dev/null 2>&1; then
  expect 0 '' bash -c "cd sdk/go && go build -buildmode=c-shared -o '$tmp/libecho_go.so' ./examples/echo"
  expect 0 '^go-echo' kcoro plugin call "$tmp/libecho_go.so" echo --data go-echo
  expect 0 '' bash -c "cd sdk/go && go build -buildmode=c-shared -o '$tmp/libecho_go_lowlevel.so' ./examples/lowlevel"
  expect 0 '^low' kcoro plugin --abi kcoro-v1 call "$tmp/libecho_go_lowlevel.so" echo --data low
else
  echo "note: go not installed; skipping the Go SDK build commands"
fi

doc 'cc -std=c11 -O2 -fPIC -shared -Iinclude -o libzring.so sdk/c/examples/zring.c -lpthread'
expect 0 '' cc -std=c11 -O2 -fPIC -shared -Iinclude -o "$tmp/libzring.so" sdk/c/examples/zring.c -lpthread
expect 0 'kc_zring_backend_ops' nm -D --defined-only "$tmp/libzring.so"

echo "== smoke: kcheck"
doc 'cargo run --release -p kcoro-cli --bin kcheck -- localadapter --quick'
expect 0 '^conclusion: pass' cargo run -q --release -p kcoro-cli --bin kcheck -- localadapter --quick
doc 'kcheck localadapter --quick'
expect 0 '^conclusion: pass' kcheck localadapter --quick
# The three documented --full forms in one run: the binary by its path, a start seed, a
# report file (one profile: what is checked is that each option works, not the audit).
doc 'cargo run --release -p kcoro-cli --bin kcheck -- localadapter --full --out report.json'
doc 'kcheck localadapter --full --out report.json'
doc 'kcheck localadapter --full --start-seed 500 --profiles 40'
doc 'cargo build --release -p kcoro-cli && target/release/kcheck localadapter --full'
expect 0 '^conclusion: pass' target/release/kcheck localadapter --full --start-seed 500 --profiles 1 --out "$tmp/report.json"
expect 0 '"gates"' head -c 100000 "$tmp/report.json"
doc 'cargo run --release -p kcoro-cli --bin kcheck -- localadapter --quick --mutant local_adapter_duplicates_chunk'
expect 1 'caught by' cargo run -q --release -p kcoro-cli --bin kcheck -- localadapter --quick --mutant local_adapter_duplicates_chunk
doc 'kcheck localadapter --quick --mutant local_adapter_wrong_flow_stream_mapping'
expect 1 'caught by' kcheck localadapter --quick --mutant local_adapter_wrong_flow_stream_mapping
expect 2 'unexpected argument|unknown|invalid' kcheck localadapter --quick --no-such-flag
doc 'cargo run --release -p kcoro-cli --bin kcheck -- codegen --quick'
expect 0 '^conclusion: pass' kcheck codegen --quick --profiles 1 --work-dir "$root/target/kcheck-codegen"

echo "== smoke: examples"
doc 'cargo run --release -p kcoro --example echo_server'
expect 0 '^echo_server: .* echoed exactly' cargo run -q --release -p kcoro --example echo_server
doc 'cargo run --release -p kcoro --example pipeline'
expect 0 '^pipeline: .* summed exactly' cargo run -q --release -p kcoro --example pipeline
doc 'cargo run --release -p kcoro --example scope'
expect 0 '^scope: lengths' cargo run -q --release -p kcoro --example scope
doc 'cargo run --release -p kcoro --example actor'
expect 0 '^actor: ' cargo run -q --release -p kcoro --example actor
doc 'cargo run --release -p kcoro --example sim_search'
expect 0 'fails the same way again' cargo run -q --release -p kcoro --example sim_search
doc 'cargo run --release -p kcoro --example xworker_pingpong'
expect 0 'ns' cargo run -q --release -p kcoro --example xworker_pingpong

echo "== smoke: async crates on coroutines (docs/ASYNC.md), with small counts"
doc 'cargo run --release -p kcoro-bench --example tls_echo'
expect 0 '^tls_echo: 20 connections x 20 messages echoed exactly over TLS 1\.3 \(TLS13_' cargo run -q -p kcoro-bench --example tls_echo -- 20 20
doc 'cargo run --release -p kcoro-bench --example ws_echo'
expect 0 '^ws_echo: 20 connections x 20 messages \(text and binary\) echoed exactly, 20 close handshakes' cargo run -q -p kcoro-bench --example ws_echo -- 20 20
doc 'cargo run --release -p kcoro-bench --example reqwest_fanout'
expect 0 '^reqwest_fanout: 1000 GETs from 200 coroutines answered and checked' cargo run -q -p kcoro-bench --example reqwest_fanout -- 200 5

echo "== smoke: kcoro-bench, every suite, one case each (starts and prints a row)"
bench() { # bench SUITE CASE: the suite's quickest setting for one case, kcoro only
  expect 0 "^$2 +kcoro " cargo run -q -p kcoro-bench -- "$1" --quick --case "$2" --impl kcoro
}
doc 'cargo run --release -p kcoro-bench -- runtime'
doc 'cargo run --release -p kcoro-bench -- runtime --case scope_spawn_join_100 --case actor_tell --case actor_ask'
bench runtime actor_tell
doc 'cargo run --release -p kcoro-bench -- runtime --quick --impl kcoro --case scope_spawn_join_100'
doc 'cargo run --release -p kcoro-bench -- runtime --quick --case scope_spawn_join_100'
doc 'cargo run --release -p kcoro-bench -- runtime --quick --impl kcoro --case yield'
bench runtime yield
expect 0 '^scope_spawn_join_100 +kcoro .*[0-9]' cargo run -q -p kcoro-bench -- runtime --quick --impl kcoro --case scope_spawn_join_100
doc 'cargo run --release -p kcoro-bench -- runtime --quick --impl kcoro --case spawn_join --case pingpong_park --case scope_spawn_join_100'
expect 0 '^spawn_join +kcoro .*[0-9]' cargo run -q -p kcoro-bench -- runtime --quick --impl kcoro --case spawn_join
doc 'cargo run --release -p kcoro-bench -- chan'
bench chan spsc_1024
doc 'cargo run --release -p kcoro-bench -- select'
bench select "$(cargo run -q -p kcoro-bench -- list | awk '$1 == "select" {print $2}')"
doc 'cargo run --release -p kcoro-bench -- plugin'
bench plugin "$(cargo run -q -p kcoro-bench -- list | awk '$1 == "plugin" {print $2}')"
doc 'cargo run --release -p kcoro-bench -- adapter'
bench adapter "$(cargo run -q -p kcoro-bench -- list | awk '$1 == "adapter" {print $2}')"
doc 'cargo run --release -p kcoro-bench -- zcopy'
bench zcopy msg_64k
doc 'cargo run --release -p kcoro-bench -- ipc'
bench ipc stream_64
doc 'cargo run --release -p kcoro-bench -- capi'
bench capi spsc_1024_4b
doc 'cargo run --release -p kcoro-bench -- net'
bench net http_1w_c10
doc 'cargo run --release -p kcoro-bench -- net --case http_1w_c100 --case http_2w_c100 --case https_1w_c10 --case https_1w_c100 --case https_1w_c1000 --case https_2w_c10 --case https_2w_c100 --case https_2w_c1000'
if command -v wrk >/dev/null 2>&1; then # scripts/test.sh installs it where it can
  bench net https_1w_c10
else
  echo "note: wrk not installed; the https rows need it, not running https_1w_c10"
fi
doc 'cargo run --release -p kcoro-bench -- net --impl kcoro --impl haproxy --impl nginx --case lb_1w_c10 --case lb_1w_c100 --case lb_1w_c1000 --case lb_2w_c10 --case lb_2w_c100 --case lb_2w_c1000 --case lb1m_1w_c10 --case lb1m_2w_c10'
if command -v wrk >/dev/null 2>&1; then # kcoro's row only: HAProxy and nginx are not CI's to install
  bench net lb_1w_c10
else
  echo "note: wrk not installed; the lb rows need it, not running lb_1w_c10"
fi
doc 'cargo run --release -p kcoro-bench -- compat'
bench compat wait_ready
doc 'cargo run --release -p kcoro-bench -- compat --case reqwest_c1 --case reqwest_c10 --case reqwest_c100 --case reqwest_c1000'
bench compat reqwest_c10
doc 'cargo run --release -p kcoro-bench -- nats'
if nats_server; then
  bench nats core_64
else
  expect 0 '^note: nats-server not found' cargo run -q -p kcoro-bench -- nats --quick
fi
expect 0 '^runtime ' cargo run -q -p kcoro-bench -- list

echo "== smoke: the C API (libkcoro)"
doc 'scripts/install-capi.sh /opt/kcoro'
expect 0 '^installed libkcoro' scripts/install-capi.sh "$tmp/kcoro-prefix"
doc 'export PKG_CONFIG_PATH=/opt/kcoro/lib/pkgconfig'
expect 0 "^-I$tmp/kcoro-prefix/include" env PKG_CONFIG_PATH="$tmp/kcoro-prefix/lib/pkgconfig" pkg-config --cflags kcoro
doc 'cc prog.c $(pkg-config --cflags --libs kcoro) -o prog'
cp examples/c/pipeline.c "$tmp/prog.c"
expect 0 '' bash -c "cd '$tmp' && export PKG_CONFIG_PATH='$tmp/kcoro-prefix/lib/pkgconfig' && cc prog.c \$(pkg-config --cflags --libs kcoro) -o prog"
expect 0 '^pipeline: total 9999900000 ' "$tmp/prog"
doc 'make -C examples/c PREFIX=/opt/kcoro run'
expect 0 '^select: cancelled after' make -C examples/c PREFIX="$tmp/kcoro-prefix" run
expect 0 '^scope_actor: sum 500500 of 1000 messages, on_done called 1 time' examples/c/scope_actor
make -s -C examples/c PREFIX="$tmp/kcoro-prefix" clean
doc 'cargo test -p kcoro-capi' # scripts/test.sh's `cargo test --workspace` runs these tests

echo "== smoke: kcoro-nats (docs/NATS.md)"
doc 'cargo run --release -p kcoro-nats --example work_queue'
if nats_server; then
  expect 0 '^consumed 1000 jobs' cargo run -q -p kcoro-nats --example work_queue
  # Across hosts, here on one: a server of our own, consumers first, then the producer.
  # On a port the server picks itself (`-p -1`), read from its log once it is ready: no
  # window in which another process could take a port found free.
  "$nats_bin" -a 127.0.0.1 -p -1 -js -sd "$tmp/nats-store" >"$tmp/nats.log" 2>&1 &
  nats_pid=$!
  for _ in $(seq 200); do grep -q 'Server is ready' "$tmp/nats.log" && break; sleep 0.05; done
  nats_port=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/nats.log")
  nats_url="nats://127.0.0.1:$nats_port"
  doc 'cargo run --release -p kcoro-nats --example work_queue -- --url nats://127.0.0.1:4222 --consume'
  cargo run -q -p kcoro-nats --example work_queue -- --url "$nats_url" --consume >"$tmp/consume.out" 2>&1 &
  consume_pid=$!
  sleep 1
  doc 'cargo run --release -p kcoro-nats --example work_queue -- --url nats://127.0.0.1:4222 --produce 1000'
  expect 0 '^produced 1000 jobs' cargo run -q -p kcoro-nats --example work_queue -- --url "$nats_url" --produce 1000
  wait "$consume_pid"
  expect 0 '^consumed 1000 jobs' cat "$tmp/consume.out"
  kill "$nats_pid" 2>/dev/null
  wait "$nats_pid" 2>/dev/null
else
  expect 0 '^note: nats-server not found' cargo run -q -p kcoro-nats --example work_queue
  doc 'cargo run --release -p kcoro-nats --example work_queue -- --url nats://127.0.0.1:4222 --consume'
  doc 'cargo run --release -p kcoro-nats --example work_queue -- --url nats://127.0.0.1:4222 --produce 1000'
  echo "note: nats-server not found; skipping the multi-host commands"
fi

echo "== smoke: kcoro-bench and kcoro-nats, run above in the dev profile, compile the same code in release"
# A `cfg(debug_assertions)` would make the release build compile code the dev build does
# not; none may appear (grep exits 1: no match).
expect 1 '' grep -rn debug_assertions bench/src bench/examples adapters/nats/src adapters/nats/examples

echo "== smoke: every documented command is covered"
# Commands are the lines of ```sh/```bash/```console blocks, and inline `cargo ...` spans.
documented() {
  for f in README.md docs/*.md sdk/*/README.md; do
    awk '/^```/ { if (inb) { inb = 0; next } if ($0 ~ /^```(sh|bash|console|shell)[[:space:]]*$/) inb = 1; next }
         inb && !/^[[:space:]]*(#|$)/ { print }' "$f"
    grep -oE '`(cargo (run|build)|scripts/)[^`]*`' "$f" | tr -d '`'
  done
}
while IFS= read -r line; do
  cmd=$(normalise "$line")
  found=0
  for c in "${covered[@]}"; do
    if [ "$c" = "$cmd" ]; then
      found=1
      break
    fi
  done
  if [ "$found" = 0 ]; then
    echo "FAIL documented but not run by scripts/smoke.sh: $cmd"
    failed "documented but not run by scripts/smoke.sh: $cmd" ""
  fi
done < <(documented | sort -u)

if [ "$failures" != 0 ]; then
  echo "== smoke: what failed (each in full above)"
  printf '%s\n' "${failed_summaries[@]}" | grep -v '^$'
fi
echo "== smoke: $failures failure(s) in $((SECONDS - started)) s"
[ "$failures" = 0 ]
