#!/usr/bin/env node
// Switchyard benchmark: the same local upstream, reached directly, through
// bare http-proxy-3, through http-proxy@1, through a bare undici proxy,
// through Switchyard on each engine and through nginx; measured with wrk.
// See bench/README.md for the method.
//
//   node bench/run.mjs            (or: npm run bench, which builds first)
//
// Env: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, default 2),
//      BENCH_CONNECTIONS (default 64), BENCH_ROUNDS (default 3),
//      BENCH_SCENARIOS (comma list filter),
//      BENCH_PIN=0 (no CPU pinning), BENCH_NGINX (nginx binary path),
//      BENCH_SWITCHYARD_ENTRY (default dist/bin/switchyard.js).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

import { aggregateRounds } from './lib/aggregate.mjs';
import {
  CLK_TCK,
  coreBusyPercent,
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
import { loadSaturated, markdownReport, markdownTable, withRatios } from './lib/report.mjs';
import { runWrk, totalErrors, WRK, WRK_INSTALL_HINT, wrkVersion } from './lib/wrk.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, '..');
const RESULTS_DIR = path.join(BENCH_DIR, 'results');
const UPSTREAM_BODY_BYTES = 1024;

/** A scenario that cannot run here (missing binary, etc.) — not a failure. */
class Skip extends Error {}

// ---------------------------------------------------------------- settings

function positiveNumberFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

/** wrk takes whole seconds and whole connection counts; never less than 1. */
const wholeNumberFromEnv = (name, fallback) => Math.max(1, Math.round(positiveNumberFromEnv(name, fallback)));

function readSettings() {
  return {
    durationSeconds: wholeNumberFromEnv('BENCH_DURATION', 10),
    warmupSeconds: wholeNumberFromEnv('BENCH_WARMUP', 2),
    connections: wholeNumberFromEnv('BENCH_CONNECTIONS', 64),
    rounds: wholeNumberFromEnv('BENCH_ROUNDS', 3),
    only: (process.env.BENCH_SCENARIOS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    switchyardEntry: path.resolve(ROOT, process.env.BENCH_SWITCHYARD_ENTRY ?? 'dist/bin/switchyard.js'),
  };
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
  });
  const port = await waitForLine(child, parsePortHandshake, 10_000);
  return { child, pid: child.pid, port, url: `http://127.0.0.1:${port}` };
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

/** Parses a pino line like {"msg":"listening","port":1234}, if it is one. */
function parseListeningLog(line) {
  try {
    const entry = JSON.parse(line);
    return entry.msg === 'listening' && Number.isInteger(entry.port) ? entry.port : null;
  } catch {
    return null;
  }
}

/**
 * Switchyard's CLI on bench/switchyard.bench.yaml. We pick a free port and
 * pass it as `--port N` (and PORT=N); readiness is GET /health answering 200
 * within 10 s. If the CLI announces a different port in its "listening" log
 * line we follow that instead.
 */
async function startSwitchyard(ctx, engine) {
  const entry = ctx.settings.switchyardEntry;
  if (!existsSync(entry)) {
    throw new Skip(`${path.relative(ROOT, entry)} not found — build it with \`npm run build\` (\`npm run bench\` does)`);
  }
  const port = await getFreePort();
  const config = path.join(BENCH_DIR, 'switchyard.bench.yaml');
  // --no-watch: the bench measures the request path; a config watcher would
  // only add an idle inotify handle, and a reload mid-run would skew a round.
  const args = [entry, 'start', '--config', config, '--port', String(port), '--no-watch'];
  const child = spawnTracked('switchyard', process.execPath, args, {
    core: ctx.pinning.underTest,
    cwd: ROOT,
    env: { ...process.env, UPSTREAM_URL: ctx.upstream.url, PORT: String(port), SWITCHYARD_ENGINE: engine },
  });
  let listeningPort = port;
  child.on('line', (line) => (listeningPort = parseListeningLog(line) ?? listeningPort));
  try {
    await waitForHttp200(() => `http://127.0.0.1:${listeningPort}/health`, { timeoutMs: 10_000, child });
    return { pid: child.pid, url: `http://127.0.0.1:${listeningPort}/`, stop: () => stopChild(child) };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

async function startNginx(ctx) {
  if (!NGINX) throw new Skip('nginx not installed (Debian/Ubuntu: apt-get install -y nginx)');
  const port = await getFreePort();
  const nginxDir = prepareNginxDir({ port, upstreamPort: ctx.upstream.port });
  const child = spawnTracked('nginx', NGINX, nginxArgs(nginxDir), { core: ctx.pinning.underTest });
  const stop = async () => {
    await stopChild(child);
    nginxDir.cleanup();
  };
  try {
    await waitForHttp200(() => `http://127.0.0.1:${port}/`, { timeoutMs: 10_000, child });
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

const SCENARIOS = [
  {
    name: 'direct',
    description: 'wrk → upstream (baseline, no proxy)',
    isUpstream: true,
    start: async (ctx) => ({ pid: ctx.upstream.pid, url: `${ctx.upstream.url}/`, stop: async () => {} }),
  },
  {
    name: 'http-proxy-3',
    description: 'bare http-proxy-3 createProxyServer in node:http',
    start: (ctx) => startNodeProxy('http-proxy-3', ctx),
  },
  {
    name: 'http-proxy@1.18.1',
    description: 'bare http-proxy (v1) createProxyServer in node:http',
    start: (ctx) => startNodeProxy('http-proxy', ctx),
  },
  {
    name: 'undici',
    description: 'bare undici Pool.request() proxy in node:http',
    start: startUndiciProxy,
  },
  {
    name: 'switchyard-http-proxy',
    description: 'switchyard start --config bench/switchyard.bench.yaml, engine http-proxy',
    start: (ctx) => startSwitchyard(ctx, 'http-proxy'),
  },
  {
    name: 'switchyard-undici',
    description: 'switchyard start --config bench/switchyard.bench.yaml, engine undici',
    start: (ctx) => startSwitchyard(ctx, 'undici'),
  },
  {
    name: 'nginx',
    description: 'nginx, 1 worker, upstream keepalive 64',
    start: startNginx,
  },
];

// ---------------------------------------------------------------- measuring

/** One request through the target, to be sure it really proxies our upstream. */
async function verifyProxying(url) {
  const { status, headers, body } = await httpGet(url, 2000);
  if (status !== 200 || body.length !== UPSTREAM_BODY_BYTES || !String(headers['content-type']).includes('json')) {
    throw new Error(
      `sanity GET ${url} returned status ${status}, ${body.length} bytes, content-type ${headers['content-type']} ` +
        `(expected 200, ${UPSTREAM_BODY_BYTES} bytes of JSON)`,
    );
  }
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

async function measure(target, ctx) {
  const { settings, pinning } = ctx;
  const load = { url: target.url, connections: settings.connections, core: pinning.load };

  // Warm-up: JIT, connection pools and upstream keep-alive sockets settle
  // before anything is counted.
  await runWrk({ ...load, seconds: settings.warmupSeconds });

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
    wrkReport: result.raw,
  };
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
    await verifyProxying(target.url);
    console.log(`   ${target.url} (pid ${target.pid}) — warm-up ${ctx.settings.warmupSeconds} s, measure ${ctx.settings.durationSeconds} s`);
    const measured = await measure(target, ctx);
    logScenarioResult(measured);
    return { status: 'ok', ...measured };
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

function writeResults(meta, results, startedAt) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  // ISO date without ':' so the name is valid everywhere.
  const stamp = startedAt.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  const mdPath = path.join(RESULTS_DIR, `${stamp}.md`);
  const jsonPath = path.join(RESULTS_DIR, `${stamp}.json`);
  writeFileSync(mdPath, markdownReport({ meta, results }));
  writeFileSync(jsonPath, JSON.stringify({ meta, results }, null, 2) + '\n');
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

  const scenarios = SCENARIOS.filter((s) => !settings.only.length || settings.only.includes(s.name));
  if (!scenarios.length) throw new Error(`BENCH_SCENARIOS matched nothing; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);

  const upstream = await startUpstream(pinning);
  console.log(`bench: upstream ${upstream.url} (pid ${upstream.pid})`);
  const ctx = { settings, pinning, upstream };

  let results;
  try {
    results = await runAllRounds(scenarios, ctx);
  } finally {
    await stopChild(upstream.child);
  }

  const meta = collectMeta(settings, pinning, startedAt);
  const rated = withRatios(results);
  console.log(`\n${markdownTable(rated)}\n`);
  const { mdPath, jsonPath } = writeResults(meta, rated, startedAt);
  console.log(`bench: wrote ${path.relative(ROOT, mdPath)} and ${path.relative(ROOT, jsonPath)}`);

  const withErrors = rated.filter((r) => r.status === 'ok' && r.totalErrors > 0);
  const failed = rated.filter((r) => r.status === 'failed');
  const saturated = loadSaturated(rated, pinning.load);
  if (saturated.length) {
    console.log(`bench: note: load core saturated for ${saturated.map((r) => r.name).join(', ')} — their req/s is a lower bound; compare CPU µs/req`);
  }
  if (withErrors.length) console.log(`bench: WARNING: errors in ${withErrors.map((r) => r.name).join(', ')} — numbers not comparable`);
  if (failed.length) console.log(`bench: FAILED scenarios: ${failed.map((r) => r.name).join(', ')}`);
  return withErrors.length || failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`bench: ${err.stack ?? err}`);
    process.exit(1);
  },
);
