// The operator console: a static page at `<admin prefix>/console` and the admin routes it reads
// (docs/console.md). The page is public (it holds nothing until the admin key is given); every
// route with data needs the key. Live updates travel over one Server-Sent Events stream that only
// exists while a console is open.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PassThrough } from 'node:stream';
import type { AdminRequest, AdminRouter } from './admin.js';
import { redactString, type LoadedConfig } from './config/load.js';
import { BALANCER_TABLES, type BalancerTables, type UpstreamView } from './balancer-tables.js';
import { SwitchyardError } from './errors.js';
import { LIVE_UPSTREAMS, type LiveUpstreams } from './live-upstreams.js';
import { metricsRegistry } from './metrics.js';
import type { Pipeline, Runtime } from './pipeline.js';
import { STAGE_NAMES, type StageName, type Stages } from './stages.js';
import type { Reply, Route, Upstream } from './types.js';
import { TICK_MS, type RecentRequest } from './console-recorder.js';

/** What an unmatched request runs (core/flow.ts unmatched()). */
const UNMATCHED_STAGES: readonly StageName[] = ['route', 'access', 'beforeSend', 'done'];
/** A line is "slow" (its timing breakdown shown) from this many ms. */
const SLOW_MS = 500;
/** Prometheus metrics the Limits page shows, when a plugin keeps them. */
const LIMIT_METRICS = /rate_limit|concurrency|circuit_breaker/;

const ASSETS: Record<string, { file: string; type: string }> = {
  '/console': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
};

// The page loads nothing but what these routes serve: no other host, no inline script.
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

export function addConsoleRoutes(admin: AdminRouter, loaded: LoadedConfig, rt: Runtime, current: () => Pipeline, shared: Map<string, object>): void {
  for (const [path, asset] of Object.entries(ASSETS)) {
    admin.add({ method: 'GET', path, public: true, handler: () => staticFile(consoleFile(asset.file), asset.type) });
  }
  admin.add({ method: 'GET', path: '/console/uplot.js', public: true, handler: () => staticFile(uplotFile('uPlot.iife.min.js'), 'text/javascript; charset=utf-8') });
  admin.add({ method: 'GET', path: '/console/uplot.css', public: true, handler: () => staticFile(uplotFile('uPlot.min.css'), 'text/css; charset=utf-8') });

  const redact = (text: string) => redactString(text, loaded.secrets);
  const overview = (series = rt.console.series()) => ({
    version: rt.version,
    uptimeSeconds: Math.round((Date.now() - rt.startedAt) / 1000),
    startedAt: rt.startedAt,
    preset: loaded.config.preset ?? null,
    configFile: loaded.file === undefined ? null : redact(loaded.file),
    generation: current().generation,
    reloads: rt.console.reloads(),
    reloadCounts: { ...rt.reloads },
    // The console's own streams are requests in flight too when served on the proxy port.
    inFlight: current().activeRequests - (rt.adminOnOwnPort ? 0 : rt.console.subscribers),
    process: rt.console.process(),
    latest: series.at(-1),
    admin: { prefix: admin.prefix, ownPort: rt.adminOnOwnPort },
    series,
  });
  const upstreams = () => upstreamRows(rt, current(), shared, redact);

  admin.add({ method: 'GET', path: '/console/api/overview', handler: () => ok(overview()) });
  admin.add({ method: 'GET', path: '/console/api/routes', handler: () => ok(routesView(current(), redact)) });
  admin.add({ method: 'GET', path: '/console/api/upstreams', handler: () => ok({ routes: upstreams() }) });
  admin.add({ method: 'GET', path: '/console/api/requests', handler: (req) => ok({ requests: filtered(rt.console.recent(Number(req.query.get('after') ?? 0) || 0), req), slowMs: SLOW_MS }) });
  admin.add({ method: 'GET', path: '/console/api/limits', handler: async () => ok(await limitsView(rt)) });
  admin.add({ method: 'GET', path: '/console/api/events', handler: (req) => eventStream(req, rt, () => ({ overview: overview(), upstreams: upstreams() })) });
}

function ok(json: unknown): Reply {
  return { status: 200, json, headers: { 'cache-control': 'no-store' } };
}

// Read once per process: the files never change under a running proxy.
const files = new Map<string, Buffer>();

/** A file of the console's folder: `console/` at the package root (dist/core/ → ../../console/). */
function consoleFile(name: string): string {
  return new URL(`../../console/${name}`, import.meta.url).pathname;
}

function uplotFile(name: string): string {
  return createRequire(import.meta.url).resolve(`uplot/dist/${name}`);
}

function staticFile(path: string, type: string): Reply {
  let body = files.get(path);
  if (body === undefined) {
    body = readFileSync(path);
    files.set(path, body);
  }
  return { status: 200, headers: { 'content-type': type, ...SECURITY_HEADERS }, body };
}

/** Each stage's tap names in the order they run. */
function planOf(global: Stages, own: Stages | undefined, stages: readonly StageName[] = STAGE_NAMES): Record<string, string[]> {
  const names = (hook: unknown) => (hook as { taps: { name: string }[] }).taps.map((tap) => tap.name);
  const plan: Record<string, string[]> = {};
  for (const stage of stages) {
    const taps = [...names(global[stage]), ...(own === undefined ? [] : names(own[stage]))];
    if (taps.length > 0) plan[stage] = taps;
  }
  return plan;
}

function routesView(pipeline: Pipeline, redact: (text: string) => string) {
  return {
    routes: pipeline.router.all.map((route) => ({
      name: route.name,
      match: route.match,
      engine: route.engine ?? null,
      upstreams: route.upstreams.map((u) => redact(u.name)),
      plugins: route.plugins,
      plan: planOf(pipeline.global, route.stages),
    })),
    globalPlugins: pipeline.loaded.globalPlugins.map((p) => p.definition.name),
    unmatched: planOf(pipeline.global, undefined, UNMATCHED_STAGES),
  };
}

/** What the health registry says, split back into the plugins holding the upstream down. */
function heldBy(reason: string | undefined): { plugin: string; reason: string }[] {
  if (!reason) return [];
  return reason.split('; ').map((part) => {
    const colon = part.indexOf(': ');
    return colon === -1 ? { plugin: 'core', reason: part } : { plugin: part.slice(0, colon), reason: part.slice(colon + 2) };
  });
}

function upstreamRows(rt: Runtime, pipeline: Pipeline, shared: Map<string, object>, redact: (text: string) => string) {
  const tables = shared.get(BALANCER_TABLES) as BalancerTables | undefined;
  const live = shared.get(LIVE_UPSTREAMS) as LiveUpstreams | undefined;
  return pipeline.router.all.map((route: Route) => {
    const balanced = tables?.get(route.name);
    const views = new Map<string, UpstreamView>();
    const latency = new Map<string, { p50: number | null; p95: number | null; p99: number | null }>();
    if (balanced) {
      for (const view of balanced.upstreams()) views.set(view.id, view);
      for (const row of balanced.stats(null)) latency.set(row.id, row.latencyMs);
    }
    const list: readonly Upstream[] = live?.get(route.name) ?? route.upstreams;
    const ids = new Set(list.map((u) => u.id));
    const rows = list.map((u) => {
      const health = rt.health.get(u);
      const tally = rt.console.upstream(u.id);
      const view = views.get(u.id);
      return {
        id: redact(u.id),
        name: redact(u.name),
        healthy: health.healthy,
        heldBy: heldBy(health.reason),
        since: health.since || null,
        weight: view?.weights.effective ?? u.weight,
        priority: u.priority,
        active: view?.active ?? true,
        draining: view?.draining ?? false,
        inFlight: view?.inFlight ?? null,
        requests: view?.requests ?? tally?.requests ?? 0,
        failures: view?.failures ?? tally?.failures ?? 0,
        latencyMs: latency.get(u.id) ?? tally?.latencyMs ?? { p50: null, p95: null, p99: null },
      };
    });
    // Runtime-added upstreams the balancer knows but the live set does not list (yet).
    for (const view of views.values()) {
      if (ids.has(view.id)) continue;
      rows.push({
        id: redact(view.id), name: redact(view.name), healthy: view.healthy, heldBy: heldBy(view.healthReason ?? undefined), since: view.healthSince,
        weight: view.weights.effective, priority: view.priority, active: view.active, draining: view.draining, inFlight: view.inFlight,
        requests: view.requests, failures: view.failures, latencyMs: latency.get(view.id) ?? { p50: null, p95: null, p99: null },
      });
    }
    return { route: route.name, balanced: balanced !== undefined, algorithm: balanced?.algorithm ?? null, upstreams: rows };
  });
}

function filtered(lines: RecentRequest[], req: AdminRequest): RecentRequest[] {
  const status = req.query.get('status');
  const route = req.query.get('route');
  const upstream = req.query.get('upstream');
  if (status !== null && !/^[1-5]xx$/.test(status)) throw new SwitchyardError('SY_ERR_BAD_REQUEST', 'status must be a class: 1xx, 2xx, 3xx, 4xx or 5xx');
  const cls = status === null ? 0 : Number(status[0]);
  return lines.filter((line) => (cls === 0 || Math.floor(line.status / 100) === cls)
    && (route === null || line.route === route)
    && (upstream === null || line.upstream === upstream));
}

async function limitsView(rt: Runtime) {
  // The registry loads prom-client on first use: only a console asking pays for it.
  const metrics = (await metricsRegistry(rt).getMetricsAsJSON())
    .filter((metric) => LIMIT_METRICS.test(metric.name))
    .map((metric) => ({ name: metric.name, help: metric.help, type: metric.type, values: metric.values.map((v) => ({ labels: v.labels, value: v.value })) }));
  const refusals = rt.console.recent().filter((line) => line.status === 429 || line.code === 'SY_ERR_RATE_LIMITED' || line.code === 'SY_ERR_CONCURRENCY_LIMIT').slice(-100);
  return { metrics, refusals };
}

/**
 * The live stream: a `tick` every TICK_MS with the overview and the upstream table, and the access
 * lines since the last one (their newest sequence number is the event id, so a reconnect with
 * Last-Event-ID misses none still in the ring). A reload ends the stream, which lets the old
 * config's pipeline retire; the page reconnects to the new one.
 */
function eventStream(req: AdminRequest, rt: Runtime, snapshot: () => unknown): Reply {
  const stream = new PassThrough();
  const given = Number(req.raw.headers['last-event-id'] ?? req.query.get('after') ?? rt.console.lastSeq);
  let sent = Number.isInteger(given) && given >= 0 ? given : rt.console.lastSeq;
  const send = () => {
    const lines = rt.console.recent(sent);
    sent = rt.console.lastSeq;
    stream.write(`event: tick\nid: ${sent}\ndata: ${JSON.stringify({ ...(snapshot() as object), requests: lines })}\n\n`);
  };
  const unsubscribe = rt.console.subscribe((event) => {
    if (event === 'end') stream.end();
    else send();
  });
  stream.on('close', unsubscribe);
  // `retry` tells the browser how soon to reconnect; the first tick goes out at once.
  stream.write(`retry: ${TICK_MS}\n\n`);
  send();
  return {
    status: 200,
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store, no-transform', 'x-accel-buffering': 'no' },
    body: stream,
  };
}
