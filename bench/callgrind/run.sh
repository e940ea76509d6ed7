#!/usr/bin/env bash
# Instructions per request of Switchyard under callgrind: a figure that, unlike req/s or CPU µs on
# a shared VM, repeats between runs (see CONNS below). Used for costs smaller than wrk's noise
# (issue 3: each balancing algorithm against no plugin). Needs valgrind (apt-get install valgrind);
# `npm run build` first. Loopback only; each run is bounded (keepalive-load.mjs: at most WARM + 20·N
# requests and 30 minutes).
#
# One connection by default: each request then has its event-loop turn to itself. With several,
# how many requests share a turn depends on how fast the load side is (the machine's load), and
# that moved the figure by ±5 % between runs; with one, repeat runs agree within 0.3 %.
#
# usage: bench/callgrind/run.sh LABEL TARGET [PATH]    (env: WARM=20000 N=10000 CONNS=1,
#        NODE_FLAGS for node itself, KEEP=1 to keep the callgrind files, LOAD_HEADERS for the
#        requests' headers as JSON, LOAD_METHOD and LOAD_BODY for requests with a body,
#        VALGRIND_FLAGS for callgrind itself (e.g. `--cache-sim=yes --branch-sim=yes`: simulated
#        cache misses and mispredicted branches, per request), and any variable the config reads,
#        e.g. BENCH_ALGORITHM=round-robin)
#   TARGET: a config file; `preset:NAME` (the preset from its env, UPSTREAM_SERVERS set to the bench
#   upstream); `bare-undici` (bench/servers/undici-proxy.mjs, the floor of issue 10); or `direct`
#   (a second bench upstream answering the load itself: what node:http costs with nothing on top).
#   For the tmdb preset set HEALTH_CHECK_INTERVAL=10000: at its 30 s default, valgrind's slowdown
#   puts a round of health checks inside the window, whose HTTP client objects deoptimise stream
#   code the proxy's hot path shares; recompiling it made that run's figure up to a third higher.
# prints: LABEL instructions/request: <all threads>  main-thread: <the event loop's thread>  (over <requests counted>)
set -euo pipefail
LABEL=$1; TARGET=$2; URLPATH=${3:-/}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
WARM=${WARM:-20000}; N=${N:-10000}; CONNS=${CONNS:-1}
OUT=$(mktemp -d /tmp/switchyard-callgrind-XXXXXX)
cleanup() { kill "${VG:-}" "${UP:-}" "${HOLD:-}" "${HOLD2:-}" "${LOAD_PID:-}" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$OUT"; }
trap cleanup EXIT

# The bench upstream on three ports (the balancer config routes to all three).
# The upstream stops when its stdin closes; the sleep must not hold this script's stderr open.
exec {UPIN}< <(exec sleep 3600 2>/dev/null)
HOLD=$!
UPSTREAM_PORTS=3 node "$ROOT/bench/servers/upstream.mjs" <&$UPIN > "$OUT/upstream" &
UP=$!
for _ in $(seq 100); do [ -s "$OUT/upstream" ] && break; sleep 0.1; done
mapfile -t URLS < <(node -e 'for (const p of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).ports) console.log(`http://127.0.0.1:${p}`)' "$OUT/upstream")
export UPSTREAM_URL=${URLS[0]} UPSTREAM_URL_2=${URLS[1]} UPSTREAM_URL_3=${URLS[2]}
PORT=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')

export UPSTREAM_SERVERS=${URLS[0]} CACHE_DIR=$OUT/cache
case $TARGET in
  bare-undici) COMMAND=("$ROOT/bench/servers/undici-proxy.mjs" "${URLS[0]}") ;;
  direct) COMMAND=("$ROOT/bench/servers/upstream.mjs") ;;
  preset:*) COMMAND=("$ROOT/dist/bin/switchyard.js" start --preset "${TARGET#preset:}" --port "$PORT" --no-watch) ;;
  *) COMMAND=("$ROOT/dist/bin/switchyard.js" start --config "$(realpath "$TARGET")" --port "$PORT" --no-watch) ;;
esac
exec {PROXYIN}< <(exec sleep 3600 2>/dev/null)
HOLD2=$!
valgrind --tool=callgrind ${VALGRIND_FLAGS:-} --separate-threads=yes --instr-atstart=no --callgrind-out-file="$OUT/cg.%p.out" \
  node ${NODE_FLAGS:-} "${COMMAND[@]}" <&$PROXYIN > "$OUT/proxy.log" 2>&1 &
VG=$!
if [ "$TARGET" = bare-undici ] || [ "$TARGET" = direct ]; then
  for _ in $(seq 600); do grep -q '"port"' "$OUT/proxy.log" 2>/dev/null && break; sleep 0.2; done
  PORT=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").split("\n").find((l) => l.includes("\"port\""))).port)' "$OUT/proxy.log")
else
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.2; done
fi

coproc LOAD { exec node "$HERE/keepalive-load.mjs" "$PORT" "$WARM" "$N" "$CONNS" "$URLPATH"; }
exec {FROM_LOAD}<&"${LOAD[0]}"
# The load never pauses (see keepalive-load.mjs); the requests counted are those between the two
# signals, each sent as soon as callgrind has switched instrumentation on or off.
read -r _ <&$FROM_LOAD                                  # "warm"
callgrind_control -i on "$VG" > /dev/null
kill -USR2 "$LOAD_PID"
read -r _ <&$FROM_LOAD                                  # "enough": N answers counted
callgrind_control -i off "$VG" > /dev/null
kill -USR2 "$LOAD_PID"
read -r _ COUNTED FAILED <&$FROM_LOAD                   # "done COUNTED FAILED"
wait "$LOAD_PID" 2>/dev/null || true
callgrind_control -d "$VG" > /dev/null
kill -INT "$VG"; wait "$VG" 2>/dev/null || true
# %.0f, not %d: mawk's %d stops at 2^31, which a long run's totals pass.
total=$(cat "$OUT"/cg.*.out* | awk '/^totals:/ {s += $2} END {printf "%.0f", s}')
main=$(cat "$OUT"/cg.*.out*-01 | awk '/^totals:/ {s += $2} END {printf "%.0f", s}')
echo "$LABEL instructions/request: $((total / COUNTED))  main-thread: $((main / COUNTED))  (over $COUNTED requests)"
# With cache or branch simulation on, every event callgrind counted, main thread, per request.
if [ -n "${VALGRIND_FLAGS:-}" ]; then
  cat "$OUT"/cg.*.out*-01 | awk -v n="$COUNTED" -v label="$LABEL" '/^events:/ {for (i = 2; i <= NF; i++) name[i] = $i}
    /^totals:/ {for (i = 2; i <= NF; i++) sum[i] += $i; last = NF}
    END {line = label " main-thread per request:"; for (i = 2; i <= last; i++) line = line sprintf(" %s=%.1f", name[i], sum[i] / n); print line}'
fi
# Other threads are V8's compiler and GC helpers: a few hundred instructions per request normally.
# Thousands mean a one-off burst (code recompiled after a late deoptimisation, a major GC) fell
# inside the window, which says nothing about the request path: run again.
if [ $(( (total - main) / COUNTED )) -gt 3000 ]; then echo "$LABEL: other threads ran $(( (total - main) / COUNTED )) instructions/request, a compile or GC burst inside the window: run again" >&2; fi
if [ "$FAILED" != 0 ]; then echo "$LABEL: $FAILED of the $COUNTED measured answers were not 2xx: the figure is not a pass-through's" >&2; exit 1; fi
