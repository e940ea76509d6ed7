// `switchyard status [URL]`: the console's overview and upstream table in the terminal, read from
// a running proxy's admin API (docs/console.md), once or redrawn every few seconds with --watch.
import { parseArgs } from 'node:util';

export const STATUS_USAGE = 'switchyard status [URL] [--key KEY] [--watch] [--interval SECONDS] [--json]';

const STATUS_HELP = `Usage: ${STATUS_USAGE}
URL is the admin surface: http://HOST:PORT plus server.admin.prefix (default http://127.0.0.1:8080;
with server.admin.port, that port). The admin key comes from --key, else SWITCHYARD_ADMIN_KEY,
else ADMIN_KEY. --watch redraws every --interval seconds (2) until Ctrl-C; --json prints the data.`;

interface Overview {
  version: string;
  uptimeSeconds: number;
  preset: string | null;
  configFile: string | null;
  generation: number;
  inFlight: number;
  reloads: { at: number; ok: boolean; trigger: string; error?: string }[];
  process: { rssBytes: number; heapUsedBytes: number; eventLoopDelayMs: { p99: number; max: number } };
  series: { requests: number; status: Record<string, number>; latencyMs: Latency }[];
}

interface Latency { p50: number | null; p95: number | null; p99: number | null }

interface UpstreamRow {
  name: string;
  healthy: boolean;
  heldBy: { plugin: string; reason: string }[];
  since: number | null;
  weight: number;
  active: boolean;
  draining: boolean;
  inFlight: number | null;
  requests: number;
  failures: number;
  latencyMs: Latency;
}

/** Said when the command line is wrong: the command prints it with its usage and exits 2. */
class StatusUsageError extends Error {}

/** A failure reading the proxy (unreachable, key refused): exit 1 with the message. */
class StatusError extends Error {}

export async function statusCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let options;
  try {
    options = parseOptions(args, env);
  } catch (err) {
    if (!(err instanceof StatusUsageError) && !(err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) throw err;
    console.error(`switchyard status: ${(err as Error).message}\n\n${STATUS_HELP}`);
    return 2;
  }
  if (options.help) {
    console.log(STATUS_HELP);
    return 0;
  }
  try {
    if (!options.watch) {
      const data = await read(options.base, options.key);
      console.log(options.json ? JSON.stringify(data, null, 2) : render(data));
      return 0;
    }
    return await watch(options.base, options.key, options.intervalMs, options.json);
  } catch (err) {
    if (!(err instanceof StatusError)) throw err;
    console.error(`switchyard status: ${err.message}`);
    return 1;
  }
}

function parseOptions(args: string[], env: NodeJS.ProcessEnv) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      key: { type: 'string' },
      watch: { type: 'boolean', short: 'w' },
      interval: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (positionals.length > 1) throw new StatusUsageError(`give one URL, not ${positionals.length}`);
  const given = positionals[0] ?? `http://127.0.0.1:${env.PORT ?? 8080}`;
  let base: URL;
  try {
    base = new URL(given);
  } catch {
    throw new StatusUsageError(`"${given}" is not a URL (e.g. http://127.0.0.1:8080/_switchyard)`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new StatusUsageError(`"${given}" is not an http(s) URL`);
  const seconds = values.interval === undefined ? 2 : Number(values.interval);
  if (!(seconds >= 0.5 && seconds <= 3600)) throw new StatusUsageError('--interval is seconds between 0.5 and 3600');
  const key = values.key ?? env.SWITCHYARD_ADMIN_KEY ?? env.ADMIN_KEY;
  return { base: base.href.replace(/\/+$/, ''), key, watch: values.watch ?? false, intervalMs: seconds * 1000, json: values.json ?? false, help: values.help ?? false };
}

async function read(base: string, key: string | undefined): Promise<{ overview: Overview; routes: { route: string; upstreams: UpstreamRow[] }[] }> {
  const [overview, upstreams] = await Promise.all([
    get<Overview>(base, '/console/api/overview', key),
    get<{ routes: { route: string; upstreams: UpstreamRow[] }[] }>(base, '/console/api/upstreams', key),
  ]);
  if (typeof overview?.version !== 'string' || !Array.isArray(upstreams?.routes)) throw new StatusError(`${base} did not answer like a Switchyard console (is the URL its admin surface, with server.admin.prefix?)`);
  return { overview, routes: upstreams.routes };
}

async function get<T>(base: string, path: string, key: string | undefined): Promise<T> {
  let res: Response;
  try {
    res = await fetch(base + path, { headers: key === undefined ? {} : { 'x-api-key': key }, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new StatusError(`cannot reach ${base}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  }
  const body = await res.text();
  if (res.status === 401) throw new StatusError(key === undefined ? 'the admin API needs the key: give --key or set SWITCHYARD_ADMIN_KEY' : 'the admin key was refused');
  if (res.status === 403) throw new StatusError('this proxy has no admin key configured (server.admin.key), so its status is not readable');
  if (res.status === 404) throw new StatusError(`no Switchyard console API at ${base} (is the admin prefix, server.admin.prefix, part of the URL?)`);
  if (!res.ok) throw new StatusError(`${base}${path} answered ${res.status}`);
  try {
    return JSON.parse(body) as T;
  } catch {
    throw new StatusError(`${base}${path} did not answer JSON: is it a Switchyard?`);
  }
}

/** Redraws until SIGINT (or SIGTERM); a failed read shows its message and is tried again. */
async function watch(base: string, key: string | undefined, intervalMs: number, json: boolean): Promise<number> {
  const stop = new AbortController();
  const quit = () => stop.abort();
  process.once('SIGINT', quit);
  process.once('SIGTERM', quit);
  try {
    while (!stop.signal.aborted) {
      let frame: string;
      try {
        const data = await read(base, key);
        frame = json ? JSON.stringify(data) : render(data);
      } catch (err) {
        if (!(err instanceof StatusError)) throw err;
        // A refused key will not get better by asking again.
        if (/key/.test(err.message)) throw err;
        frame = `switchyard status: ${err.message} (retrying)`;
      }
      process.stdout.write(json ? `${frame}\n` : `${process.stdout.isTTY ? '\x1b[2J\x1b[H' : ''}${frame}\n${process.stdout.isTTY ? '' : '\n'}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs);
        stop.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    }
    return 0;
  } finally {
    process.off('SIGINT', quit);
    process.off('SIGTERM', quit);
  }
}

export function render(data: { overview: Overview; routes: { route: string; upstreams: UpstreamRow[] }[] }): string {
  const o = data.overview;
  const last = o.series.at(-1);
  const recent = o.series.slice(-6);
  const sum = (cls: string) => recent.reduce((n, p) => n + (p.status[cls] ?? 0), 0);
  const reload = o.reloads[0];
  const lines = [
    `switchyard ${o.version} · preset ${o.preset ?? 'none'} · up ${duration(o.uptimeSeconds)} · generation ${o.generation} · in flight ${o.inFlight}`,
    `config ${o.configFile ?? '(none)'}`,
    reload ? `last reload ${new Date(reload.at).toISOString()} ${reload.trigger}: ${reload.ok ? 'ok' : `FAILED ${(reload.error ?? '').split('\n')[0]}`}` : 'no reloads',
    `requests/s ${last ? (last.requests / 10).toFixed(1) : '0'} (last 10 s) · last minute 2xx ${sum('2xx')} 3xx ${sum('3xx')} 4xx ${sum('4xx')} 5xx ${sum('5xx')}`
      + ` · latency p50 ${ms(last?.latencyMs.p50)} p95 ${ms(last?.latencyMs.p95)} p99 ${ms(last?.latencyMs.p99)}`,
    `memory rss ${mib(o.process.rssBytes)} heap ${mib(o.process.heapUsedBytes)} · event-loop delay p99 ${ms(o.process.eventLoopDelayMs.p99)} max ${ms(o.process.eventLoopDelayMs.max)}`,
    '',
  ];
  const header = ['ROUTE', 'UPSTREAM', 'HEALTH', 'STATE', 'WEIGHT', 'INFLIGHT', 'REQUESTS', 'FAILURES', 'P50', 'P95', 'P99', 'HELD DOWN BY'];
  const rows = data.routes.flatMap((route) => route.upstreams.map((u) => [
    route.route, u.name, u.healthy ? 'healthy' : 'DOWN', !u.active ? 'disabled' : u.draining ? 'draining' : 'active', String(u.weight),
    u.inFlight === null ? '-' : String(u.inFlight), String(u.requests), String(u.failures), ms(u.latencyMs.p50), ms(u.latencyMs.p95), ms(u.latencyMs.p99),
    u.heldBy.map((h) => `${h.plugin}: ${h.reason}`).join('; ') || '-',
  ]));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const format = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  lines.push(format(header), ...rows.map(format));
  return lines.join('\n');
}

function ms(value: number | null | undefined): string {
  return value === null || value === undefined ? '-' : `${value < 10 ? value.toFixed(2) : value.toFixed(0)}ms`;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
}

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${seconds % 60}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d${Math.floor((seconds % 86400) / 3600)}h`;
}
