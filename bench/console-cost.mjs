#!/usr/bin/env node
// What the operator console (issue 27) costs on the request path, as a share of the proxy's CPU:
// the bench config's plain route under wrk, the proxy pinned to one core and profiled with
// `node --cpu-prof`, twice — with no console open, and with one console's event stream open (the
// page's 2 s ticks computing the overview and upstream table). Samples in core/console*.js are
// split into `record()` (runs for every request, console open or not) and the rest (ticks and the
// stream, only while a console is open).
//
// A share of the profile is the figure that survives this shared machine: CPU µs/request swing 5 %
// between runs, more than the effect measured here, while the share is taken within one process.
//
// usage: npm run build && node bench/console-cost.mjs   (env: SECONDS=15 per phase, CONNECTIONS=16,
//        DEBUG_CONSOLE_COST=1 to list the console functions the samples fell in)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  getFreePort,
  installCleanupHandlers,
  parsePortHandshake,
  spawnTracked,
  stopChild,
  waitForHttp200,
  waitForLine,
} from './lib/processes.mjs';
import { WRK, runWrk } from './lib/wrk.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SECONDS = Number(process.env.SECONDS ?? 15);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16);
const ADMIN_KEY = 'bench-console-key';
const PROXY_CORE = 1;
const LOAD_CORE = 0;

if (!WRK) throw new Error('wrk is needed (apt-get install wrk)');
installCleanupHandlers();

const work = mkdtempSync(join(tmpdir(), 'switchyard-console-cost-'));
const upstream = spawnTracked('upstream', process.execPath, [join(ROOT, 'bench/servers/upstream.mjs')], { core: LOAD_CORE });
const upstreamPort = await waitForLine(upstream, parsePortHandshake, 10_000);

const rows = [];
for (const consoleOpen of [false, true]) rows.push(await phase(consoleOpen));
await stopChild(upstream);
rmSync(work, { recursive: true, force: true });

const perCall = recordInstructions();
console.log(`\nrecord() under callgrind: ${perCall === null ? 'not measured (no valgrind)' : `${perCall.toFixed(0)} instructions per finished request`}`);

console.log('\n| console | req/s | samples (not idle) | record() | ticks and stream | console in all |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  const pct = (n) => `${((100 * n) / r.busy).toFixed(3)} %`;
  console.log(`| ${r.consoleOpen ? 'one open' : 'none open'} | ${r.rps.toFixed(0)} | ${r.busy} | ${pct(r.record)} | ${pct(r.ticks)} | ${pct(r.record + r.ticks)} |`);
}

async function phase(consoleOpen) {
  const port = await getFreePort();
  const profiles = join(work, consoleOpen ? 'open' : 'closed');
  const config = join(work, 'switchyard.json');
  writeFileSync(
    config,
    JSON.stringify({
      server: { host: '127.0.0.1', port, accessLog: false, admin: { key: ADMIN_KEY, prefix: '/_switchyard' } },
      routes: [{ name: 'bench', match: { pathPrefix: '/' }, upstreams: [{ url: `http://127.0.0.1:${upstreamPort}` }] }],
    }),
  );
  const proxy = spawnTracked(
    'switchyard',
    process.execPath,
    ['--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${profiles}`, join(ROOT, 'dist/bin/switchyard.js'), 'start', '--config', config, '--no-watch'],
    { core: PROXY_CORE },
  );
  await waitForHttp200(() => `http://127.0.0.1:${port}/_switchyard/health`, { child: proxy });
  const stream = consoleOpen ? await openConsoleStream(port) : null;
  const load = await runWrk({ url: `http://127.0.0.1:${port}/`, seconds: SECONDS, connections: CONNECTIONS, core: LOAD_CORE });
  if (stream) {
    stream.abort();
    if (stream.events() < Math.floor(SECONDS / 2) - 1) throw new Error(`the console stream heard only ${stream.events()} events`);
  }
  await stopChild(proxy, 10_000);
  const file = readdirSync(profiles).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${profiles}`);
  return { consoleOpen, rps: load.requestsPerSecond, ...consoleShare(JSON.parse(readFileSync(join(profiles, file), 'utf8'))) };
}

/** The console page's event stream, read and counted until aborted. */
async function openConsoleStream(port) {
  const controller = new AbortController();
  const res = await fetch(`http://127.0.0.1:${port}/_switchyard/console/api/events`, {
    headers: { authorization: `Bearer ${ADMIN_KEY}`, accept: 'text/event-stream' },
    signal: controller.signal,
  });
  if (res.status !== 200) throw new Error(`console stream answered ${res.status}`);
  let events = 0;
  (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of res.body) events += decoder.decode(chunk, { stream: true }).split('\n\n').length - 1;
  })().catch(() => {});
  return { abort: () => controller.abort(), events: () => events };
}

/** Samples (not idle) in the whole profile, under the recorder's record(), and under other console code. */
function consoleShare(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Per request: console code called from recordFinished() (core/flow.js), however V8 inlined
  // record() into it; anything else in core/console*.js runs for ticks and the stream.
  const kind = new Map();
  const kindOf = (id) => {
    if (kind.has(id)) return kind.get(id);
    const frame = byId.get(id).callFrame;
    const above = parent.has(id) ? kindOf(parent.get(id)) : 'other';
    let result = above;
    if (above === 'other' && frame.functionName === 'recordFinished') result = 'finishing';
    else if (/\/core\/console(-recorder)?\.js$/.test(frame.url)) result = above === 'finishing' ? 'record' : above === 'other' ? 'ticks' : above;
    kind.set(id, result);
    return result;
  };
  let busy = 0;
  const names = new Map();
  const counts = { record: 0, ticks: 0, finishing: 0, other: 0 };
  for (const id of profile.samples) {
    if (byId.get(id).callFrame.functionName === '(idle)') continue;
    busy++;
    const k = kindOf(id);
    counts[k]++;
    if (process.env.DEBUG_CONSOLE_COST && (k === 'ticks' || k === 'record')) {
      const f = byId.get(id).callFrame;
      const key = `${k} ${f.functionName} ${f.url.split('/').slice(-2).join('/')}`;
      names.set(key, (names.get(key) ?? 0) + 1);
    }
  }
  if (names.size) console.log([...names].sort((a, b) => b[1] - a[1]).slice(0, 15));
  return { busy, record: counts.record, ticks: counts.ticks };
}

/**
 * record()'s instructions per call, counted by callgrind (deterministic where timing on this
 * machine is not; V8's background compiler off, whose timing moves the count by half): bench/callgrind/console-record.mjs at 200,000 and 1,200,000 calls, less the
 * same for its bare loop. Null without valgrind.
 */
function recordInstructions() {
  const script = join(ROOT, 'bench/callgrind/console-record.mjs');
  const count = (calls, loop) => {
    const out = spawnSync('valgrind', ['--tool=callgrind', '--callgrind-out-file=/dev/null', process.execPath, '--single-threaded', script, String(calls), ...(loop ? ['loop'] : [])], { encoding: 'utf8' });
    const collected = /Collected : (\d+)/.exec(out.stderr ?? '');
    if (out.status !== 0 || !collected) throw new Error(`callgrind of ${script} failed:\n${out.stderr}`);
    return Number(collected[1]);
  };
  if (spawnSync('valgrind', ['--version']).status !== 0) return null;
  const extra = 1_000_000;
  const withRecord = count(200_000 + extra, false) - count(200_000, false);
  const loop = count(200_000 + extra, true) - count(200_000, true);
  return (withRecord - loop) / extra;
}
