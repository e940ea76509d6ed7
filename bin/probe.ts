// `switchyard probe`: measures upstreams (availability, errors by kind, latency percentiles) with
// bounded concurrent requests at a fixed rate, recommends an order and weights, and can write the
// weights into a config file, which a running Switchyard then picks up through its file watch.
import { copyFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Agent } from 'undici';
import YAML from 'yaml';
import { loadConfig, type Catalogs } from '../core/index.js';
import { argumentProblem } from './args.js';

export class ProbeUsageError extends Error {}

export interface Target {
  url: string;
  name: string;
}

export interface ProbeSettings {
  path: string;
  durationMs: number;
  /** Most requests in flight per upstream. */
  concurrency: number;
  /** Requests started per second per upstream. */
  rate: number;
  timeoutMs: number;
  /** Stop an upstream after this many requests (0 = only the duration bounds it). */
  maxRequests: number;
}

export interface UpstreamReport {
  name: string;
  url: string;
  requests: number;
  ok: number;
  availability: number;
  errors: Record<string, number>;
  latencyMs: { min: number; avg: number; p50: number; p95: number; p99: number; max: number } | null;
  rank: number;
  /** Recommended weight; 0: leave it out (nothing answered). */
  weight: number;
}

export const PROBE_USAGE = `switchyard probe [--preset NAME | --config FILE | URL...] [--path /] [--duration 30s] [--concurrency 10]
                 [--rate 10] [--timeout 5s] [--max-requests N] [--json] [--write FILE]`;

function parseProbeArgs(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        preset: { type: 'string' },
        config: { type: 'string', short: 'c' },
        path: { type: 'string', default: '/' },
        duration: { type: 'string', default: '30s' },
        concurrency: { type: 'string', default: '10' },
        rate: { type: 'string', default: '10' },
        timeout: { type: 'string', default: '5s' },
        'max-requests': { type: 'string', default: '0' },
        json: { type: 'boolean', default: false },
        write: { type: 'string' },
      },
    });
  } catch (err) {
    throw new ProbeUsageError(argumentProblem(err));
  }
}

export async function probeCommand(args: string[], catalogs: Catalogs): Promise<number> {
  const { values, positionals } = parseProbeArgs(args);
  const settings: ProbeSettings = {
    path: values.path!.startsWith('/') ? values.path! : `/${values.path}`,
    durationMs: duration('--duration', values.duration!),
    concurrency: positiveInt('--concurrency', values.concurrency!),
    rate: positiveInt('--rate', values.rate!),
    timeoutMs: duration('--timeout', values.timeout!),
    maxRequests: positiveInt('--max-requests', values['max-requests']!, true),
  };
  const targets = await targetsFrom(values.preset, values.config, positionals, catalogs);
  if (targets.length === 0) throw new ProbeUsageError('nothing to probe: give URLs, --config FILE or --preset NAME');
  const live = !values.json && process.stderr.isTTY === true;
  // Ctrl-C ends the measuring early; what was measured until then is still reported.
  const interrupt = new AbortController();
  const onSigint = () => interrupt.abort();
  process.once('SIGINT', onSigint);
  const startedAt = Date.now();
  let reports: UpstreamReport[];
  try {
    reports = await probe(targets, settings, live ? (line) => process.stderr.write(`\r\x1b[2K${line}`) : undefined, interrupt.signal);
  } finally {
    process.off('SIGINT', onSigint);
  }
  if (live) process.stderr.write('\r\x1b[2K');
  if (interrupt.signal.aborted) {
    const measured = { ...settings, durationMs: Date.now() - startedAt };
    if (values.json) console.log(JSON.stringify({ settings: measured, interrupted: true, upstreams: reports }, null, 2));
    else console.log(`interrupted after ${measured.durationMs} ms: what was measured until then\n${table(reports, measured)}`);
    if (values.write) console.error(`${values.write}: not written, the probe was interrupted`);
    return 130;
  }
  if (values.json) console.log(JSON.stringify({ settings, upstreams: reports }, null, 2));
  else console.log(table(reports, settings));
  if (values.write) {
    const changed = writeWeights(values.write, values.config, reports);
    const message = `${values.write}: ${changed} weight${changed === 1 ? '' : 's'} written${existsSync(`${values.write}.bak`) ? ` (backup: ${values.write}.bak)` : ''}`;
    if (values.json) console.error(message);
    else console.log(message);
  }
  return 0;
}

/** Upstreams from URLs, or every route's upstreams of a config file / preset (deduplicated by URL). */
async function targetsFrom(preset: string | undefined, config: string | undefined, urls: string[], catalogs: Catalogs): Promise<Target[]> {
  const targets = new Map<string, Target>();
  for (const url of urls) {
    if (!/^https?:\/\/[^\s/]+/.test(url) || !URL.canParse(url)) throw new ProbeUsageError(`"${url}" is not an http(s) URL`);
    targets.set(url, { url, name: url });
  }
  if (preset !== undefined || config !== undefined) {
    const loaded = await loadConfig({ file: config, preset }, catalogs);
    for (const route of loaded.config.routes) {
      for (const upstream of route.upstreams) if (!targets.has(upstream.url)) targets.set(upstream.url, { url: upstream.url, name: upstream.name ?? upstream.url });
    }
  }
  return [...targets.values()];
}

/** Probes every target at once; each gets `rate` requests per second, at most `concurrency` in flight. */
export async function probe(targets: Target[], settings: ProbeSettings, progress?: (line: string) => void, stop?: AbortSignal): Promise<UpstreamReport[]> {
  // Loaded here, not at the top: `switchyard start` imports this file too, and has no use for undici's fetch and friends.
  const { Agent, request } = await import('undici');
  const dispatcher = new Agent({ keepAliveTimeout: 10_000, connections: settings.concurrency });
  const started = Date.now();
  const samples = targets.map(() => ({ requests: 0, ok: 0, errors: {} as Record<string, number>, latencies: [] as number[] }));
  const ticker = progress && setInterval(() => {
    const sent = samples.reduce((n, s) => n + s.requests, 0);
    const errors = samples.reduce((n, s) => n + s.requests - s.ok, 0);
    const left = Math.max(0, Math.ceil((settings.durationMs - (Date.now() - started)) / 1000));
    progress(`probing ${targets.length} upstream${targets.length === 1 ? '' : 's'}: ${sent} requests, ${errors} errors, ${left}s left`);
  }, 250);
  try {
    await Promise.all(targets.map((target, i) => probeOne(target, settings, dispatcher, request, samples[i]!, stop)));
  } finally {
    if (ticker) clearInterval(ticker);
    // Stopped early: the requests still in flight are dropped, not waited for.
    if (stop?.aborted) await dispatcher.destroy();
    else await dispatcher.close();
  }
  return recommend(targets.map((target, i) => summarise(target, samples[i]!)));
}

type Sample = { requests: number; ok: number; errors: Record<string, number>; latencies: number[] };

function probeOne(target: Target, settings: ProbeSettings, dispatcher: Agent, request: typeof import('undici').request, sample: Sample, stop?: AbortSignal): Promise<void> {
  // A base path in the upstream URL stays: http://h/v1 + /ping → http://h/v1/ping.
  const url = new URL(`${target.url.replace(/\/$/, '')}${settings.path}`);
  const end = Date.now() + settings.durationMs;
  const interval = 1000 / settings.rate;
  let inFlight = 0;
  let sent = 0;
  return new Promise((resolve) => {
    // Requests still in flight when stopped have no outcome: they are not counted.
    const stopNow = () => {
      clearInterval(timer);
      sample.requests -= inFlight;
      resolve();
    };
    if (stop?.aborted) return resolve();
    stop?.addEventListener('abort', stopNow, { once: true });
    const finishIfDone = () => {
      if (stop?.aborted) return;
      if (inFlight === 0 && (Date.now() >= end || (settings.maxRequests > 0 && sent >= settings.maxRequests))) {
        clearInterval(timer);
        stop?.removeEventListener('abort', stopNow);
        resolve();
      }
    };
    const fire = () => {
      if (stop?.aborted) return;
      if (Date.now() >= end || (settings.maxRequests > 0 && sent >= settings.maxRequests)) return finishIfDone();
      // A slow upstream does not get more requests piled on: a tick with every slot busy is skipped.
      if (inFlight >= settings.concurrency) return;
      inFlight++;
      sent++;
      sample.requests++;
      const t0 = performance.now();
      request(url, { method: 'GET', dispatcher, signal: AbortSignal.timeout(settings.timeoutMs), headers: { 'user-agent': 'switchyard-probe' } })
        .then(async (res) => {
          await res.body.dump();
          if (stop?.aborted) return;
          const ms = performance.now() - t0;
          if (res.statusCode < 400) {
            sample.ok++;
            sample.latencies.push(ms);
          } else {
            const kind = res.statusCode >= 500 ? 'http-5xx' : 'http-4xx';
            sample.errors[kind] = (sample.errors[kind] ?? 0) + 1;
          }
        })
        // A failed request or a body cut off half way: an error of its kind (none once stopped).
        .catch((err: unknown) => {
          if (stop?.aborted) return;
          const kind = errorKind(err);
          sample.errors[kind] = (sample.errors[kind] ?? 0) + 1;
        })
        .finally(() => {
          inFlight--;
          finishIfDone();
        });
    };
    const timer = setInterval(fire, interval);
    fire();
  });
}

function errorKind(err: unknown): string {
  const e = err as { name?: string; code?: string; cause?: { code?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') return 'timeout';
  const code = e.code ?? e.cause?.code;
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'reset';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'dns';
  if (code?.startsWith('ERR_TLS') || code?.includes('CERT')) return 'tls';
  return code ?? 'other';
}

function summarise(target: Target, s: Sample): UpstreamReport {
  const sorted = [...s.latencies].sort((a, b) => a - b);
  const at = (p: number) => round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!);
  return {
    name: target.name,
    url: target.url,
    requests: s.requests,
    ok: s.ok,
    availability: s.requests === 0 ? 0 : round((s.ok / s.requests) * 100),
    errors: s.errors,
    latencyMs: sorted.length === 0 ? null : {
      min: round(sorted[0]!), avg: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
      p50: at(50), p95: at(95), p99: at(99), max: round(sorted.at(-1)!),
    },
    rank: 0,
    weight: 0,
  };
}

/**
 * Order: availability (whole percents) first, then median latency. Weight: 10 for the fastest
 * available upstream, the others in proportion to its p50 over theirs, scaled by availability
 * squared (an upstream failing 10% of requests loses about a fifth of its share); at least 1.
 */
export function recommend(reports: UpstreamReport[]): UpstreamReport[] {
  const ordered = [...reports].sort((a, b) =>
    Math.round(b.availability) - Math.round(a.availability) || (a.latencyMs?.p50 ?? Infinity) - (b.latencyMs?.p50 ?? Infinity));
  const fastest = Math.min(...ordered.filter((r) => r.latencyMs).map((r) => Math.max(r.latencyMs!.p50, 0.1)));
  return ordered.map((r, i) => {
    const weight = r.latencyMs && r.ok > 0
      ? Math.max(1, Math.round(10 * (fastest / Math.max(r.latencyMs.p50, 0.1)) * (r.availability / 100) ** 2))
      : 0;
    return { ...r, rank: i + 1, weight };
  });
}

function table(reports: UpstreamReport[], settings: ProbeSettings): string {
  const head = ['#', 'upstream', 'requests', 'avail %', 'errors', 'min', 'avg', 'p50', 'p95', 'p99', 'max', 'weight'];
  const rows = reports.map((r) => [
    String(r.rank), r.name, String(r.requests), r.availability.toFixed(1),
    Object.entries(r.errors).map(([k, n]) => `${k}:${n}`).join(' ') || '-',
    ...(r.latencyMs ? [r.latencyMs.min, r.latencyMs.avg, r.latencyMs.p50, r.latencyMs.p95, r.latencyMs.p99, r.latencyMs.max].map((v) => v.toFixed(1)) : Array(6).fill('-')),
    r.weight === 0 ? 'out' : String(r.weight),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 1 || i === 4 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const order = reports.filter((r) => r.weight > 0).map((r) => `${r.name} (weight ${r.weight})`).join(' > ') || 'none answered';
  return [
    `probe ${settings.path}: ${settings.durationMs} ms, ${settings.rate}/s per upstream, ${settings.concurrency} at most in flight, timeout ${settings.timeoutMs} ms (latency in ms)`,
    line(head), ...rows.map(line), '', `recommended order: ${order}`,
  ].join('\n');
}

/**
 * Sets `weight` on every upstream entry of `file` whose URL was probed (an upstream nothing
 * answered keeps its weight: health checks keep it out). A missing `file` starts as a copy of
 * `config`; an existing one is backed up to FILE.bak. Written beside and renamed, so a watching
 * Switchyard never reads half a file. Comments and layout of the YAML survive.
 */
export function writeWeights(file: string, config: string | undefined, reports: UpstreamReport[]): number {
  if (existsSync(file)) copyFileSync(file, `${file}.bak`);
  else if (config && existsSync(config)) copyFileSync(config, file);
  else throw new ProbeUsageError(`--write ${file}: the file does not exist; give --config FILE to copy it from, or an existing file`);
  const doc = YAML.parseDocument(readFileSync(file, 'utf8'));
  const weights = new Map(reports.filter((r) => r.weight > 0).map((r) => [r.url, r.weight]));
  let changed = 0;
  const routes = doc.get('routes');
  if (YAML.isSeq(routes)) {
    for (const route of routes.items) {
      const upstreams = YAML.isMap(route) ? route.get('upstreams') : undefined;
      if (!YAML.isSeq(upstreams)) continue;
      for (const upstream of upstreams.items) {
        if (!YAML.isMap(upstream)) continue;
        const weight = weights.get(String(upstream.get('url')));
        if (weight === undefined) continue;
        upstream.set('weight', weight);
        changed++;
      }
    }
  }
  const temp = `${file}.probe-${process.pid}.tmp`;
  writeFileSync(temp, doc.toString());
  renameSync(temp, file);
  return changed;
}

function duration(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new ProbeUsageError(`${flag} ${text} is not a duration like 30s, 300ms or 1m`);
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] ?? 's']!);
}

function positiveInt(flag: string, text: string, zeroOk = false): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < (zeroOk ? 0 : 1)) throw new ProbeUsageError(`${flag} ${text} is not a whole number${zeroOk ? ' ≥ 0' : ' ≥ 1'}`);
  return n;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
