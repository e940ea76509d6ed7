// Prometheus metrics at GET /metrics (requests, latency, in-flight, upstream health, reloads,
// process), the panel figures at GET /stats/server, and a log line for slow or failed requests.
import type { Server } from 'node:net';
import { collectDefaultMetrics, type Counter, type Histogram, type Registry } from 'prom-client';
import { counter, definePlugin, gauge, histogram, Stage, type PluginApi, type RequestContext, type Upstream } from '../../core/index.js';
import { RollingMinute, eventLoopLag, memoryMB, openConnections, startLagMonitor } from './server-stats.js';
import { breakdown, type Marks } from './slow-log.js';

export const name = 'metrics';

export const schema = {
  type: 'object',
  properties: {
    public: { type: 'boolean', default: false, description: 'serve /metrics and /stats/server without the admin key' },
    path: { type: 'string', pattern: '^/', default: '/metrics', description: 'admin path of the Prometheus text' },
    statsPath: { type: 'string', pattern: '^/', default: '/stats/server', description: 'admin path of the panel figures (JSON)' },
    processMetrics: { type: 'boolean', default: true, description: 'memory, CPU, event-loop lag, handles, GC (prom-client default metrics)' },
    buckets: {
      type: 'array', minItems: 1, items: { type: 'number', exclusiveMinimum: 0 },
      default: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      description: 'latency histogram buckets, in seconds',
    },
    slowLog: {
      type: 'object', default: {}, additionalProperties: false,
      properties: {
        enabled: { type: 'boolean', default: true },
        thresholdMs: { type: 'integer', minimum: 1, default: 1000, description: 'log requests that took at least this long' },
        upstreamErrors: { type: 'boolean', default: true, description: 'log every request an upstream failed, however fast' },
      },
    },
  },
  additionalProperties: false,
} as const;

/** Requests whose in-flight count this plugin took (and `done` gives back). */
const tracked = new WeakSet<RequestContext>();

export default definePlugin<typeof schema>({
  name,
  schema,
  setup(api, options) {
    const m = metricsOf(api, options.buckets);
    // Upstreams of the current config, for the health gauges (runtime-added ones join as they serve).
    m.configured = new Map();
    for (const route of api.config.routes) {
      for (const config of route.upstreams) {
        const upstream = api.createUpstream(config, route.name);
        m.configured.set(upstream.id, { route: route.name, upstream });
      }
    }
    if (options.processMetrics && !m.registry.getSingleMetric('process_cpu_user_seconds_total')) collectDefaultMetrics({ register: m.registry });
    startLagMonitor();

    // First thing after routing: counts as in flight from here until `done`.
    api.hooks.access.tap({ name, stage: Stage.AUTH - 1000 }, (ctx) => {
      tracked.add(ctx);
      m.inFlight++;
      m.server ??= (ctx.req.socket as { server?: Server } | null)?.server;
      return undefined;
    });

    const slow = options.slowLog;
    if (slow.enabled) {
      // First in their stages, to stamp when each phase began.
      const marks = (ctx: RequestContext) => ctx.scratch<Marks>(name, () => ({}));
      api.hooks.cacheLookup.tap({ name, stage: -Infinity }, (ctx) => {
        marks(ctx).cacheLookup ??= ctx.elapsed();
        return undefined;
      });
      api.hooks.selectUpstream.tap({ name, stage: -Infinity }, (ctx) => {
        marks(ctx).select ??= ctx.elapsed();
        return undefined;
      });
    }

    api.hooks.done.tap({ name, stage: Stage.OBSERVE }, (ctx) => {
      if (tracked.delete(ctx)) m.inFlight--;
      const status = statusOf(ctx);
      const route = ctx.route?.name ?? '';
      const upstream = ctx.upstream?.name ?? '';
      const { timings } = ctx;
      const total = timings.end ?? ctx.elapsed();
      m.requests(route, upstream, methodOf(ctx.req.method), status).inc();
      m.duration(route).observe(total / 1000);
      if (ctx.upstream && !m.configured.has(ctx.upstream.id)) m.seen.set(ctx.upstream.id, { route, upstream: ctx.upstream });
      if (timings.firstByte !== undefined && timings.upstreamStart !== undefined) m.firstByte(route, upstream).observe((timings.firstByte - timings.upstreamStart) / 1000);
      const code = ctx.error?.code;
      const upstreamFailed = code !== undefined && code.startsWith('SY_ERR_UPSTREAM');
      if (upstreamFailed) m.upstreamErrors.inc({ route, upstream, code });
      m.minute.record(total, status >= 500);
      if (slow.enabled && (total >= slow.thresholdMs || (slow.upstreamErrors && upstreamFailed))) {
        const line = { route, upstream, method: ctx.req.method, path: ctx.pathname, status, code, attempts: ctx.tried.length, timings: breakdown(ctx, ctx.scratch<Marks | undefined>(name, () => undefined)) };
        ctx.log.warn(line, upstreamFailed ? 'upstream failed' : 'slow request');
      }
    });

    api.admin({
      method: 'GET',
      path: options.path,
      public: options.public,
      handler: async () => ({ status: 200, headers: { 'content-type': m.registry.contentType }, body: await m.registry.metrics() }),
    });
    api.admin({
      method: 'GET',
      path: options.statsPath,
      public: options.public,
      handler: async () => {
        const minute = m.minute.summary();
        return {
          status: 200,
          json: {
            windowSeconds: 60,
            requests: minute.requests,
            requestsPerSecond: minute.requestsPerSecond,
            latencyMs: { avg: minute.avgMs, p95: minute.p95Ms },
            errorRate: minute.errorRate,
            memoryMB: memoryMB(),
            eventLoopLagMs: eventLoopLag(),
            openConnections: await openConnections(m.server),
            inFlight: m.inFlight,
            uptimeSeconds: Math.round((Date.now() - api.runtimeInfo().startedAt) / 1000),
          },
        };
      },
    });
  },
});

/** The status the client got; a response cut short counts as the failure that cut it (499: the client left). */
function statusOf(ctx: RequestContext): number {
  if (ctx.res.writableFinished) return ctx.res.statusCode;
  return ctx.error && ctx.error.code !== 'SY_ERR_CLIENT_ABORTED' ? ctx.error.status : 499;
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE']);

/** Any method a client makes up would be a new series: those count as OTHER. */
function methodOf(method: string | undefined): string {
  return method !== undefined && METHODS.has(method) ? method : 'OTHER';
}

interface KnownUpstream {
  route: string;
  upstream: Upstream;
}

/** This runtime's metrics and the caches of their labelled children; shared by every instance of the plugin. */
interface Metrics {
  registry: Registry;
  configured: Map<string, KnownUpstream>;
  seen: Map<string, KnownUpstream>;
  server: Server | undefined;
  minute: RollingMinute;
  /** Requests routed and not yet finished. */
  inFlight: number;
  upstreamErrors: Counter<'route' | 'upstream' | 'code'>;
  requests(route: string, upstream: string, method: string, status: number): { inc(): void };
  duration(route: string): { observe(seconds: number): void };
  firstByte(route: string, upstream: string): { observe(seconds: number): void };
}

const perRegistry = new WeakMap<Registry, Metrics>();

function metricsOf(api: PluginApi, buckets: number[]): Metrics {
  const registry = api.metrics;
  let m = perRegistry.get(registry);
  if (m) return m;
  const requests = counter(registry, {
    name: 'switchyard_http_requests_total', help: 'Requests answered, by route, upstream, method and status class.',
    labelNames: ['route', 'upstream', 'method', 'status_class'],
  });
  const duration = histogram(registry, {
    name: 'switchyard_http_request_duration_seconds', help: 'Time from the request arriving to the last byte of the response.',
    labelNames: ['route'], buckets,
  });
  const firstByte = histogram(registry, {
    name: 'switchyard_upstream_first_byte_seconds', help: 'Time from sending the request upstream to its response head (connect included).',
    labelNames: ['route', 'upstream'], buckets,
  });
  const health = api.health;
  const known = (): KnownUpstream[] => [...m!.configured.values(), ...[...m!.seen.values()].filter((k) => !m!.configured.has(k.upstream.id))];
  gauge(registry, {
    name: 'switchyard_upstream_up', help: '1 while the upstream is healthy (no health check or breaker holds it down).',
    labelNames: ['route', 'upstream'],
    collect() {
      this.reset();
      for (const { route, upstream } of known()) this.set({ route, upstream: upstream.name }, health.isHealthy(upstream) ? 1 : 0);
    },
  });
  gauge(registry, {
    name: 'switchyard_circuit_breaker_open', help: '1 while the circuit breaker keeps the upstream out of rotation (open, or half-open waiting for its trials).',
    labelNames: ['route', 'upstream'],
    collect() {
      this.reset();
      for (const { route, upstream } of known()) {
        const status = health.get(upstream);
        this.set({ route, upstream: upstream.name }, !status.healthy && BREAKER_HOLD.test(status.reason ?? '') ? 1 : 0);
      }
    },
  });
  counter(registry, {
    name: 'switchyard_config_reloads_total', help: 'Config reloads applied (success) or rejected (failure) since start.',
    labelNames: ['result'],
    collect() {
      const { reloads } = api.runtimeInfo();
      this.reset();
      this.inc({ result: 'success' }, reloads.ok);
      this.inc({ result: 'failure' }, reloads.failed);
    },
  });
  gauge(registry, {
    name: 'switchyard_config_generation', help: 'The config generation serving new requests (1 at start, +1 per applied reload).',
    collect() {
      this.set(api.runtimeInfo().generation);
    },
  });
  gauge(registry, {
    name: 'switchyard_config_last_reload_success', help: '1 when the last reload attempt was applied, 0 when it was rejected.',
    collect() {
      this.set(api.runtimeInfo().lastReload.ok ? 1 : 0);
    },
  });
  gauge(registry, {
    name: 'switchyard_config_last_reload_timestamp_seconds', help: 'When the last reload attempt (or the start) happened.',
    collect() {
      this.set(api.runtimeInfo().lastReload.at / 1000);
    },
  });
  gauge(registry, {
    name: 'switchyard_open_connections', help: 'Client connections open on the proxy port.',
    async collect() {
      const open = await openConnections(m!.server);
      if (open !== null) this.set(open);
    },
  });
  gauge(registry, {
    name: 'switchyard_info', help: 'Always 1; the version as a label.', labelNames: ['version'],
    collect() {
      this.reset();
      this.set({ version: api.runtimeInfo().version }, 1);
    },
  });

  gauge(registry, {
    name: 'switchyard_http_requests_in_flight', help: 'Requests routed and not yet finished.',
    collect() {
      this.set(m!.inFlight);
    },
  });

  // The labelled children, made once per label set: a request then costs a Map lookup per metric.
  const requestChildren = new Map<string, { inc(): void }>();
  const durationChildren = new Map<string, Histogram.Internal<'route'>>();
  const firstByteChildren = new Map<string, Histogram.Internal<'route' | 'upstream'>>();
  m = {
    registry,
    configured: new Map(),
    seen: new Map(),
    server: undefined,
    minute: new RollingMinute(),
    inFlight: 0,
    upstreamErrors: counter(registry, {
      name: 'switchyard_upstream_errors_total', help: 'Requests an upstream failed (refused, reset, timed out, bad response, 5xx when an error tap saw it), by error code.',
      labelNames: ['route', 'upstream', 'code'],
    }),
    requests(route, upstream, method, status) {
      const statusClass = `${Math.floor(status / 100)}xx`;
      const key = `${route}\u0000${upstream}\u0000${method}\u0000${statusClass}`;
      let child = requestChildren.get(key);
      if (!child) requestChildren.set(key, (child = requests.labels({ route, upstream, method, status_class: statusClass })));
      return child;
    },
    duration(route) {
      let child = durationChildren.get(route);
      if (!child) durationChildren.set(route, (child = duration.labels({ route })));
      return child;
    },
    firstByte(route, upstream) {
      const key = `${route}\u0000${upstream}`;
      let child = firstByteChildren.get(key);
      if (!child) firstByteChildren.set(key, (child = firstByte.labels({ route, upstream })));
      return child;
    },
  };
  perRegistry.set(registry, m);
  return m;
}

/** The circuit breaker's mark on an upstream: "circuit-breaker: circuit open: …" or "… half-open: …". */
const BREAKER_HOLD = /(?:^|; )circuit-breaker: circuit (?:open|half-open)/;
