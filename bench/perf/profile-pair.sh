#!/usr/bin/env bash
# Where a configuration's extra CPU goes, natively: the plain route and a configuration under test
# side by side on core 0 (as bench/paired.mjs runs them), each loaded by its own wrk on core 1 with
# Chromium's fetch headers, profiled by `perf record -e cpu-clock` over the measured windows. The
# cpu-clock event is the kernel's timer, not a hardware counter, so it works on this VM, which has
# none; with node's --perf-basic-prof it names JIT code too. Unlike V8's own sampling profiler it
# sees V8's builtins (inline caches, write barriers), the runtime, the collector, libc and the
# kernel. bench/perf/diff.mjs then prints each side's µs a request by kind of code and the symbols
# whose cost differs most; the report is also written to bench/results/<time>-perf-pair-<config>.md.
# `npm run build` first; needs perf (apt-get install linux-perf) and wrk.
# Loopback only; bounded: (WARM + WINDOWS) × 5 s of load.
#
# A caveat on JIT names: --perf-basic-prof only appends to /tmp/perf-PID.map, so code that V8
# frees and whose address later code reuses can be reported under the older name (a run at 0.01
# showed ajv's codegen `canOptimize`, which runs only at start, at 0.33 µs a request). Trust the
# kinds of code and the names that make sense on a request's path; `--perf-prof` with
# `perf inject --jit` tracks moves but needs a jitdump-aware perf.
#
# usage: bench/perf/profile-pair.sh OUTDIR [CONFIG]   (CONFIG: a file under bench/, default
#        configs/tracing.yaml; env as the config reads it, e.g. BENCH_SAMPLE_RATIO=0.01; WARM=8 and
#        WINDOWS=8 windows of 5 s)
set -euo pipefail
OUT=$(mkdir -p "$1" && cd "$1" && pwd); CONFIG=${2:-configs/tracing.yaml}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
WARM=${WARM:-8}; WINDOWS=${WINDOWS:-8}
command -v perf > /dev/null || { echo "perf not found: apt-get install linux-perf" >&2; exit 1; }
command -v wrk > /dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; }
trap cleanup EXIT
cd "$ROOT"

exec {UPIN}< <(exec sleep 3600 2>/dev/null)
PIDS+=($!)
taskset -c 1 node bench/servers/upstream.mjs <&$UPIN > "$OUT/upstream" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$OUT/upstream" ] && break; sleep 0.1; done
export UPSTREAM_URL="http://127.0.0.1:$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).port)' "$OUT/upstream")"
export SWITCHYARD_ENGINE=undici
free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }
start() { # NAME CONFIG: a proxy on core 0, its pid in $OUT/NAME.pid; its port in $PORT
  PORT=$(free_port)
  taskset -c 0 node --perf-basic-prof dist/bin/switchyard.js start --config "bench/$2" --port "$PORT" --no-watch < /dev/null > "$OUT/$1.log" 2>&1 &
  PIDS+=($!); echo $! > "$OUT/$1.pid"
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.2; done
}
start plain switchyard.bench.yaml; PLAIN_PORT=$PORT
start tested "$CONFIG"; TESTED_PORT=$PORT
HEADERS=()
while IFS= read -r line; do HEADERS+=(-H "$line"); done < <(node --input-type=module -e '
  import { CHROMIUM_FETCH } from "./bench/lib/chromium-fetch.mjs";
  for (const [name, value] of Object.entries(CHROMIUM_FETCH)) console.log(`${name}: ${value}`);')
window() { # both loaded at once, each by its own wrk; each run opens new connections, as paired.mjs's do
  taskset -c 1 wrk -t1 -c32 -d5s "${HEADERS[@]}" "http://127.0.0.1:$PLAIN_PORT/" > "$OUT/plain.wrk.$1" &
  local other=$!
  taskset -c 1 wrk -t1 -c32 -d5s "${HEADERS[@]}" "http://127.0.0.1:$TESTED_PORT/" > "$OUT/tested.wrk.$1"
  wait "$other"
}
for i in $(seq "$WARM"); do window "warm$i"; done
for side in plain tested; do
  taskset -c 1 perf record -q -e cpu-clock -F 2000 -p "$(cat "$OUT/$side.pid")" -o "$OUT/$side.perf" > /dev/null 2>&1 &
  PIDS+=($!); echo $! > "$OUT/$side.perf.pid"
done
sleep 1
for i in $(seq "$WINDOWS"); do window "m$i"; done
for side in plain tested; do kill -INT "$(cat "$OUT/$side.perf.pid")"; done
for side in plain tested; do
  while kill -0 "$(cat "$OUT/$side.perf.pid")" 2>/dev/null; do sleep 0.2; done
  awk '/requests in/ {s += $1} END {print s}' "$OUT"/$side.wrk.m* > "$OUT/$side.requests"
  # Symbols resolved now, while the JIT's map (/tmp/perf-PID.map) is there.
  perf report -i "$OUT/$side.perf" --stdio --no-children -g none --sort symbol -F period,sym 2> /dev/null > "$OUT/$side.symbols"
  rm -f "/tmp/perf-$(cat "$OUT/$side.pid").map"
done
REPORT="$ROOT/bench/results/$(date -u +%Y-%m-%dT%H-%M-%SZ)-perf-pair-$(basename "$CONFIG" .yaml).md"
{
  echo "# Where the CPU goes: the plain route against bench/$CONFIG, perf cpu-clock"
  echo
  echo "$(date -u +%FT%TZ), \`bench/perf/profile-pair.sh\` (BENCH_SAMPLE_RATIO=${BENCH_SAMPLE_RATIO:-unset}), both proxies on core 0, wrk -c32 on core 1 with Chromium's fetch, $WARM windows of 5 s of warm-up, $WINDOWS profiled."
  echo
  node "$HERE/diff.mjs" "$OUT"
} | tee "$REPORT"
echo "profile-pair: wrote ${REPORT#"$ROOT"/}"
