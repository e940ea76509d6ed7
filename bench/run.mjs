#!/usr/bin/env node
// Switchyard benchmark: the same local upstream, reached directly, through
// bare http-proxy-3, through http-proxy@1, through a bare undici proxy,
// through Switchyard on each engine and through nginx; measured with wrk.
// See bench/README.md for the method.
//
//   node bench/run.mjs            (or: npm run bench, which builds first)
//
// Env: BENCH_SUITE (comma list of passthrough, plugins, cache, tmdb, sse,
//      compression, encodings, body, memory, workers; default all),
//      BENCH_DURATION (s, default 5), BENCH_WARMUP (s, default 2),
//      BENCH_TRACING_WARMUP (s, default 20: the tracing scenarios' warm-up, at least BENCH_WARMUP),
//      BENCH_CONNECTIONS (default 64), BENCH_ROUNDS (default 3),
//      BENCH_SCENARIOS (comma list of wrk scenario names; overrides BENCH_SUITE),
//      BENCH_SSE_STREAMS / BENCH_SSE_EVENTS / BENCH_SSE_INTERVAL (4 / 500 / 10 ms),
//      BENCH_BIG_BODY_MB (1024), BENCH_IDLE_CONNECTIONS (10000),
//      BENCH_PIN=0 (no CPU pinning), BENCH_NGINX (nginx binary path),
//      BENCH_SWITCHYARD_ENTRY (default dist/bin/switchyard.js).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

import zlib from 'node:zlib';
import { aggregateRounds } from './lib/aggregate.mjs';
import { makeCompressibleJson } from './lib/bodies.mjs';
import { wholeNumberFromEnv } from './lib/env.mjs';
import {
  CLK_TCK,
  coreBusyPercent,
  stealPercent,
  cpuMicrosPerRequest,
  processTreeTicks,
  readCoreTimes,
  runnerAndReapedChildrenTicks,
  taskTicksDelta,
} from './lib/cpu.mjs';
import { NGINX, nginxArgs, nginxVersion, prepareNginxDir } from './lib/nginx.mjs';
import {
  getFreePort,
  httpGet,
  installCleanupHandlers,
  parsePortHandshake,
  pinningTool,
  repinProcess,
  spawnTracked,
  stopChild,
  waitForHttp200,
  waitForLine,
} from './lib/processes.mjs';
import { loadSaturated, markdownReport, markdownTable, memoryTable, sseTable, targetsTable } from './lib/report.mjs';
import { runWrk, totalErrors, WRK, WRK_INSTALL_HINT, wrkVersion } from './lib/wrk.mjs';
import { WORKERS_SUITE, WORKERS_TABLE, workersScenarios, workersTarget } from './lib/workers.mjs';
import { runWebProxy, WEB_PROXY_SUITE, webProxyTable } from './lib/web-proxy.mjs';
import {
  closeAll,
  downloadAndDiscard,
  measureSse,
  memoryOf,
  openFilesLimit,
  openIdleConnections,
  percentile,
  stillOpen,
} from './lib/streams.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, '..');
const RESULTS_DIR = path.join(BENCH_DIR, 'results');
const UPSTREAM_BODY_BYTES = 1024;

/** A scenario that cannot run here (missing binary, etc.) — not a failure. */
class Skip extends Error {}

// ---------------------------------------------------------------- settings

function readSettings() {
  return {
    durationSeconds: wholeNumberFromEnv('BENCH_DURATION', 5),
    warmupSeconds: wholeNumberFromEnv('BENCH_WARMUP', 2),
    tracingWarmupSeconds: wholeNumberFromEnv('BENCH_TRACING_WARMUP', 20),
    connections: wholeNumberFromEnv('BENCH_CONNECTIONS', 64),
    rounds: wholeNumberFromEnv('BENCH_ROUNDS', 3),
    only: (process.env.BENCH_SCENARIOS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    suites: readSuites(),
    sseStreams: wholeNumberFromEnv('BENCH_SSE_STREAMS', 4),
    sseEvents: wholeNumberFromEnv('BENCH_SSE_EVENTS', 500),
    sseIntervalMs: wholeNumberFromEnv('BENCH_SSE_INTERVAL', 10),
    idleConnections: wholeNumberFromEnv('BENCH_IDLE_CONNECTIONS', 10_000),
    bigBodyBytes: wholeNumberFromEnv('BENCH_BIG_BODY_MB', 1024) * 1024 * 1024,
    switchyardEntry: path.resolve(ROOT, process.env.BENCH_SWITCHYARD_ENTRY ?? 'dist/bin/switchyard.js'),
  };
}

export const SUITES = ['passthrough', 'plugins', 'cache', 'tmdb', 'tracing', 'sse', 'compression', 'encodings', 'body', 'memory', WORKERS_SUITE, WEB_PROXY_SUITE];

function readSuites() {
  const raw = (process.env.BENCH_SUITE ?? 'all').split(',').map((s) => s.trim()).filter(Boolean);
  if (!raw.length || raw.includes('all')) return [...SUITES];
  const unknown = raw.filter((s) => !SUITES.includes(s));
  if (unknown.length) throw new Error(`BENCH_SUITE: unknown suite(s) ${unknown.join(', ')}; known: all, ${SUITES.join(', ')}`);
  return raw;
}

/**
 * Core split on a 2-core machine: the process under test gets core 0 to
 * itself; wrk and the upstream share core 1 (the "load side"). For `direct`
 * the upstream *is* the process under test, so it moves to core 0.
 * Returns { underTest, load, description } (cores null when unpinned).
 */
function decidePinning() {
  const unpinned = (why) => ({ underTest: null, load: null, description: `none — ${why}` });
  if (process.env.BENCH_PIN === '0') return unpinned('disabled with BENCH_PIN=0');
  if (!pinningTool) return unpinned('taskset not found (install util-linux); results are noisier');
  if (os.availableParallelism() < 2) return unpinned('fewer than 2 cores available');
  for (const core of [0, 1]) {
    const probe = spawnSync(pinningTool, ['-c', String(core), 'true']);
    if (probe.status !== 0) return unpinned(`cannot pin to core ${core} (cpuset restrictions?)`);
  }
  return {
    underTest: 0,
    load: 1,
    description:
      'process under test on core 0 alone; wrk + upstream share core 1 ' +
      '(for `direct`, the upstream is the process under test and moves to core 0)',
  };
}

// ---------------------------------------------------------------- processes

async function startUpstream(pinning) {
  const child = spawnTracked('upstream', process.execPath, [path.join(BENCH_DIR, 'servers/upstream.mjs')], {
    core: pinning.load,
    env: { ...process.env, UPSTREAM_PORTS: '3' },
  });
  const port = await waitForLine(child, parsePortHandshake, 10_000);
  const ports = JSON.parse(child.stdoutLines.find((l) => l.includes('"ports"'))).ports;
  return { child, pid: child.pid, port, url: `http://127.0.0.1:${port}`, urls: ports.map((p) => `http://127.0.0.1:${p}`) };
}

/** Bare http-proxy-3 or http-proxy@1 in a minimal node:http server. */
async function startNodeProxy(library, ctx) {
  const script = path.join(BENCH_DIR, 'servers/node-proxy.mjs');
  const child = spawnTracked(library, process.execPath, [script, library, ctx.upstream.url], {
    core: ctx.pinning.underTest,
  });
  try {
    const port = await waitForLine(child, parsePortHandshake, 10_000);
    return { pid: child.pid, url: `http://127.0.0.1:${port}/`, stop: () => stopChild(child) };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

/** The bare undici proxy (servers/undici-proxy.mjs): the floor for Switchyard's undici engine. */
async function startUndiciProxy(ctx) {
  const script = path.join(BENCH_DIR, 'servers/undici-proxy.mjs');
  const child = spawnTracked('undici', process.execPath, [script, ctx.upstream.url], {
    core: ctx.pinning.underTest,
    cwd: ROOT,
  });
  try {
    const port = await waitForLine(child, parsePortHandshake, 10_000);
    return { pid: child.pid, url: `http://127.0.0.1:${port}/`, stop: () => stopChild(child) };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

/**
 * Switchyard's CLI on bench/switchyard.bench.yaml. We pick a free port and
 * pass it as `--port N` (and PORT=N); readiness is GET /health answering 200
 * within 10 s. Its stdout (the log) goes to a file in a temp dir.
 */
async function startSwitchyard(ctx, engine, { config = 'switchyard.bench.yaml', preset = null, env = {}, tempDir = false } = {}) {
  const entry = ctx.settings.switchyardEntry;
  if (!existsSync(entry)) {
    throw new Skip(`${path.relative(ROOT, entry)} not found — build it with \`npm run build\` (\`npm run bench\` does)`);
  }
  const port = await getFreePort();
  // --no-watch: the bench measures the request path; a config watcher would
  // only add an idle inotify handle, and a reload mid-run would skew a round.
  const source = preset ? ['--preset', preset] : ['--config', path.join(BENCH_DIR, config)];
  const args = [entry, 'start', ...source, '--port', String(port), '--no-watch'];
  // A preset's store (sqlite cache, mappings) lives in a temp dir, never in the repo; so does the
  // log (stdout), one JSON line per request for a preset.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'switchyard-bench-'));
  const child = spawnTracked('switchyard', process.execPath, args, {
    core: ctx.pinning.underTest,
    cwd: tempDir ? dir : ROOT,
    stdoutFile: path.join(dir, 'stdout.log'),
    env: {
      ...process.env,
      UPSTREAM_URL: ctx.upstream.url,
      UPSTREAM_URL_2: ctx.upstream.urls[1],
      UPSTREAM_URL_3: ctx.upstream.urls[2],
      PORT: String(port),
      HOST: '127.0.0.1',
      SWITCHYARD_ENGINE: engine,
      ...(typeof env === 'function' ? env(dir) : env),
    },
  });
  const stop = async () => {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForHttp200(() => `http://127.0.0.1:${port}/health`, { timeoutMs: 10_000, child });
    return { pid: child.pid, port, url: `http://127.0.0.1:${port}/`, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The tmdb preset as its users run it, its API route pointed at the bench upstream. */
function startTmdb(ctx) {
  return startSwitchyard(ctx, 'undici', {
    preset: 'tmdb',
    tempDir: true,
    env: (dir) => ({ UPSTREAM_TYPE: 'tmdb-api', UPSTREAM_SERVERS: ctx.upstream.url, CACHE_DIR: path.join(dir, 'cache') }),
  });
}

const AI_TOKEN = 'bench-admin-token';

/** The ai-gateway preset with one mapping /bench → the bench upstream, added through its admin API. */
async function startAiGateway(ctx) {
  const target = await startSwitchyard(ctx, 'undici', {
    preset: 'ai-gateway',
    tempDir: true,
    env: (dir) => ({ ADMIN_TOKEN: AI_TOKEN, STORE_URL: `sqlite://${path.join(dir, 'store.sqlite')}` }),
  });
  try {
    const res = await fetch(`${target.url}api/mappings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${AI_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prefix: '/bench', target: ctx.upstream.url }),
      signal: AbortSignal.timeout(5000),
    });
    if (res.status !== 201) throw new Error(`POST /api/mappings answered ${res.status}: ${await res.text()}`);
    return target;
  } catch (err) {
    await target.stop();
    throw err;
  }
}

async function startNginx(ctx, options = {}) {
  if (!NGINX) throw new Skip('nginx not installed (Debian/Ubuntu: apt-get install -y nginx)');
  const port = await getFreePort();
  const nginxDir = prepareNginxDir({ port, upstreamPort: ctx.upstream.port, ...options });
  const child = spawnTracked('nginx', NGINX, nginxArgs(nginxDir), { core: ctx.pinning.underTest });
  const stop = async () => {
    await stopChild(child);
    nginxDir.cleanup();
  };
  try {
    await waitForHttp200(() => `http://127.0.0.1:${port}/health-probe`, { timeoutMs: 10_000, child });
    // child.pid is the master; the worker doing the work is its child, which
    // processTreeTicks() includes.
    return { pid: child.pid, url: `http://127.0.0.1:${port}/`, stop };
  } catch (err) {
    const log = existsSync(path.join(nginxDir.dir, 'error.log'))
      ? readFileSync(path.join(nginxDir.dir, 'error.log'), 'utf8').slice(-2000)
      : '';
    await stop();
    throw new Error(`${err.message}\nnginx error.log:\n${log}`);
  }
}

// Each wrk scenario: name, suites it is reported in, start(ctx) → target, and
// optionally `path` (default /), `check` (the sanity check before measuring,
// default: 1 KiB JSON), `wrk` ({ headers, script }), `bodyBytes` (for MB/s).
const GZIP = { 'accept-encoding': 'gzip' };
/** What browsers and the usual SDKs send (issue 25). */
const BROWSER = { 'accept-encoding': 'gzip, deflate, br' };
const BROTLI = { 'accept-encoding': 'br' };
const APP_ORIGIN = 'https://app.example.com';
const BROWSER_CORS = { ...BROWSER, origin: APP_ORIGIN };
const ALGORITHMS = ['round-robin', 'weighted', 'least-connections', 'ip-hash', 'latency', 'p2c'];

const PACED_SCRIPT = path.join(BENCH_DIR, 'paced.lua');
/** The bench upstream itself is the target: nothing to start or stop. */
const startDirect = async (ctx) => ({ pid: ctx.upstream.pid, url: `${ctx.upstream.url}/`, stop: async () => {} });
const json1k = { bytes: UPSTREAM_BODY_BYTES, contentType: 'json' };
const cacheHit = { ...json1k, warm: true, headers: { 'x-cache': 'HIT' } };
const json64k = { bytes: 64 * 1024, contentType: 'json' };

/** The balancer preset as its README shows it: CACHE_TTLS and CORS_ORIGINS, compression on (its default). */
function startBalancerPreset(ctx) {
  return startSwitchyard(ctx, 'undici', {
    preset: 'balancer',
    tempDir: true,
    env: { BACKEND_SERVERS: ctx.upstream.url, CACHE_TTLS: '/json64k=300', CORS_ORIGINS: APP_ORIGIN, STORE_URL: 'memory://', LOG_LEVEL: 'warn' },
  });
}

const SCENARIOS = [
  {
    name: 'direct',
    suites: ['passthrough', 'cache'],
    description: 'wrk → upstream (baseline, no proxy)',
    isUpstream: true,
    start: startDirect,
  },
  {
    name: 'http-proxy-3',
    suites: ['passthrough', 'tmdb'],
    description: 'bare http-proxy-3 createProxyServer in node:http',
    start: (ctx) => startNodeProxy('http-proxy-3', ctx),
  },
  {
    name: 'http-proxy@1.18.1',
    suites: ['passthrough'],
    description: 'bare http-proxy (v1) createProxyServer in node:http',
    start: (ctx) => startNodeProxy('http-proxy', ctx),
  },
  {
    name: 'undici',
    suites: ['passthrough', 'tmdb'],
    description: 'bare undici Pool.request() proxy in node:http',
    start: startUndiciProxy,
  },
  {
    name: 'switchyard-http-proxy',
    suites: ['passthrough'],
    description: 'switchyard start --config bench/switchyard.bench.yaml, engine http-proxy',
    start: (ctx) => startSwitchyard(ctx, 'http-proxy'),
  },
  {
    name: 'switchyard-undici',
    suites: ['passthrough', 'plugins', 'cache', 'tmdb', 'tracing'],
    description: 'switchyard start --config bench/switchyard.bench.yaml, engine undici',
    start: (ctx) => startSwitchyard(ctx, 'undici'),
  },
  {
    name: 'nginx',
    suites: ['passthrough', 'cache'],
    description: 'nginx, 1 worker, upstream keepalive 64',
    start: (ctx) => startNginx(ctx),
  },
  // ---- plugins: balancing cost (issue 3)
  ...ALGORITHMS.map((algorithm) => ({
    name: `balancer-${algorithm}`,
    suites: ['plugins'],
    description: `switchyard, bench/configs/balancer.yaml: 3 upstreams (weights 3/2/1), balancer algorithm ${algorithm}`,
    start: (ctx) => startSwitchyard(ctx, 'undici', { config: 'configs/balancer.yaml', env: { BENCH_ALGORITHM: algorithm } }),
  })),
  // ---- tracing cost (issue 28): every request sampled, and one in a hundred
  ...[['tracing-sampled', '1'], ['tracing-1pct', '0.01']].map(([name, ratio]) => ({
    name,
    suites: ['tracing'],
    description: `switchyard, bench/configs/tracing.yaml: the plain route with the tracing plugin at sampleRatio ${ratio}, OTLP/HTTP protobuf to the bench upstream`,
    start: (ctx) => startSwitchyard(ctx, 'undici', { config: 'configs/tracing.yaml', env: { BENCH_SAMPLE_RATIO: ratio } }),
    // A sampled request's code and the export's run once in a hundred requests at 0.01, and V8
    // takes ~15 s of load to settle them: after a 3 s warm-up, 4 s windows of the 1 % proxy went
    // 93, 82, 75, then 52-62 CPU µs/request while the plain route's stayed at 51-62
    // (bench/README.md, "Tracing's warm-up, and paired load").
    warmupSeconds: (settings) => settings.tracingWarmupSeconds,
  })),
  // ---- cache hit from memory (issues 4, 8)
  {
    name: 'switchyard-cache-hit',
    suites: ['cache'],
    description: 'switchyard, bench/configs/cache.yaml (cache plugin, ttl 3600); every request a memory hit',
    start: (ctx) => startSwitchyard(ctx, 'undici', { config: 'configs/cache.yaml' }),
    check: cacheHit,
  },
  {
    name: 'nginx-cache-hit',
    suites: ['cache'],
    description: 'nginx with proxy_cache (200 → 10 min); every request a hit',
    start: (ctx) => startNginx(ctx, { cache: true }),
    check: { ...json1k, warm: true, headers: { 'x-cache-status': 'HIT' } },
  },
  // The same hits at a steady rate below saturation (bench/paced.lua), for latency percentiles;
  // direct-paced is the floor: the bare node:http upstream under the same load.
  {
    name: 'direct-paced',
    suites: ['cache'],
    description: 'as direct, each connection pausing BENCH_PACED_DELAY_MS (8) ms on average between requests',
    isUpstream: true,
    start: startDirect,
    wrk: { script: PACED_SCRIPT },
  },
  {
    name: 'switchyard-cache-hit-paced',
    suites: ['cache'],
    description: 'as switchyard-cache-hit, each connection pausing BENCH_PACED_DELAY_MS (8) ms on average between requests',
    start: (ctx) => startSwitchyard(ctx, 'undici', { config: 'configs/cache.yaml' }),
    check: cacheHit,
    wrk: { script: PACED_SCRIPT },
  },
  {
    name: 'nginx-cache-hit-paced',
    suites: ['cache'],
    description: 'as nginx-cache-hit, each connection pausing BENCH_PACED_DELAY_MS (8) ms on average between requests',
    start: (ctx) => startNginx(ctx, { cache: true }),
    check: { ...json1k, warm: true, headers: { 'x-cache-status': 'HIT' } },
    wrk: { script: PACED_SCRIPT },
  },
  // ---- tmdb preset (issues 8, 10)
  {
    name: 'tmdb-pass-through',
    suites: ['tmdb'],
    description: 'switchyard start --preset tmdb (UPSTREAM_TYPE=tmdb-api → bench upstream), GET /3/movie/550?nocache=1 (cache bypassed)',
    start: startTmdb,
    path: '/3/movie/550?nocache=1',
    check: { ...json1k, headers: { 'x-cache': 'BYPASS' } },
  },
  {
    name: 'tmdb-cache-hit',
    suites: ['tmdb'],
    description: 'switchyard start --preset tmdb, GET /3/movie/550 (warmed: a memory hit)',
    start: startTmdb,
    path: '/3/movie/550',
    check: cacheHit,
  },
  // ---- compression (issue 11): 64 KiB JSON, client accepts gzip
  {
    name: 'switchyard-64k-identity',
    suites: ['compression'],
    description: 'switchyard, no plugin, GET /json64k (64 KiB JSON) with Accept-Encoding: gzip (passes uncompressed)',
    start: (ctx) => startSwitchyard(ctx, 'undici'),
    path: '/json64k',
    wrk: { headers: GZIP },
    check: { bytes: 65536, contentType: 'json', requestHeaders: GZIP },
  },
  {
    name: 'switchyard-64k-gzip',
    suites: ['compression', 'encodings'],
    description: 'switchyard, bench/configs/compression.yaml (compression plugin, defaults: gzip level 6), Accept-Encoding: gzip',
    start: (ctx) => startSwitchyard(ctx, 'undici', { config: 'configs/compression.yaml' }),
    path: '/json64k',
    wrk: { headers: GZIP },
    check: { contentType: 'json', requestHeaders: GZIP, headers: { 'content-encoding': 'gzip' } },
  },
  {
    name: 'nginx-64k-identity',
    suites: ['compression'],
    description: 'nginx, gzip off, GET /json64k with Accept-Encoding: gzip',
    start: (ctx) => startNginx(ctx),
    path: '/json64k',
    wrk: { headers: GZIP },
    check: { bytes: 65536, contentType: 'json', requestHeaders: GZIP },
  },
  {
    name: 'nginx-64k-gzip',
    suites: ['compression'],
    description: 'nginx gzip on (its default gzip_comp_level 1), gzip_types application/json',
    start: (ctx) => startNginx(ctx, { gzip: true }),
    path: '/json64k',
    wrk: { headers: GZIP },
    check: { contentType: 'json', requestHeaders: GZIP, headers: { 'content-encoding': 'gzip' } },
  },
  {
    name: 'nginx-64k-gzip-6',
    suites: ['compression', 'encodings'],
    description: 'nginx gzip on, gzip_comp_level 6 (the plugin\'s level)',
    start: (ctx) => startNginx(ctx, { gzip: true, gzipLevel: 6 }),
    path: '/json64k',
    wrk: { headers: GZIP },
    check: { contentType: 'json', requestHeaders: GZIP, headers: { 'content-encoding': 'gzip' } },
  },
  // ---- compressed cache hits and pass-through encoding (issue 25): the headers real clients send
  {
    name: 'switchyard-64k-hit',
    suites: ['encodings'],
    description: 'switchyard, bench/configs/cache-compression.yaml (cache + compression), GET /json64k without Accept-Encoding: an identity memory hit',
    start: (ctx) => startSwitchyard(ctx, 'undici', { config: 'configs/cache-compression.yaml' }),
    path: '/json64k',
    check: { ...json64k, warm: true, headers: { 'x-cache': 'HIT' } },
  },
  {
    name: 'switchyard-64k-hit-browser',
    suites: ['encodings'],
    description: 'as switchyard-64k-hit, Accept-Encoding: gzip, deflate, br: a hit of the stored brotli variant',
    start: (ctx) => startSwitchyard(ctx, 'undici', { config: 'configs/cache-compression.yaml' }),
    path: '/json64k',
    wrk: { headers: BROWSER },
    check: { contentType: 'json', warm: true, requestHeaders: BROWSER, headers: { 'x-cache': 'HIT', 'content-encoding': 'br' } },
  },
  {
    name: 'switchyard-64k-br',
    suites: ['encodings'],
    description: 'switchyard, bench/configs/compression.yaml (no cache), Accept-Encoding: br: brotli quality 4 per request',
    start: (ctx) => startSwitchyard(ctx, 'undici', { config: 'configs/compression.yaml' }),
    path: '/json64k',
    wrk: { headers: BROTLI },
    check: { contentType: 'json', requestHeaders: BROTLI, headers: { 'content-encoding': 'br' } },
  },
  {
    name: 'balancer-64k-hit',
    suites: ['encodings'],
    description: 'switchyard start --preset balancer (CACHE_TTLS=/json64k=300, CORS_ORIGINS, compression on), GET /json64k, no Accept-Encoding, no Origin',
    start: startBalancerPreset,
    path: '/json64k',
    check: { ...json64k, warm: true, headers: { 'x-cache': 'HIT' } },
  },
  {
    name: 'balancer-64k-hit-browser',
    suites: ['encodings'],
    description: 'as balancer-64k-hit, with Accept-Encoding: gzip, deflate, br and Origin: https://app.example.com',
    start: startBalancerPreset,
    path: '/json64k',
    wrk: { headers: BROWSER_CORS },
    check: { contentType: 'json', warm: true, requestHeaders: BROWSER_CORS, headers: { 'x-cache': 'HIT', 'content-encoding': 'br', 'access-control-allow-origin': APP_ORIGIN } },
  },
  {
    name: 'tmdb-cache-hit-browser',
    suites: ['encodings', 'tmdb'],
    description: 'as tmdb-cache-hit, with Accept-Encoding: gzip, deflate, br',
    start: startTmdb,
    path: '/3/movie/550',
    wrk: { headers: BROWSER },
    check: { ...cacheHit, requestHeaders: BROWSER },
  },
  {
    name: 'tmdb-pass-through-browser',
    suites: ['tmdb'],
    description: 'as tmdb-pass-through, with Accept-Encoding: gzip, deflate, br',
    start: startTmdb,
    path: '/3/movie/550?nocache=1',
    wrk: { headers: BROWSER },
    check: { ...json1k, requestHeaders: BROWSER, headers: { 'x-cache': 'BYPASS' } },
  },
  {
    name: 'switchyard-cache-hit-browser',
    suites: ['cache'],
    description: 'as switchyard-cache-hit, with Accept-Encoding: gzip, deflate, br',
    start: (ctx) => startSwitchyard(ctx, 'undici', { config: 'configs/cache.yaml' }),
    wrk: { headers: BROWSER },
    check: { ...cacheHit, requestHeaders: BROWSER },
  },
  // ---- 1 MiB body pass-through (issue 8)
  ...[
    ['direct-1mib', 'wrk → upstream GET /1mib', (ctx) => ({ pid: ctx.upstream.pid, url: `${ctx.upstream.url}/`, stop: async () => {} }), true],
    ['http-proxy-3-1mib', 'bare http-proxy-3, GET /1mib', (ctx) => startNodeProxy('http-proxy-3', ctx)],
    ['nginx-1mib', 'nginx, GET /1mib', (ctx) => startNginx(ctx)],
    ['switchyard-1mib', 'switchyard (undici engine, no plugin), GET /1mib', (ctx) => startSwitchyard(ctx, 'undici')],
  ].map(([name, description, start, isUpstream]) => ({
    name,
    suites: ['body'],
    description,
    start,
    isUpstream: Boolean(isUpstream),
    path: '/1mib',
    bodyBytes: 1024 * 1024,
    check: { bytes: 1024 * 1024, contentType: 'octet-stream' },
  })),
  // ---- --workers 2 vs 1 on the pass-through scenario (issue 9): bench/lib/workers.mjs
  ...workersScenarios({ benchDir: BENCH_DIR, Skip }),
];

/** Per suite: its wrk scenarios in table order and the scenarios its ratios divide by. */
const WRK_TABLES = {
  passthrough: { title: '1 KiB JSON pass-through', baselines: ['http-proxy-3', 'direct'] },
  plugins: { title: 'Balancing cost (balancer plugin, 3 upstream entries)', baselines: ['switchyard-undici'] },
  cache: { title: 'Cache hit from memory', baselines: ['switchyard-undici', 'nginx'] },
  tmdb: { title: 'tmdb preset', baselines: ['http-proxy-3', 'undici'] },
  tracing: { title: 'Tracing (OpenTelemetry spans, OTLP/HTTP protobuf)', baselines: ['switchyard-undici'] },
  compression: { title: '64 KiB JSON, Accept-Encoding: gzip', baselines: ['switchyard-64k-identity', 'nginx-64k-gzip'] },
  encodings: { title: 'Compressed hits and encoding per request, 64 KiB JSON (issue 25)', baselines: ['switchyard-64k-hit', 'nginx-64k-gzip-6'] },
  body: { title: '1 MiB body pass-through', baselines: ['http-proxy-3-1mib', 'direct-1mib'] },
  [WORKERS_SUITE]: WORKERS_TABLE,
};

// ---------------------------------------------------------------- measuring

/**
 * The sanity check before measuring: the target really proxies our upstream
 * (status, size, type, expected headers such as X-Cache: HIT). With `warm`,
 * one request first fills the cache. Returns what it saw (bytes on the wire).
 */
async function verifyProxying(url, check = json1k) {
  const headers = check.requestHeaders ?? {};
  if (check.warm) await httpGet(url, 2000, headers);
  const { status, headers: got, body } = await httpGet(url, 5000, headers);
  const problems = [];
  if (status !== 200) problems.push(`status ${status}`);
  if (check.bytes != null && body.length !== check.bytes) problems.push(`${body.length} bytes (expected ${check.bytes})`);
  if (check.contentType && !String(got['content-type']).includes(check.contentType)) problems.push(`content-type ${got['content-type']}`);
  for (const [name, value] of Object.entries(check.headers ?? {})) {
    if (String(got[name]).toUpperCase() !== value.toUpperCase()) problems.push(`${name}: ${got[name]} (expected ${value})`);
  }
  if (problems.length) throw new Error(`sanity GET ${url} failed: ${problems.join(', ')}`);
  return { bodyBytesOnWire: body.length, contentEncoding: got['content-encoding'] ?? null };
}

function snapshot(targetPid, upstreamPid) {
  return {
    at: performance.now(),
    target: processTreeTicks(targetPid),
    upstream: processTreeTicks(upstreamPid),
    runner: runnerAndReapedChildrenTicks(),
    cores: readCoreTimes(),
  };
}

/**
 * CPU used during the window by processes that are not part of the bench
 * (someone's build, tests, an editor...), as % of one core. All process time
 * the kernel charged on any core, minus what the target, the upstream, wrk
 * and this runner used. Non-zero here is the usual reason for a noisy run.
 */
function otherCpuPercent(before, after, upstreamIsTarget) {
  const ours =
    after.target - before.target +
    (upstreamIsTarget ? 0 : after.upstream - before.upstream) +
    (after.runner - before.runner);
  const others = Math.max(0, taskTicksDelta(before.cores, after.cores) - ours);
  const seconds = (after.at - before.at) / 1000;
  return (100 * others) / CLK_TCK / seconds;
}

async function measure(target, ctx, scenario) {
  const { settings, pinning } = ctx;
  const url = new URL(scenario.path ?? '/', target.url).href;
  const load = { url, connections: settings.connections, core: pinning.load, ...(scenario.wrk ?? {}) };

  // Warm-up: JIT, connection pools and upstream keep-alive sockets settle
  // before anything is counted.
  await runWrk({ ...load, seconds: warmupOf(scenario, settings) });

  const before = snapshot(target.pid, ctx.upstream.pid);
  const result = await runWrk({ ...load, seconds: settings.durationSeconds });
  const after = snapshot(target.pid, ctx.upstream.pid);

  return {
    requests: result.requests,
    requestsPerSecond: result.requestsPerSecond,
    p50Ms: result.p50Ms,
    p75Ms: result.p75Ms,
    p90Ms: result.p90Ms,
    p99Ms: result.p99Ms,
    non2xx: result.non2xx,
    socketErrors: result.socketErrors,
    totalErrors: totalErrors(result),
    cpuTicks: after.target - before.target,
    // Share of one core the target used. Well below 100% while its core is
    // 100% busy means something else ran there (or softirq work landed there).
    targetCpuPercent: (100 * (after.target - before.target)) / CLK_TCK / (result.durationMs / 1000),
    cpuMicrosPerRequest: cpuMicrosPerRequest(after.target - before.target, result.requests),
    upstreamCpuMicrosPerRequest: cpuMicrosPerRequest(after.upstream - before.upstream, result.requests),
    otherCpuPercent: otherCpuPercent(before, after, target.pid === ctx.upstream.pid),
    coreBusyPercent: pinning.underTest === null ? null : pickCores(coreBusyPercent(before.cores, after.cores), [0, 1]),
    stealPercent: stealPercent(before.cores, after.cores),
    wrkReport: result.raw,
  };
}

/** The scenario's own warm-up where it needs a longer one, never shorter than BENCH_WARMUP. */
function warmupOf(scenario, settings) {
  return Math.max(settings.warmupSeconds, scenario.warmupSeconds?.(settings) ?? 0);
}

function pickCores(busy, cores) {
  return Object.fromEntries(cores.map((c) => [c, busy[c]]));
}

/** The upstream sits on the load core, except when it is what we measure. */
function placeUpstream(scenario, ctx) {
  const core = scenario.isUpstream ? ctx.pinning.underTest : ctx.pinning.load;
  if (core !== null) repinProcess(ctx.upstream.pid, core);
}

/** One round of one scenario: fresh process, sanity check, warm-up, measure. */
async function runScenarioRound(scenario, ctx, round) {
  console.log(`\n== ${scenario.name} (round ${round}/${ctx.settings.rounds}): ${scenario.description}`);
  let target;
  try {
    target = await scenario.start(ctx);
  } catch (err) {
    const status = err instanceof Skip ? 'skipped' : 'failed';
    console.log(`   ${status.toUpperCase()}: ${err.message}`);
    return { status, reason: err.message };
  }
  try {
    placeUpstream(scenario, ctx);
    const url = new URL(scenario.path ?? '/', target.url).href;
    const seen = await verifyProxying(url, scenario.check);
    console.log(`   ${url} (pid ${target.pid}) — warm-up ${warmupOf(scenario, ctx.settings)} s, measure ${ctx.settings.durationSeconds} s`);
    const measured = await measure(target, ctx, scenario);
    logScenarioResult(measured);
    return { status: 'ok', ...seen, ...measured };
  } catch (err) {
    console.log(`   FAILED: ${err.message}`);
    return { status: 'failed', reason: err.message };
  } finally {
    await target.stop();
  }
}

/**
 * Interleaved rounds: every scenario once per round, so slow machine drift
 * spreads over all of them. A scenario that is skipped or fails is not
 * retried in later rounds.
 */
async function runAllRounds(scenarios, ctx) {
  const roundsByName = new Map(scenarios.map((s) => [s.name, []]));
  for (let round = 1; round <= ctx.settings.rounds; round++) {
    for (const scenario of scenarios) {
      const previous = roundsByName.get(scenario.name);
      if (previous.some((r) => r.status !== 'ok')) continue;
      previous.push(await runScenarioRound(scenario, ctx, round));
    }
  }
  return scenarios.map((s) => aggregateRounds(s, roundsByName.get(s.name)));
}

// ---------------------------------------------------------------- SSE (issues 7, 8)

const SSE_TARGETS = [
  {
    name: 'direct',
    description: 'Node client → upstream /sse',
    start: startDirect,
    path: '/sse',
  },
  {
    name: 'switchyard-undici',
    description: 'through switchyard, bench/switchyard.bench.yaml (plain route, no plugin)',
    start: (ctx) => startSwitchyard(ctx, 'undici'),
    path: '/sse',
  },
  {
    name: 'ai-gateway',
    description: 'through switchyard --preset ai-gateway, mapping /bench → upstream (added via POST /api/mappings)',
    start: startAiGateway,
    path: '/bench/sse',
  },
];

/**
 * Per-event latency: the upstream stamps each event with CLOCK_MONOTONIC at
 * write time; this runner (a Node client, on the load core) subtracts that
 * from the arrival time. Added latency = the gateway's percentile − direct's.
 * Rounds interleave the targets like the wrk rounds do.
 */
const SSE_WARMUP_EVENTS = 10;

async function runSse(ctx) {
  const { sseStreams: streams, sseEvents: events, sseIntervalMs: interval, rounds } = ctx.settings;
  const samples = new Map(SSE_TARGETS.map((t) => [t.name, { delaysUs: [], errors: [], status: 'ok', rounds: [] }]));
  for (let round = 1; round <= rounds; round++) {
    for (const t of SSE_TARGETS) {
      const acc = samples.get(t.name);
      if (acc.status !== 'ok') continue;
      console.log(`\n== sse ${t.name} (round ${round}/${rounds}): ${t.description}`);
      let target;
      try {
        target = await t.start(ctx);
      } catch (err) {
        acc.status = err instanceof Skip ? 'skipped' : 'failed';
        acc.reason = err.message;
        console.log(`   ${acc.status.toUpperCase()}: ${err.message}`);
        continue;
      }
      try {
        const url = new URL(`${t.path}?n=${events}&interval=${interval}`, target.url).href;
        const before = snapshot(target.pid, ctx.upstream.pid);
        const m = await measureSse(url, { streams, expectedEvents: events, timeoutMs: events * interval + 30_000, skipFirst: SSE_WARMUP_EVENTS });
        const after = snapshot(target.pid, ctx.upstream.pid);
        const other = otherCpuPercent(before, after, target.pid === ctx.upstream.pid);
        acc.delaysUs.push(...m.delaysUs);
        acc.errors.push(...m.errors);
        const r = { events: m.events, p50Us: percentile(m.delaysUs, 50), p99Us: percentile(m.delaysUs, 99), otherCpuPercent: other };
        acc.rounds.push(r);
        console.log(`   ${url}: ${m.events} events, p50 ${(r.p50Us / 1000).toFixed(2)} ms, p99 ${(r.p99Us / 1000).toFixed(2)} ms, errors ${m.errors.length}, other processes ${other.toFixed(0)}%`);
      } catch (err) {
        acc.status = 'failed';
        acc.reason = err.message;
        console.log(`   FAILED: ${err.message}`);
      } finally {
        await target.stop();
      }
    }
  }
  const direct = samples.get('direct');
  const dp = (p) => percentile(direct.delaysUs, p);
  return SSE_TARGETS.map((t) => {
    const acc = samples.get(t.name);
    if (acc.status !== 'ok') return { name: t.name, description: t.description, status: acc.status, reason: acc.reason };
    const p50 = percentile(acc.delaysUs, 50);
    const p99 = percentile(acc.delaysUs, 99);
    return {
      name: t.name,
      description: t.description,
      status: 'ok',
      events: acc.delaysUs.length,
      expectedEvents: streams * (events - SSE_WARMUP_EVENTS) * rounds,
      p50Ms: p50 / 1000,
      p99Ms: p99 / 1000,
      maxMs: Math.max(...acc.delaysUs) / 1000,
      addedP50Ms: direct.status === 'ok' ? (p50 - dp(50)) / 1000 : null,
      addedP99Ms: direct.status === 'ok' ? (p99 - dp(99)) / 1000 : null,
      errors: acc.errors,
      otherCpuPercentMax: Math.max(...acc.rounds.map((r) => r.otherCpuPercent)),
      rounds: acc.rounds,
    };
  });
}

// ---------------------------------------------------------------- memory (issue 8)

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * 1. One GET of a `bigBodyBytes` body (1 GiB) streamed by the upstream
 *    through Switchyard to this runner, which discards it: Switchyard's peak
 *    RSS (VmHWM) and its RSS before.
 * 2. `idleConnections` (10,000) keep-alive client connections, each after one
 *    GET, held idle against a fresh Switchyard: RSS, and how many were refused.
 * Both with bench/configs/memory.yaml (keepAliveTimeout 120 s).
 */
async function runMemory(ctx) {
  const out = {};
  const config = { config: 'configs/memory.yaml' };
  // 1. big body
  console.log(`\n== memory: stream ${ctx.settings.bigBodyBytes / 2 ** 20} MiB through switchyard`);
  try {
    const target = await startSwitchyard(ctx, 'undici', config);
    try {
      await verifyProxying(target.url);
      const idle = memoryOf(target.pid);
      const d = await downloadAndDiscard(new URL(`/bytes?n=${ctx.settings.bigBodyBytes}`, target.url).href, 300_000);
      const mem = memoryOf(target.pid);
      if (d.status !== 200 || d.bytes !== ctx.settings.bigBodyBytes) throw new Error(`got status ${d.status}, ${d.bytes} bytes`);
      out.bigBody = {
        status: 'ok',
        bytes: d.bytes,
        seconds: d.ms / 1000,
        mbPerSecond: d.bytes / 1e6 / (d.ms / 1000),
        rssBeforeMiB: idle.rssMiB,
        peakBeforeMiB: idle.hwmMiB,
        rssAfterMiB: mem.rssMiB,
        peakRssMiB: mem.hwmMiB,
      };
      console.log(`   ${JSON.stringify(out.bigBody)}`);
    } finally {
      await target.stop();
    }
  } catch (err) {
    out.bigBody = { status: 'failed', reason: err.message };
    console.log(`   FAILED: ${err.message}`);
  }

  // 2. idle keep-alive connections
  const wanted = ctx.settings.idleConnections;
  const fdLimit = openFilesLimit();
  // This runner holds one fd per connection, plus ~100 of its own.
  const count = Math.min(wanted, Number.isFinite(fdLimit) ? fdLimit - 200 : wanted);
  console.log(`\n== memory: ${count} idle keep-alive connections against switchyard (open-files limit ${fdLimit})`);
  try {
    const target = await startSwitchyard(ctx, 'undici', config);
    let sockets = [];
    try {
      await verifyProxying(target.url);
      const idle = memoryOf(target.pid);
      const started = performance.now();
      const opened = await openIdleConnections(target.port, { count, concurrency: 256 });
      sockets = opened.sockets;
      const openSeconds = (performance.now() - started) / 1000;
      await sleep(3000); // idle: let buffers settle, see whether the server drops any
      const mem = memoryOf(target.pid);
      out.idleConnections = {
        status: 'ok',
        wanted,
        attempted: count,
        fdLimit,
        opened: opened.opened,
        refused: opened.refused,
        failed: opened.failed,
        reasons: opened.reasons,
        stillOpenAfter3s: stillOpen(sockets),
        openSeconds,
        rssBeforeMiB: idle.rssMiB,
        rssMiB: mem.rssMiB,
        peakRssMiB: mem.hwmMiB,
      };
      console.log(`   ${JSON.stringify(out.idleConnections)}`);
    } finally {
      await closeAll(sockets);
      await target.stop();
    }
  } catch (err) {
    out.idleConnections = { status: 'failed', reason: err.message };
    console.log(`   FAILED: ${err.message}`);
  }
  return out;
}

function logScenarioResult(m) {
  console.log(
    `   ${Math.round(m.requestsPerSecond)} req/s, p50 ${m.p50Ms?.toFixed(2)} ms, p99 ${m.p99Ms?.toFixed(2)} ms, ` +
      `${m.cpuMicrosPerRequest?.toFixed(1)} CPU µs/req (upstream ${m.upstreamCpuMicrosPerRequest?.toFixed(1)}), ` +
      `other processes ${m.otherCpuPercent.toFixed(0)}% of a core`,
  );
  if (m.totalErrors > 0) {
    console.log(`   WARNING: ${m.totalErrors} errors (non-2xx ${m.non2xx}, socket ${JSON.stringify(m.socketErrors)})`);
  }
}

// ---------------------------------------------------------------- reporting

function packageVersion(name) {
  try {
    const require = createRequire(path.join(ROOT, 'package.json'));
    return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')).version;
  } catch {
    return 'not installed';
  }
}

function collectMeta(settings, pinning, startedAt) {
  return {
    date: startedAt.toISOString(),
    durationSeconds: settings.durationSeconds,
    warmupSeconds: settings.warmupSeconds,
    connections: settings.connections,
    rounds: settings.rounds,
    suites: settings.suites,
    command: commandLine(),
    sse:
      `${settings.sseStreams} concurrent streams × ${settings.sseEvents} events every ${settings.sseIntervalMs} ms per round, ${settings.rounds} interleaved round(s); ` +
      'latency = arrival at a Node client − CLOCK_MONOTONIC stamp written by the upstream just before res.write(); percentiles over all events of all rounds, the first 10 of each stream not counted (warm-up); added = path − direct.',
    pinning: pinning.description,
    loadCore: pinning.load,
    clockTicksPerSecond: CLK_TCK,
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    // os.cpus(), not availableParallelism(): the runner has pinned itself by now.
    cpuCount: os.cpus().length,
    wrk: wrkVersion(),
    nginx: nginxVersion(),
    versions: { 'http-proxy-3': packageVersion('http-proxy-3'), 'http-proxy': packageVersion('http-proxy'), undici: packageVersion('undici') },
  };
}

function commandLine() {
  const vars = Object.entries(process.env)
    .filter(([k]) => k.startsWith('BENCH_'))
    .map(([k, v]) => `${k}=${v} `)
    .join('');
  return `${vars}${process.env.npm_lifecycle_event === 'bench' ? 'npm run bench' : 'node bench/run.mjs'}`;
}

function writeResults(meta, report, startedAt) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  // ISO date without ':' so the name is valid everywhere.
  const stamp = startedAt.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  const mdPath = path.join(RESULTS_DIR, `${stamp}.md`);
  const jsonPath = path.join(RESULTS_DIR, `${stamp}.json`);
  writeFileSync(mdPath, markdownReport({ meta, ...report }));
  // In the JSON, tables name their scenarios; each scenario's figures are in `results` once.
  const tables = report.tables.map(({ results, ...t }) => ({ ...t, scenarios: results.map((r) => r.name) }));
  writeFileSync(jsonPath, JSON.stringify({ meta, ...report, tables }, null, 2) + '\n');
  return { mdPath, jsonPath };
}

// ---------------------------------------------------------------- main

async function main() {
  installCleanupHandlers();
  const settings = readSettings();

  if (!WRK) {
    console.log(`bench: SKIPPED\n${WRK_INSTALL_HINT}`);
    return 0;
  }
  if (process.platform !== 'linux') {
    console.log('bench: SKIPPED — CPU µs/req is read from /proc, which needs Linux.');
    return 0;
  }

  const startedAt = new Date();
  const pinning = decidePinning();
  // The runner itself mostly sleeps, but keep it off the core under test.
  if (pinning.load !== null) repinProcess(process.pid, pinning.load);
  console.log(`bench: pinning: ${pinning.description}`);
  console.log(
    `bench: wrk -t1 -c${settings.connections}, ${settings.rounds} interleaved round(s) of ` +
      `${settings.warmupSeconds} s warm-up + ${settings.durationSeconds} s measured per scenario`,
  );

  const inSuites = (sc) => sc.suites.some((suite) => settings.suites.includes(suite));
  const scenarios = SCENARIOS.filter((sc) => (settings.only.length ? settings.only.includes(sc.name) : inSuites(sc)));
  const runSseSuite = settings.suites.includes('sse') && !settings.only.length;
  const runMemorySuite = settings.suites.includes('memory') && !settings.only.length;
  const runWebProxySuite = settings.suites.includes(WEB_PROXY_SUITE) && !settings.only.length;
  if (!scenarios.length && !runSseSuite && !runMemorySuite && !runWebProxySuite) {
    throw new Error(`BENCH_SCENARIOS/BENCH_SUITE matched nothing; known scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  }
  console.log(`bench: suites ${settings.suites.join(', ')}; ${scenarios.length} wrk scenario(s)`);

  const upstream = await startUpstream(pinning);
  console.log(`bench: upstream ${upstream.url} (pid ${upstream.pid})`);
  const ctx = { settings, pinning, upstream };

  let results = [];
  let sse = null;
  let memory = null;
  let webProxy = null;
  try {
    if (scenarios.length) results = await runAllRounds(scenarios, ctx);
    placeUpstream({ isUpstream: false }, ctx);
    if (runSseSuite) sse = await runSse(ctx);
    if (runMemorySuite) memory = await runMemory(ctx);
    if (runWebProxySuite) webProxy = await runWebProxy(ctx, startSwitchyard, ROOT);
  } finally {
    await stopChild(upstream.child);
  }

  const meta = collectMeta(settings, pinning, startedAt);
  const tables = Object.entries(WRK_TABLES)
    .map(([suite, t]) => ({ suite, ...t, results: results.filter((r) => r.suites.includes(suite)) }))
    .filter((t) => settings.suites.includes(t.suite) && t.results.length);
  const targets = evaluateTargets(results, sse, memory, settings.only.length ? SUITES : settings.suites);
  if (webProxy?.status === 'ok') {
    const mbps = webProxy.pageBytes / 1e6 / (webProxy.proxied.medianMs / 1000);
    const figure = `${mbps.toFixed(1)} MB/s wall, ${webProxy.proxyMbPerCpuSecond.toFixed(1)} MB per CPU s (direct ${webProxy.direct.mbPerSecond.toFixed(0)} MB/s, ${webProxy.proxiedToDirect.toFixed(2)}× direct; load average ${webProxy.loadAverage.start.toFixed(1)})`;
    targets.push({ target: '2 MB HTML page through /proxy/ (rewritten) ≥ 50 MB/s (issue 29)', value: mbps, figure, met: mbps >= 50 });
  }
  for (const t of tables) console.log(`\n## ${t.title}\n\n${markdownTable(t.results, t.baselines)}`);
  if (sse) console.log(`\n## SSE per-event latency\n\n${sseTable(sse)}`);
  if (memory) console.log(`\n## Memory\n\n${memoryTable(memory)}`);
  if (webProxy) console.log(`\n## Web proxy: a 2 MB HTML page\n\n${webProxyTable(webProxy)}`);
  if (targets.length) console.log(`\n## Targets\n\n${targetsTable(targets)}\n`);
  const { mdPath, jsonPath } = writeResults(meta, { results, tables, sse, memory, targets, webProxy }, startedAt);
  console.log(`bench: wrote ${path.relative(ROOT, mdPath)} and ${path.relative(ROOT, jsonPath)}`);

  const withErrors = results.filter((r) => r.status === 'ok' && r.totalErrors > 0);
  const failed = [
    ...results.filter((r) => r.status === 'failed').map((r) => r.name),
    ...(sse ?? []).filter((r) => r.status === 'failed' || r.errors?.length).map((r) => `sse ${r.name}`),
    ...Object.entries(memory ?? {}).filter(([, m]) => m.status === 'failed').map(([k]) => `memory ${k}`),
    ...(webProxy?.status === 'failed' ? ['webproxy'] : []),
  ];
  const saturated = loadSaturated(results, pinning.load);
  if (saturated.length) {
    console.log(`bench: note: load core saturated for ${saturated.map((r) => r.name).join(', ')} — their req/s is a lower bound; compare CPU µs/req`);
  }
  if (withErrors.length) console.log(`bench: WARNING: errors in ${withErrors.map((r) => r.name).join(', ')} — numbers not comparable`);
  if (failed.length) console.log(`bench: FAILED: ${failed.join(', ')}`);
  return withErrors.length || failed.length ? 1 : 0;
}

/**
 * CPU µs of one brotliCompressSync (quality 4, default window, as the issue measured it) of the
 * bench upstream's 64 KiB JSON, in this process: the yardstick for brotli per request.
 */
function brotliOneShotMicros() {
  const body = makeCompressibleJson(64 * 1024);
  const params = { [zlib.constants.BROTLI_PARAM_QUALITY]: 4 };
  for (let i = 0; i < 20; i++) zlib.brotliCompressSync(body, { params });
  const before = process.cpuUsage();
  const calls = 200;
  for (let i = 0; i < calls; i++) zlib.brotliCompressSync(body, { params });
  const used = process.cpuUsage(before);
  return (used.user + used.system) / calls;
}

/** The issues' targets, each with this run's figures; met null when not measured. */
function evaluateTargets(results, sse, memory, suites) {
  const ok = (name) => results.find((r) => r.name === name && r.status === 'ok');
  const targets = [];
  const f1 = (n) => n.toFixed(1);
  const f2 = (n) => n.toFixed(2);
  const rpsRatio = (a, b) => (ok(a) && ok(b) ? ok(a).requestsPerSecond / ok(b).requestsPerSecond : null);
  const cpuRatio = (a, b) => (ok(a) && ok(b) ? ok(a).cpuMicrosPerRequest / ok(b).cpuMicrosPerRequest : null);
  const add = (target, value, show, met) => {
    if (value == null) return;
    targets.push({ target, value, figure: show, met });
  };
  const want = (suite) => suites.includes(suite) && results.some((r) => r.suites.includes(suite));
  if (want('passthrough')) {
    const r = rpsRatio('switchyard-undici', 'http-proxy-3');
    add('pass-through ≥ 90 % of bare http-proxy-3 req/s (issue 8)', r, r && `${f2(r)}×`, r >= 0.9);
  }
  if (want('plugins')) {
    for (const algorithm of ALGORITHMS) {
      const r = rpsRatio(`balancer-${algorithm}`, 'switchyard-undici');
      const c = cpuRatio(`balancer-${algorithm}`, 'switchyard-undici');
      // By CPU µs/req: req/s swings far more than 3 % between rounds here. When the two scenarios'
      // rounds overlap, this run cannot tell a 3 % cost from none (bench/README.md has callgrind's figure).
      const overlap = ok(`balancer-${algorithm}`)?.cpuMicrosPerRequestRange.min <= ok('switchyard-undici')?.cpuMicrosPerRequestRange.max;
      add(
        `balancing ${algorithm} costs < 3 % of pass-through (issue 3), by CPU µs/req`,
        c,
        c && `CPU µs/req ${f2(c)}×, req/s ${f2(r)}× of no plugin${c > 1.03 && overlap ? '; its rounds overlap the baseline\'s' : ''}`,
        c <= 1.03 ? true : overlap ? 'within noise' : false,
      );
    }
  }
  if (want('cache')) {
    const r = rpsRatio('switchyard-cache-hit', 'switchyard-undici');
    add('cache hit ≥ 3× pass-through req/s (issues 4, 8)', r, r && `${f2(r)}×`, r >= 3);
    // What any node:http server can reach: the bench upstream answers its 1 KiB from memory with
    // nothing else to do, so no cache hit on node:http can beat its ratio.
    const ceiling = rpsRatio('direct', 'switchyard-undici');
    add('(reference) the ceiling: bare node:http upstream answering from memory ÷ pass-through req/s', ceiling, ceiling && `${f2(ceiling)}× (CPU µs/req ${f2(cpuRatio('switchyard-cache-hit', 'direct'))}× the bare upstream's for a hit)`, null);
    const paced = ok('switchyard-cache-hit-paced');
    const nginxPaced = ok('nginx-cache-hit-paced');
    add(
      'cache hit p99 < 2 ms at 64 connections (issue 4), at a steady rate (bench/paced.lua)',
      paced?.p99Ms,
      paced && `${f2(paced.p99Ms)} ms at ${Math.round(paced.requestsPerSecond)} req/s (nginx proxy_cache: ${nginxPaced ? `${f2(nginxPaced.p99Ms)} ms` : '—'})`,
      paced?.p99Ms < 2,
    );
    const floor = ok('direct-paced');
    add('(reference) the floor: bare node:http upstream p99 at the same steady rate', floor?.p99Ms, floor && `${f2(floor.p99Ms)} ms at ${Math.round(floor.requestsPerSecond)} req/s`, null);
    const hit = ok('switchyard-cache-hit');
    add('(reference) cache hit p99 at saturation, 64 back-to-back connections: queueing, ≈ 64 ÷ req/s', hit?.p99Ms, hit && `${f2(hit.p99Ms)} ms (nginx proxy_cache: ${ok('nginx-cache-hit') ? `${f2(ok('nginx-cache-hit').p99Ms)} ms` : '—'})`, null);
    const n = rpsRatio('switchyard-cache-hit', 'nginx');
    add('cache hit ≥ nginx pass-through req/s (issue 8)', n, n && `${f2(n)}× (nginx's req/s is a lower bound when its load core saturates)`, n >= 1);
    const nc = rpsRatio('switchyard-cache-hit', 'nginx-cache-hit');
    add('(reference) cache hit vs nginx proxy_cache hit', nc, nc && `req/s ${f2(nc)}×, CPU µs/req ${f2(cpuRatio('switchyard-cache-hit', 'nginx-cache-hit'))}×`, null);
  }
  if (want('tracing')) {
    for (const [name, share, limit] of [['tracing-sampled', 'every request sampled', 1.25], ['tracing-1pct', '1 % sampled', 1.03]]) {
      const c = cpuRatio(name, 'switchyard-undici');
      add(`tracing, ${share}, ≤ ${f2(limit)}× the plain route's CPU µs/req (issue 28)`, c, c && `${f2(c)}× (${f1(ok(name).cpuMicrosPerRequest)} against ${f1(ok('switchyard-undici').cpuMicrosPerRequest)} µs/req)`, c <= limit);
    }
  }
  if (want('tmdb')) {
    const r = rpsRatio('tmdb-pass-through', 'http-proxy-3');
    add('tmdb pass-through ≥ 75 % of bare http-proxy req/s (issue 8)', r, r && `${f2(r)}×`, r >= 0.75);
    const c = cpuRatio('tmdb-pass-through', 'undici');
    add('tmdb pass-through ≤ 1.5× bare undici CPU µs/req (issue 10)', c, c && `${f2(c)}×`, c <= 1.5);
    const h = rpsRatio('tmdb-cache-hit', 'http-proxy-3');
    add('(reference) tmdb cache hit vs bare http-proxy-3 req/s', h, h && `${f2(h)}×`, null);
  }
  if (want('compression')) {
    const s = ok('switchyard-64k-gzip');
    const n = ok('nginx-64k-gzip');
    add(
      '(report) compression CPU µs/req and bytes saved, 64 KiB JSON, beside nginx gzip (issue 11)',
      s?.cpuMicrosPerRequest,
      s && `switchyard ${f1(s.cpuMicrosPerRequest)} µs/req → ${s.bodyBytesOnWire} B; nginx (level 1) ${n ? `${f1(n.cpuMicrosPerRequest)} µs/req → ${n.bodyBytesOnWire} B` : '—'}`,
      null,
    );
  }
  if (want('encodings')) {
    const hit = cpuRatio('switchyard-64k-hit-browser', 'switchyard-64k-hit');
    add('a hit for gzip, deflate, br ≤ 1.3× the CPU µs/req of an identity hit (issue 25)', hit, hit && `${f2(hit)}× (${f1(ok('switchyard-64k-hit-browser').cpuMicrosPerRequest)} vs ${f1(ok('switchyard-64k-hit').cpuMicrosPerRequest)} µs/req)`, hit <= 1.3);
    const preset = cpuRatio('balancer-64k-hit-browser', 'balancer-64k-hit');
    add('(report) balancer preset: browser hit (with Origin) ÷ identity hit, CPU µs/req (issue 25)', preset, preset && `${f2(preset)}×`, null);
    const gzip = cpuRatio('switchyard-64k-gzip', 'nginx-64k-gzip-6');
    add('pass-through gzip level 6 ≤ 1.5× nginx gzip_comp_level 6, CPU µs/req (issue 25)', gzip, gzip && `${f2(gzip)}×`, gzip <= 1.5);
    const br = ok('switchyard-64k-br');
    const oneShot = brotliOneShotMicros();
    const brRatio = br ? br.cpuMicrosPerRequest / oneShot : null;
    add('pass-through brotli q4 ≤ 1.5× a one-shot brotliCompressSync of the body, CPU µs/req (issue 25)', brRatio, brRatio && `${f2(brRatio)}× (${f1(br.cpuMicrosPerRequest)} µs/req vs ${f1(oneShot)} µs in-process)`, brRatio <= 1.5);
  }
  if (want('body')) {
    const r = rpsRatio('switchyard-1mib', 'http-proxy-3-1mib');
    add('(report) 1 MiB pass-through MB/s vs bare http-proxy-3', r, r && `${f2(r)}×`, null);
  }
  if (want(WORKERS_SUITE)) {
    const t = workersTarget(ok);
    if (t) add(t.target, t.value, t.figure, null);
  }
  for (const path of sse ?? []) {
    if (path.name === 'direct' || path.status !== 'ok') continue;
    add(`SSE added p99 ≤ 5 ms, ${path.name} (issues 7, 8)`, path.addedP99Ms, `${path.addedP99Ms.toFixed(3)} ms (p50 ${path.addedP50Ms.toFixed(3)} ms)`, path.addedP99Ms <= 5 && !path.errors.length);
  }
  const big = memory?.bigBody;
  if (big?.status === 'ok') add('1 GiB stream: peak RSS ≤ 150 MB (issue 8)', big.peakRssMiB, `${big.peakRssMiB.toFixed(1)} MiB`, big.peakRssMiB * 1.048576 <= 150);
  const idle = memory?.idleConnections;
  if (idle?.status === 'ok') {
    add(
      `${idle.attempted} idle keep-alive connections: RSS ≤ 300 MB, none refused (issue 8)`,
      idle.rssMiB,
      `${idle.rssMiB.toFixed(1)} MiB, ${idle.opened} opened, ${idle.refused} refused, ${idle.failed} other failures`,
      idle.rssMiB * 1.048576 <= 300 && idle.opened === idle.attempted && idle.attempted >= 10_000,
    );
  }
  return targets;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`bench: ${err.stack ?? err}`);
    process.exit(1);
  },
);
