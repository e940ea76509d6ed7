#!/usr/bin/env bash
# The public HTTP cache test suite (http-cache-tests, the package behind cache-tests.fyi, RFC 9111)
# against Switchyard's cache plugin and against nginx's proxy_cache, in one run, both in front of
# the suite's own origin server. Everything listens on 127.0.0.1 only.
#
# The suite is installed into .suite/ here (gitignored) on first use: it depends on npm@6, so it is
# not a project dependency, and the shared node_modules is never touched. `npm run build` first
# (Switchyard runs from dist/). nginx is /usr/sbin/nginx, run unprivileged under a temporary prefix.
#
# usage: bench/cache-conformance/run.sh        (env: SWITCHYARD_ENGINE=undici|http-proxy, KEEP=1
#        keeps the temporary directory with the logs, SUITE_VERSION to try another release)
# writes: results/switchyard.json and results/nginx.json (the suite's results format, as in its
#         results/*.json), results/summary.json (counts as cache-tests.fyi shows them)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
SUITE_VERSION=${SUITE_VERSION:-0.4.5}
SUITE=$HERE/.suite/node_modules/http-cache-tests
NGINX=${NGINX:-/usr/sbin/nginx}
OUT=$(mktemp -d /tmp/switchyard-conformance-XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "kept $OUT" >&2; else rm -rf "$OUT"; fi
}
trap cleanup EXIT

installed=$(node -p 'try { require(process.argv[1]).version } catch { "" }' "$SUITE/package.json" 2>/dev/null || true)
if [ "$installed" != "$SUITE_VERSION" ]; then
  echo "installing http-cache-tests@$SUITE_VERSION into $HERE/.suite" >&2
  npm install --prefix "$HERE/.suite" --no-audit --no-fund "http-cache-tests@$SUITE_VERSION" >&2
fi
[ -f "$ROOT/dist/bin/switchyard.js" ] || { echo "dist/ is missing: npm run build first" >&2; exit 1; }

free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }
wait_for() { # URL LOG: until URL answers, or fail with LOG
  for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "$1 did not answer; its log:" >&2; cat "$2" >&2; exit 1
}

# The suite's origin (server/server.mjs) takes its settings from npm's config variables.
ORIGIN_PORT=$(free_port)
(cd "$SUITE" && npm_config_protocol=http npm_config_port="$ORIGIN_PORT" npm_config_pidfile="$OUT/origin.pid" \
  exec node --no-warnings --import "$HERE/loopback.mjs" server/server.mjs) > "$OUT/origin.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$ORIGIN_PORT/" "$OUT/origin.log"

SWITCHYARD_PORT=$(free_port)
CONFORMANCE_DIR=$OUT ORIGIN_URL=http://127.0.0.1:$ORIGIN_PORT \
  node "$ROOT/dist/bin/switchyard.js" start --config "$HERE/switchyard.yaml" --port "$SWITCHYARD_PORT" --no-watch > "$OUT/switchyard.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$SWITCHYARD_PORT/health" "$OUT/switchyard.log"

NGINX_PORT=$(free_port)
mkdir -p "$OUT/nginx/tmp" "$OUT/nginx/cache"
sed -e "s/@NGINX_PORT@/$NGINX_PORT/" -e "s/@ORIGIN_PORT@/$ORIGIN_PORT/" "$HERE/nginx.conf" > "$OUT/nginx/nginx.conf"
"$NGINX" -p "$OUT/nginx/" -c "$OUT/nginx/nginx.conf" -e "$OUT/nginx/error.log" &
PIDS+=($!)
wait_for "http://127.0.0.1:$NGINX_PORT/" "$OUT/nginx/error.log"

# The suite's CLI (cli.mjs) reads its base URL and test id from npm's config variables too; an
# empty id runs every test and prints the results as JSON.
run_suite() { # NAME PORT
  echo "running the suite against $1" >&2
  (cd "$SUITE" && npm_config_base="http://127.0.0.1:$2" npm_config_id= npm_package_config_id= \
    node --no-warnings cli.mjs) > "$OUT/$1.json"
  node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$OUT/$1.json" \
    || { echo "the suite's output for $1 is not JSON:" >&2; head -20 "$OUT/$1.json" >&2; exit 1; }
  mkdir -p "$HERE/results"
  cp "$OUT/$1.json" "$HERE/results/$1.json"
}
run_suite switchyard "$SWITCHYARD_PORT"
run_suite nginx "$NGINX_PORT"

summary=$(node -e '
  const { execFileSync } = require("child_process");
  const [script, suite, dir] = process.argv.slice(1);
  const out = {};
  for (const name of ["switchyard", "nginx"]) out[name] = JSON.parse(execFileSync("node", [script, suite, `${dir}/${name}.json`], { encoding: "utf8" }));
  console.log(JSON.stringify(out, null, 2));
' "$HERE/summarise.mjs" "$SUITE" "$HERE/results")
echo "$summary" > "$HERE/results/summary.json"
echo "$summary"
# The suite's stale-close tests close the connection on purpose: SY_ERR_UPSTREAM_UNREACHABLE is
# expected for those. Any other code is worth a look (KEEP=1 keeps the log).
codes=$(grep -o '"code":"SY_ERR_[A-Z_]*"' "$OUT/switchyard.log" | sort | uniq -c || true)
[ -z "$codes" ] || { echo "error codes Switchyard logged (KEEP=1 keeps $OUT/switchyard.log):" >&2; echo "$codes" >&2; }
