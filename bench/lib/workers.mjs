// The `workers` suite (issue 9): requests/s of `switchyard start --workers 2` against
// `--workers 1` on the pass-through scenario (bench/switchyard.bench.yaml: one route, no plugin,
// undici engine, access log off), measured by run.mjs like every other wrk scenario.
//
// Core split. The bench's load side (wrk, the upstream, this runner) stays on core 1 throughout,
// so wrk has a core of its own only as far as the machine allows: on 2 cores there is no third
// core for two workers, and they must share with the load side.
//
//   workers-1           primary + 1 worker pinned to core 0 (the pass-through scenarios' split)
//   workers-1-unpinned  primary + 1 worker free to run on cores 0 and 1
//   workers-2           primary + 2 workers free to run on cores 0 and 1
//
// workers-2 ÷ workers-1 is the gain a user sees from the flag on such a machine; workers-2 ÷
// workers-1-unpinned separates it from what merely unpinning one worker does. CPU µs/req is the
// whole process tree (primary + workers: run.mjs sums a pid's descendants).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { getFreePort, spawnTracked, stopChild, waitForHttp200, waitForLine } from './processes.mjs';

export const WORKERS_SUITE = 'workers';

const PLACEMENTS = [
  { name: 'workers-1', workers: 1, pinned: true, where: 'primary + 1 worker pinned to the core under test (0); wrk + upstream on core 1' },
  { name: 'workers-1-unpinned', workers: 1, pinned: false, where: 'primary + 1 worker unpinned (cores 0 and 1); wrk + upstream on core 1' },
  { name: 'workers-2', workers: 2, pinned: false, where: 'primary + 2 workers unpinned (cores 0 and 1), sharing core 1 with wrk + upstream' },
];

/** Parses the primary's `{"msg":"cluster listening","port":N,"workers":[pids]}` line. */
function parseClusterListening(line) {
  try {
    const entry = JSON.parse(line);
    return entry.msg === 'cluster listening' && Number.isInteger(entry.port) && Array.isArray(entry.workers) ? entry : null;
  } catch {
    return null;
  }
}

/**
 * `switchyard start --workers N` on the pass-through config. Ready once the primary says every
 * worker listens and /health answers; the pid is the primary's (its workers are its children).
 */
async function startCluster(ctx, { workers, pinned }, { benchDir, Skip }) {
  const entry = ctx.settings.switchyardEntry;
  if (!existsSync(entry)) throw new Skip(`${entry} not found — build it with \`npm run build\` (\`npm run bench\` does)`);
  const port = await getFreePort();
  const args = [entry, 'start', '--config', path.join(benchDir, 'switchyard.bench.yaml'), '--port', String(port), '--no-watch', '--workers', String(workers)];
  // Workers are forked by the primary and inherit its CPU affinity (taskset on the primary).
  // "Unpinned" must be said explicitly: a child inherits the runner's affinity, which is core 1.
  const { underTest, load } = ctx.pinning;
  const child = spawnTracked(`switchyard --workers ${workers}`, process.execPath, args, {
    core: underTest === null ? null : pinned ? underTest : `${underTest},${load}`,
    cwd: path.dirname(benchDir),
    env: { ...process.env, UPSTREAM_URL: ctx.upstream.url, PORT: String(port), HOST: '127.0.0.1', SWITCHYARD_ENGINE: 'undici' },
  });
  const stop = () => stopChild(child);
  try {
    const listening = await waitForLine(child, parseClusterListening, 15_000);
    if (listening.workers.length !== workers) throw new Error(`asked for ${workers} workers, the primary reports ${listening.workers.length}`);
    await waitForHttp200(() => `http://127.0.0.1:${listening.port}/health`, { timeoutMs: 10_000, child });
    return { pid: child.pid, port: listening.port, url: `http://127.0.0.1:${listening.port}/`, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The suite's wrk scenarios, in run.mjs's format. `Skip` is run.mjs's "cannot run here" error. */
export function workersScenarios({ benchDir, Skip }) {
  return PLACEMENTS.map((placement) => ({
    name: placement.name,
    suites: [WORKERS_SUITE],
    description: `switchyard start --workers ${placement.workers}, bench/switchyard.bench.yaml (pass-through, no plugin): ${placement.where}`,
    start: (ctx) => startCluster(ctx, placement, { benchDir, Skip }),
  }));
}

export const WORKERS_TABLE = {
  title: 'Pass-through with --workers (issue 9)',
  baselines: ['workers-1', 'workers-1-unpinned'],
  note:
    'Core split (this table only): wrk + upstream + runner pinned to core 1 throughout; `workers-1`: primary + 1 worker pinned to core 0; ' +
    '`workers-1-unpinned` and `workers-2`: primary + worker(s) allowed on cores 0 and 1, so they share core 1 with the load side (2 cores leave no core of its own for wrk). ' +
    'CPU µs/req is the primary and its workers together.',
};

/**
 * The issue's figure for the Targets table (a report, no threshold): `ok(name)` is the scenario's
 * aggregated result when it ran, else undefined. Null when workers-2 or workers-1 did not run.
 */
export function workersTarget(ok) {
  const two = ok('workers-2');
  const one = ok('workers-1');
  if (!two || !one) return null;
  const loose = ok('workers-1-unpinned');
  const rps = (r) => Math.round(r.requestsPerSecond).toLocaleString('en-US');
  const cpu = (r) => r.cpuMicrosPerRequest.toFixed(1);
  const ratio = two.requestsPerSecond / one.requestsPerSecond;
  return {
    target: '(report) --workers 2 vs 1 pass-through req/s (issue 9)',
    value: ratio,
    figure:
      `${ratio.toFixed(2)}×: ${rps(two)} vs ${rps(one)} req/s (1 worker pinned to core 0)` +
      (loose ? `, ${(two.requestsPerSecond / loose.requestsPerSecond).toFixed(2)}× of 1 worker unpinned (${rps(loose)})` : '') +
      `; CPU µs/req, primary + workers: ${cpu(two)} vs ${cpu(one)}${loose ? ` / ${cpu(loose)}` : ''}; wrk + upstream on core 1, the 2 workers on both cores`,
  };
}
