#!/usr/bin/env node
// Paired load: a cost too small for run.mjs's rounds to resolve. Each round there is a fresh
// process measured alone, and on this machine a round's CPU µs/request moves 10-20 % from one to
// the next, so a 3 % target drowns; loading two proxies by turns in 5 s windows did no better
// (one proxy's windows moved 49-79 µs). Here the two run side by side for the whole run, pinned
// to the same core: the plain route (bench/switchyard.bench.yaml) and the same route with the
// plugin under test. Each window loads both at once, each with its own wrk, so whatever the
// machine does in that window it does to both, and gives one ratio of CPU per request, read
// from the kernel's per-thread run time (/proc/PID/task/*/schedstat, nanoseconds: /proc's ticks
// would be a 1 % step per window). This is done for several pairs of fresh processes in turn
// (see measurePair); the figure is the median ratio over all their windows, with each pair's own.
// The report also splits each side's time into user and system (/proc/PID/stat) over all windows.
//
//   node bench/paired.mjs            (or: npm run bench:paired, which builds first)
//
// Env: BENCH_PAIRED (what to compare with the plain route: tracing-1pct, the default,
//      tracing-sampled, tracing-unsampled, one-header, plain itself, idle-taps, tracing-loaded,
//      ballast or trace-floor; see COMPARISONS), BENCH_PAIRED_AGAINST (what it is compared with:
//      the plain route, the default, or another of COMPARISONS, as tracing-1pct against
//      tracing-unsampled for what sampling adds to trace context alone), BENCH_CLIENT (what the
//      requests look like: fetch, the default, browser, wrk, traced, openai-sdk, anthropic-sdk or
//      gemini-sdk; see CLIENTS),
//      BENCH_PAIRS (pairs of fresh processes measured one after the other, 3), BENCH_WINDOWS
//      (measured per pair, 8), BENCH_WINDOW (seconds, 5), BENCH_TRACING_WARMUP (seconds of load
//      each pair gets first, in windows, 40), BENCH_CONNECTIONS (per proxy, 32), BENCH_GC (1: each
//      proxy also sums its garbage-collection pauses, bench/lib/gc-pauses.cjs, and the report says
//      what share of each side's CPU they were).
// Bounded: pairs × (warm-up + windows × window seconds) of load (about 4 min by default);
// 127.0.0.1 only.
// Writes bench/results/<time>-paired-<name>-<client>.md.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './lib/aggregate.mjs';
import { CHROMIUM_FETCH } from './lib/chromium-fetch.mjs';
import { CLK_TCK, readStat } from './lib/cpu.mjs';
import { wholeNumberFromEnv } from './lib/env.mjs';
import {
  getFreePort, installCleanupHandlers, parsePortHandshake, pinningTool, spawnTracked, stopChild, waitForHttp200, waitForLine,
} from './lib/processes.mjs';
import { BROWSER_HEADERS } from './lib/web-proxy.mjs';
import { runWrk, WRK, WRK_INSTALL_HINT } from './lib/wrk.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);

/** What can be compared with the plain route: its config, environment and the issue's target. */
const COMPARISONS = {
  'tracing-1pct': { config: 'configs/tracing.yaml', env: { BENCH_SAMPLE_RATIO: '0.01' }, target: 1.03, issue: 28 },
  'tracing-sampled': { config: 'configs/tracing.yaml', env: { BENCH_SAMPLE_RATIO: '1' }, target: 1.25, issue: 28 },
  // No target: what trace context alone costs (no request sampled), to split the 1 % figure.
  'tracing-unsampled': { config: 'configs/tracing.yaml', env: { BENCH_SAMPLE_RATIO: '0' }, target: null, issue: 28 },
  // No target: one fixed header more on the upstream request, what propagation alone costs.
  'one-header': { config: 'configs/one-header.yaml', env: { BENCH_SAMPLE_RATIO: '0' }, target: null, issue: 28 },
  // No target: the plain route against itself, what the method reads for a cost of nothing.
  plain: { config: 'switchyard.bench.yaml', env: {}, target: null, issue: 28 },
  // No target: what tracing costs by being there, before it does anything. Its stages tapped by a
  // plugin that does nothing in them (bench/plugins/idle-taps.mjs); the same with tracing's
  // packages loaded and unused; the same with 3.5 MB of plain data on the heap, what loading
  // them adds to it.
  'idle-taps': { config: 'configs/idle-taps.yaml', env: {}, target: null, issue: 28 },
  'tracing-loaded': { config: 'configs/idle-taps.yaml', env: { IDLE_LOAD_TRACING: 'true' }, target: null, issue: 28 },
  ballast: { config: 'configs/idle-taps.yaml', env: { IDLE_BALLAST_MB: '3.5' }, target: null, issue: 28 },
  // No target: the least trace context needs (a new traceparent upstream, OpenTelemetry not
  // loaded; bench/plugins/trace-floor.mjs), what tracing at 0 is compared with for its own share.
  'trace-floor': { config: 'configs/trace-floor.yaml', env: {}, target: null, issue: 28 },
};

/**
 * What the load sends, the same to both proxies. wrk alone sends a GET with Host and nothing else,
 * which no real client does, and every header a client adds costs the plain route too (parsed,
 * copied to the upstream request, checked by undici): a ratio measured on wrk's bare GET is the
 * plugin's cost against the cheapest request there is.
 */
const FROM_A_PAGE = { ...BROWSER_HEADERS, origin: 'https://app.example.com' };
/**
 * The headers `openai` 6.49.0 (the SDK for Node) sent with `chat.completions.create`, captured by
 * a node:http server on this machine (2026-12-06), in its order, but for Host, Connection and
 * Content-Length, which wrk writes. The key is the capture's own: the bench upstream checks none.
 * The method, path and body are bench/openai-sdk-post.lua's.
 */
const OPENAI_SDK_CHAT = {
  accept: 'application/json',
  'user-agent': 'OpenAI/JS 6.49.0',
  'x-stainless-retry-count': '0',
  'x-stainless-lang': 'js',
  'x-stainless-package-version': '6.49.0',
  'x-stainless-os': 'Linux',
  'x-stainless-arch': 'x64',
  'x-stainless-runtime': 'node',
  'x-stainless-runtime-version': 'v20.20.2',
  authorization: 'Bearer sk-proj-capture',
  'content-type': 'application/json',
  'accept-language': '*',
  'sec-fetch-mode': 'cors',
  'accept-encoding': 'gzip, deflate',
};
/**
 * The headers `@anthropic-ai/sdk` 1.12.0 sent with `messages.create`, captured as the OpenAI
 * SDK's were (2026-12-06), names as it spelt them and in its order. Method, path and body:
 * bench/anthropic-sdk-post.lua.
 */
const ANTHROPIC_SDK_MESSAGE = {
  Accept: 'application/json',
  'User-Agent': 'Anthropic/JS 1.12.0',
  'X-Stainless-Retry-Count': '0',
  'X-Stainless-Timeout': '600',
  'X-Stainless-Lang': 'js',
  'X-Stainless-Package-Version': '1.12.0',
  'X-Stainless-OS': 'Linux',
  'X-Stainless-Arch': 'x64',
  'X-Stainless-Runtime': 'node',
  'X-Stainless-Runtime-Version': 'v20.20.2',
  'anthropic-version': '2026-10-21',
  authorization: 'Bearer sk-ant-capture',
  'content-type': 'application/json',
  'accept-language': '*',
  'sec-fetch-mode': 'cors',
  'accept-encoding': 'gzip, deflate',
};
/**
 * The headers `@google/genai` 2.32.0 sent with `models.generateContent`, captured the same way.
 * Method, path and body: bench/gemini-sdk-post.lua.
 */
const GEMINI_SDK_GENERATE = {
  'User-Agent': 'google-genai-sdk/2.32.0 gl-node/v20.20.2',
  'x-goog-api-client': 'google-genai-sdk/2.32.0 gl-node/v20.20.2',
  'Content-Type': 'application/json',
  'x-goog-api-key': 'AIza-capture',
  accept: '*/*',
  'accept-language': '*',
  'sec-fetch-mode': 'cors',
  'accept-encoding': 'gzip, deflate',
};
const CLIENTS = {
  // A browser's API call: Chromium's cross-site fetch(), every header it sends.
  fetch: { headers: CHROMIUM_FETCH, script: null },
  // What the figures of 2026-12-06 09:15–09:50 were taken with: four of a navigation's headers
  // (bench/lib/web-proxy.mjs) and an Origin, which a navigation does not send.
  browser: { headers: FROM_A_PAGE, script: null },
  wrk: { headers: {}, script: null },
  // The fetch, with a caller's own traceparent, a new trace each request, sampled at the
  // comparison's ratio (bench/traced-caller.lua): a service behind a traced front end.
  traced: { headers: CHROMIUM_FETCH, script: path.join(BENCH_DIR, 'traced-caller.lua') },
  // An API client's call with a body: the OpenAI SDK's chat completion POST, headers and JSON body.
  'openai-sdk': { headers: OPENAI_SDK_CHAT, script: path.join(BENCH_DIR, 'openai-sdk-post.lua') },
  // The other two providers' SDKs, each with its own headers and body: a message, a generateContent.
  'anthropic-sdk': { headers: ANTHROPIC_SDK_MESSAGE, script: path.join(BENCH_DIR, 'anthropic-sdk-post.lua') },
  'gemini-sdk': { headers: GEMINI_SDK_GENERATE, script: path.join(BENCH_DIR, 'gemini-sdk-post.lua') },
};

const UNDER_TEST_CORE = 0;
const LOAD_CORE = 1;

const settings = {
  name: process.env.BENCH_PAIRED || 'tracing-1pct',
  client: process.env.BENCH_CLIENT || 'fetch',
  pairs: wholeNumberFromEnv('BENCH_PAIRS', 3),
  windows: wholeNumberFromEnv('BENCH_WINDOWS', 8),
  windowSeconds: wholeNumberFromEnv('BENCH_WINDOW', 5),
  warmupSeconds: wholeNumberFromEnv('BENCH_TRACING_WARMUP', 40),
  connections: wholeNumberFromEnv('BENCH_CONNECTIONS', 32),
  gc: process.env.BENCH_GC === '1',
};
const gcDir = settings.gc ? mkdtempSync(path.join(tmpdir(), 'switchyard-paired-gc-')) : null;
const comparison = COMPARISONS[settings.name];
if (!comparison) throw new Error(`BENCH_PAIRED must be one of ${Object.keys(COMPARISONS).join(', ')}, got "${settings.name}"`);
const against = process.env.BENCH_PAIRED_AGAINST || 'plain';
const baseline = COMPARISONS[against];
if (!baseline) throw new Error(`BENCH_PAIRED_AGAINST must be one of ${Object.keys(COMPARISONS).join(', ')}, got "${against}"`);
const client = CLIENTS[settings.client];
if (!client) throw new Error(`BENCH_CLIENT must be one of ${Object.keys(CLIENTS).join(', ')}, got "${settings.client}"`);
// Read by traced-caller.lua, which wrk runs with this process's environment.
process.env.BENCH_CALLER_SAMPLED = comparison.env.BENCH_SAMPLE_RATIO;
if (!WRK) throw new Error(`wrk not found: ${WRK_INSTALL_HINT}`);
if (!pinningTool) console.log('paired: taskset not found, running unpinned: the windows will be noisier');

/**
 * Nanoseconds the process's threads have run, from the scheduler's own accounting: the event
 * loop's thread (the one whose id is the process's) and the others (V8's compiler and GC helpers,
 * libuv's pool) apart.
 */
function runNanoseconds(pid) {
  const used = { main: 0, others: 0 };
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      const ran = Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
      if (task === String(pid)) used.main += ran;
      else used.others += ran;
    } catch {
      // The thread ended between the listing and the read: its time is in no later reading either.
    }
  }
  return used;
}

async function startUpstream() {
  const child = spawnTracked('upstream', process.execPath, [path.join(BENCH_DIR, 'servers/upstream.mjs')], { core: LOAD_CORE });
  const port = await waitForLine(child, parsePortHandshake, 10_000);
  return { child, url: `http://127.0.0.1:${port}` };
}

/** A proxy's GC pauses so far (bench/lib/gc-pauses.cjs): none until its first collection. */
function gcTotals(proxy) {
  const none = { pauseMs: 0, minor: 0, major: 0 };
  if (!proxy.gcFile || !existsSync(proxy.gcFile)) return none;
  const lines = readFileSync(proxy.gcFile, 'utf8').trimEnd().split('\n');
  return lines[0] === '' ? none : JSON.parse(lines.at(-1));
}

async function startProxy(name, config, env, upstreamUrl) {
  const port = await getFreePort();
  const gcFile = gcDir ? path.join(gcDir, `${name}-${port}.jsonl`) : null;
  const gcEnv = gcFile ? { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require "${path.join(BENCH_DIR, 'lib/gc-pauses.cjs')}"`, BENCH_GC_FILE: gcFile } : {};
  const args = [path.join(ROOT, 'dist/bin/switchyard.js'), 'start', '--config', path.join(BENCH_DIR, config), '--port', String(port), '--no-watch'];
  const child = spawnTracked(name, process.execPath, args, {
    core: UNDER_TEST_CORE,
    cwd: ROOT,
    env: { ...process.env, UPSTREAM_URL: upstreamUrl, SWITCHYARD_ENGINE: 'undici', ...gcEnv, ...env },
  });
  await waitForHttp200(() => `http://127.0.0.1:${port}/health`, { timeoutMs: 10_000, child });
  return { name, child, url: `http://127.0.0.1:${port}/`, gcFile };
}

/** Both proxies loaded at once for one window, each by its own wrk: requests and CPU µs per request of each. */
async function window(proxies) {
  const before = proxies.map((proxy) => runNanoseconds(proxy.child.pid));
  const statsBefore = proxies.map((proxy) => readStat(proxy.child.pid));
  const gcBefore = proxies.map(gcTotals);
  const results = await Promise.all(proxies.map((proxy) => runWrk({ url: proxy.url, seconds: settings.windowSeconds, connections: settings.connections, core: LOAD_CORE, ...client })));
  return proxies.map((proxy, i) => {
    const { requests, non2xx } = results[i];
    if (non2xx > 0 || requests === 0) throw new Error(`${proxy.name}: ${non2xx} answers not 2xx of ${requests}`);
    const after = runNanoseconds(proxy.child.pid);
    const statsAfter = readStat(proxy.child.pid);
    const gcAfter = gcTotals(proxy);
    const main = (after.main - before[i].main) / 1000 / requests;
    const others = (after.others - before[i].others) / 1000 / requests;
    // The same time split into user and system, in clock ticks: 10 ms each, so summed over all windows (splitOf).
    const split = {
      userTicks: statsAfter.utime - statsBefore[i].utime,
      systemTicks: statsAfter.stime - statsBefore[i].stime,
      minorFaults: statsAfter.minflt - statsBefore[i].minflt,
    };
    const gc = { pauseMs: gcAfter.pauseMs - gcBefore[i].pauseMs, minor: gcAfter.minor - gcBefore[i].minor, major: gcAfter.major - gcBefore[i].major };
    return { requests, cpuMicrosPerRequest: main + others, mainMicrosPerRequest: main, split, gc };
  });
}

installCleanupHandlers();
const upstream = await startUpstream();
console.log(`paired: ${settings.name} against ${against}, ${settings.pairs} pairs of fresh processes, each ${settings.warmupSeconds} s of warm-up (in windows) and ${settings.windows} windows of ${settings.windowSeconds} s, wrk -c${settings.connections} on each, ${settings.client} requests`);
const windows = [];
for (let pair = 1; pair <= settings.pairs; pair++) windows.push(...(await measurePair(pair)));
await stopChild(upstream.child);
if (gcDir) rmSync(gcDir, { recursive: true, force: true });

/**
 * One pair of fresh processes, warmed up, then measured window by window. Two processes of one
 * build are not equally fast: where V8 and the allocator put code and objects differs from one
 * start to the next, and a pair keeps its lot for its whole life (one configuration's run medians
 * read 1.003× and 1.075× on 2026-12-06, each run's own windows within 3–8 %). Several pairs
 * sample that.
 */
async function measurePair(pair) {
  const base = await startProxy(against, baseline.config, baseline.env, upstream.url);
  const traced = await startProxy(settings.name, comparison.config, comparison.env, upstream.url);
  // The warm-up runs in windows too. Each wrk run opens new connections, and a request on a new
  // connection meets objects V8 had not seen since it optimised (a socket before node:net caches
  // its peer's address, for one): after one long warm-up run, each of the first windows set off a
  // round of deoptimisations and recompiles, in both proxies, and more in the one with more code
  // on the path (bench/README.md, "JIT settling"). Windows in a row settle it.
  for (let warmed = 0; warmed < settings.warmupSeconds; warmed += settings.windowSeconds) await window([base, traced]);
  const rows = [];
  for (let n = 1; n <= settings.windows; n++) {
    const [baseWindow, tracedWindow] = await window([base, traced]);
    const row = { pair, base: baseWindow, traced: tracedWindow, ratio: tracedWindow.cpuMicrosPerRequest / baseWindow.cpuMicrosPerRequest };
    rows.push(row);
    console.log(`pair ${pair} window ${n}: ${against} ${row.base.cpuMicrosPerRequest.toFixed(1)} (event loop ${row.base.mainMicrosPerRequest.toFixed(1)}; ${row.base.requests} requests), ${settings.name} ${row.traced.cpuMicrosPerRequest.toFixed(1)} (${row.traced.mainMicrosPerRequest.toFixed(1)}; ${row.traced.requests}) CPU µs/req: ${row.ratio.toFixed(3)}×`);
  }
  for (const proxy of [traced, base]) await stopChild(proxy.child);
  return rows;
}

const ratios = windows.map((w) => w.ratio);
const figure = median(ratios);
const pairMedians = Array.from({ length: settings.pairs }, (_, i) => median(windows.filter((w) => w.pair === i + 1).map((w) => w.ratio)));
const verdict = comparison.target === null || against !== 'plain' ? '' : ` Issue ${comparison.issue}'s target ≤ ${comparison.target}×: ${figure <= comparison.target ? 'met' : '**missed**'}.`;
/**
 * One side's user and system CPU µs per request and minor page faults per 1,000 requests, over all
 * windows: whether a cost is the proxy's own code or the kernel's work for it (syscalls, faults).
 */
function splitOf(side) {
  const sum = (key) => windows.reduce((total, w) => total + w[side].split[key], 0);
  const requests = windows.reduce((total, w) => total + w[side].requests, 0);
  const micros = (ticks) => ((ticks / CLK_TCK) * 1e6) / requests;
  return { user: micros(sum('userTicks')), system: micros(sum('systemTicks')), faults: (sum('minorFaults') * 1000) / requests };
}
const baseSplit = splitOf('base');
const tracedSplit = splitOf('traced');
/** One side's GC pauses over all windows: µs per request, share of its CPU, collections per 1,000 requests. */
function gcOf(side) {
  const sum = (pick) => windows.reduce((total, w) => total + pick(w[side]), 0);
  const requests = sum((s) => s.requests);
  const pauseMicros = sum((s) => s.gc.pauseMs) * 1000;
  return { perRequest: pauseMicros / requests, share: pauseMicros / sum((s) => s.cpuMicrosPerRequest * s.requests), minor: (sum((s) => s.gc.minor) * 1000) / requests, major: (sum((s) => s.gc.major) * 1000) / requests };
}
const gcLine = (base, traced) =>
  `Garbage-collection pauses, all windows together (bench/lib/gc-pauses.cjs): ${base.perRequest.toFixed(2)} against ${traced.perRequest.toFixed(2)} µs/req, ${(100 * base.share).toFixed(2)} % against ${(100 * traced.share).toFixed(2)} % of each side's CPU; minor collections ${base.minor.toFixed(2)} against ${traced.minor.toFixed(2)}, major ${base.major.toFixed(3)} against ${traced.major.toFixed(3)} per 1,000 requests.`;
const lines = [
  `# Paired load: ${settings.name} against ${against}, ${settings.client} requests`,
  '',
  `${new Date().toISOString()}, \`BENCH_PAIRED=${settings.name} BENCH_PAIRED_AGAINST=${against} BENCH_CLIENT=${settings.client} BENCH_PAIRS=${settings.pairs} BENCH_WINDOWS=${settings.windows} BENCH_WINDOW=${settings.windowSeconds} BENCH_TRACING_WARMUP=${settings.warmupSeconds}${settings.gc ? ' BENCH_GC=1' : ''} node bench/paired.mjs\`, wrk -t1 -c${settings.connections} on each, both proxies on core ${UNDER_TEST_CORE}${pinningTool ? '' : ' (unpinned)'}.`,
  '',
  `| pair | window | ${against} CPU µs/req (event loop's thread) | ${settings.name} CPU µs/req (event loop's thread) | ratio | ratio, event loop's thread |`,
  '| --- | --- | --- | --- | --- | --- |',
  ...windows.map((w, i) => `| ${w.pair} | ${(i % settings.windows) + 1} | ${w.base.cpuMicrosPerRequest.toFixed(1)} (${w.base.mainMicrosPerRequest.toFixed(1)}) | ${w.traced.cpuMicrosPerRequest.toFixed(1)} (${w.traced.mainMicrosPerRequest.toFixed(1)}) | ${w.ratio.toFixed(3)}× | ${(w.traced.mainMicrosPerRequest / w.base.mainMicrosPerRequest).toFixed(3)}× |`),
  '',
  `Median ratio **${figure.toFixed(3)}×** over all windows (windows ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}×; each pair's median ${pairMedians.map((m) => `${m.toFixed(3)}×`).join(', ')}).${verdict}`,
  '',
  `User and system time, all windows together (/proc/PID/stat, ${CLK_TCK} ticks a second): user ${baseSplit.user.toFixed(1)} against ${tracedSplit.user.toFixed(1)} µs/req (${(tracedSplit.user / baseSplit.user).toFixed(3)}×), system ${baseSplit.system.toFixed(1)} against ${tracedSplit.system.toFixed(1)} µs/req (${(tracedSplit.system / baseSplit.system).toFixed(3)}×); minor page faults ${baseSplit.faults.toFixed(2)} against ${tracedSplit.faults.toFixed(2)} per 1,000 requests.`,
  '',
  ...(settings.gc ? [gcLine(gcOf('base'), gcOf('traced')), ''] : []),
];
const report = lines.join('\n');
const resultsDir = path.join(BENCH_DIR, 'results');
mkdirSync(resultsDir, { recursive: true });
const file = path.join(resultsDir, `${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}Z-paired-${settings.name}${against === 'plain' ? '' : `-against-${against}`}-${settings.client}.md`);
writeFileSync(file, report);
console.log(`\n${report}\npaired: wrote ${path.relative(ROOT, file)}`);
