// Load balancing: picks the upstream for each request (round robin, weights, hashing, latency…),
// skipping unhealthy and full upstreams; upstreams can be added, changed and drained at run time.
import { definePlugin, liveUpstreams, SwitchyardError, type HealthStatus, type RequestContext, type Route, type Upstream } from '../../core/index.js';
import { registerAdmin, type BalancedRoute } from './admin.js';
import { goProxyAliases } from './go-proxy-admin.js';
import { ALGORITHMS, needsClock, pickerFor, type PickSettings } from './algorithms.js';
import { RouteTable, type Member } from './table.js';

const NAME = 'balancer';

const algorithm = { type: 'string', enum: ALGORITHMS } as const;

const schema = {
  type: 'object',
  properties: {
    algorithm: { ...algorithm, default: 'round-robin' },
    streamingAlgorithm: { ...algorithm, description: 'Used instead for WebSocket upgrades and SSE requests (Accept: text/event-stream).' },
    hashKey: { type: 'string', minLength: 1, description: 'header-hash: the header; cookie-hash: the cookie.' },
    hashReplicas: { type: 'integer', minimum: 1, maximum: 10000, default: 160 },
    maxConnections: { type: 'integer', minimum: 0, default: 0, description: 'Per upstream, 0 = unlimited; meta.maxConnections overrides.' },
    failFast: { type: 'boolean', default: false, description: 'With no healthy upstream answer 503 at once instead of spreading over all (panic mode).' },
    slowStart: {
      type: 'object',
      properties: {
        duration: { type: 'integer', minimum: 0, default: 0 },
        minWeightPercent: { type: 'number', minimum: 1, maximum: 100, default: 10 },
        aggression: { type: 'number', exclusiveMinimum: 0, default: 1 },
      },
      additionalProperties: false,
      default: {},
    },
    latency: {
      type: 'object',
      properties: {
        baseWeightMultiplier: { type: 'number', exclusiveMinimum: 0, default: 20 },
        dynamicWeightMultiplier: { type: 'number', exclusiveMinimum: 0, default: 50 },
        alphaInitial: { type: 'number', minimum: 0, maximum: 1, default: 0.5 },
        alphaAdjustmentStep: { type: 'number', minimum: 0, maximum: 1, default: 0.05 },
        alphaMin: { type: 'number', minimum: 0, maximum: 1, default: 0.1 },
        alphaMax: { type: 'number', minimum: 0, maximum: 1, default: 0.9 },
        ewmaDecay: { type: 'number', minimum: 0, exclusiveMaximum: 1, default: 0.8 },
        baseDecay: { type: 'number', minimum: 0, exclusiveMaximum: 1, default: 0.98 },
        maxWeight: { type: 'number', minimum: 1, default: 100 },
        failurePenalty: { type: 'integer', minimum: 1, default: 5000 },
      },
      additionalProperties: false,
      default: {},
    },
    refreshInterval: {
      type: 'integer', minimum: 0, default: 1000,
      description: 'How often runtime upstream changes are read back from the store (ms), so instances sharing a store (redis://) follow each other; 0 = only at start.',
    },
    adminAliases: {
      enum: ['none', 'go-proxy'], default: 'none',
      description: 'go-proxy: also serve the admin API at the Go reverse proxy\'s paths (/api/v1/backends…), plus /api/health and /api/ip-preference.',
    },
    configFile: { type: 'string', minLength: 1, description: 'With adminAliases go-proxy: the file PUT /api/v1/config replaces (the watcher reloads it). Unset: 501.' },
    reports: {
      type: 'object',
      properties: {
        enabled: { type: 'boolean', default: false },
        ttl: { type: 'integer', minimum: 1, default: 30000 },
      },
      additionalProperties: false,
      default: {},
    },
  },
  additionalProperties: false,
  allOf: [
    { if: { properties: { algorithm: { enum: ['header-hash', 'cookie-hash'] } }, required: ['algorithm'] }, then: { required: ['hashKey'] } },
    { if: { properties: { streamingAlgorithm: { enum: ['header-hash', 'cookie-hash'] } }, required: ['streamingAlgorithm'] }, then: { required: ['hashKey'] } },
  ],
} as const;

/** A request's attempt in flight on an upstream (at most one at a time). */
interface Attempt {
  member: Member | undefined;
  table: RouteTable | undefined;
  /** ctx.error when the attempt started, to tell this attempt's failure from an earlier one's. */
  errorBefore: unknown;
}

// One function for every request, so asking for the scratch space makes no closure.
const newAttempt = (): Attempt => ({ member: undefined, table: undefined, errorBefore: undefined });

function wasTried(tried: readonly Upstream[], member: Member): boolean {
  for (const upstream of tried) if (upstream.id === member.upstream.id) return true;
  return false;
}

function isFull(member: Member): boolean {
  return member.settings.maxConnections !== 0 && member.stats.inFlight >= member.settings.maxConnections;
}

function isStreaming(ctx: RequestContext): boolean {
  return ctx.req.headers.upgrade !== undefined || (ctx.req.headers.accept?.includes('text/event-stream') ?? false);
}

export default definePlugin({
  name: NAME,
  schema,
  async setup(api, options) {
    const { latency } = options;
    if (latency.alphaMin > latency.alphaMax) throw new Error(`${NAME}: options.latency.alphaMin (${latency.alphaMin}) is above alphaMax (${latency.alphaMax})`);
    const settings: PickSettings = {
      hashKey: options.hashKey ?? '',
      hashReplicas: options.hashReplicas,
      slowStart: options.slowStart,
      reports: options.reports,
      latency,
    };
    const defaults = { maxConnections: options.maxConnections };
    const storeKey = (route: string) => `runtime:${route}`;
    const tables = new Map<string, RouteTable>();
    // Each route's upstreams as they are now, for plugins that follow them (active health checks).
    // Published once the store's runtime changes are read, so nobody sees the file's set first.
    const live = liveUpstreams(api);
    const publish = (table: RouteTable) => live.publish(table.routeName, () => table.members.map((m) => m.upstream));

    const applyConfig = (table: RouteTable, upstreams: readonly Upstream[]) => {
      const dropped = table.sync(upstreams, defaults, latency);
      for (const line of dropped) api.log.info({ route: table.routeName }, `runtime change dropped: ${line}`);
      if (dropped.length > 0) void persist(table);
      live.changed(table.routeName);
    };
    const persist = async (table: RouteTable) => {
      await api.store.set(storeKey(table.routeName), table.changes);
    };
    // Runtime changes come back from the store once per process; later reloads keep the in-memory table.
    const load = (table: RouteTable, upstreams: readonly Upstream[]): Promise<void> => {
      table.loading ??= (async () => {
        try {
          const saved = await api.store.get(storeKey(table.routeName)) as RouteTable['changes'] | undefined;
          if (saved) table.changes = { ...saved, ...table.changes };
        } catch (err) {
          api.log.error({ err, route: table.routeName }, 'could not read runtime upstream changes from the store; using the config file only');
        }
        applyConfig(table, upstreams);
      })();
      return table.loading;
    };
    const tableFor = (routeName: string, upstreams: () => readonly Upstream[]): RouteTable => {
      let table = tables.get(routeName);
      if (table) return table;
      table = api.state(() => new RouteTable(routeName, (config) => api.createUpstream(config, routeName)), routeName);
      applyConfig(table, upstreams());
      void load(table, upstreams()).then(() => publish(table));
      tables.set(routeName, table);
      return table;
    };

    const configuredRoutes = api.route ? [api.route.name] : api.config.routes.map((r) => r.name);
    const upstreamsOf = (routeName: string): readonly Upstream[] => {
      if (api.route?.name === routeName) return api.route.upstreams;
      const config = api.config.routes.find((r) => r.name === routeName);
      return (config?.upstreams ?? []).map((u) => api.createUpstream(u, routeName));
    };
    for (const name of configuredRoutes) {
      const table = tableFor(name, () => upstreamsOf(name));
      await load(table, upstreamsOf(name));
    }

    // The pickers are looked up once here: a request calls the function it gets, with no name to compare.
    const pickMain = pickerFor(options.algorithm);
    const pickStreaming = options.streamingAlgorithm === undefined ? undefined : pickerFor(options.streamingAlgorithm);
    const choose = (route: Route, table: RouteTable, ctx: RequestContext): Member => {
      const pick = pickStreaming !== undefined && isStreaming(ctx) ? pickStreaming : pickMain;
      let candidates: readonly Member[];
      if (everyMemberFree(table, ctx.tried)) {
        if (table.panic) panicOver(table);
        candidates = table.members;
      } else {
        candidates = filterCandidates(route, table, ctx);
      }
      if (candidates.length === 1) return candidates[0]!;
      return pick(table, candidates, ctx, settings, needsClock(candidates, settings) ? Date.now() : 0);
    };

    // The usual case: every member is in service, healthy, not tried yet and below its limit. The
    // members are then the candidates as they are, with no list to build.
    const everyMemberFree = (table: RouteTable, tried: readonly Upstream[]): boolean => {
      const { members } = table;
      if (members.length === 0) return false;
      // A first attempt (nearly every request) has tried nothing: no list to walk per member.
      const retrying = tried.length > 0;
      for (let i = 0; i < members.length; i++) {
        const member = members[i]!;
        const { settings } = member;
        if (!settings.active || settings.draining || isFull(member) || !api.health.isHealthy(member.upstream)) return false;
        if (retrying && wasTried(tried, member)) return false;
      }
      return true;
    };

    // Otherwise the rules in full: healthy before unhealthy (panic mode), untried before tried.
    const filterCandidates = (route: Route, table: RouteTable, ctx: RequestContext): Member[] => {
      const inService = table.members.filter((m) => m.settings.active && !m.settings.draining);
      if (inService.length === 0) throw new SwitchyardError('SY_ERR_NO_HEALTHY_UPSTREAM', `no upstream of route ${route.name} is in service (all removed, inactive or draining)`);
      const untried = (m: Member) => !wasTried(ctx.tried, m);
      const healthy = inService.filter((m) => api.health.isHealthy(m.upstream));
      let candidates: Member[];
      if (healthy.length > 0) {
        if (table.panic) panicOver(table);
        candidates = healthy.filter(untried);
        if (candidates.length === 0) candidates = healthy;
      } else {
        if (options.failFast) throw new SwitchyardError('SY_ERR_NO_HEALTHY_UPSTREAM', `no healthy upstream for route ${route.name} (failFast)`);
        // Health checks can be wrong; spreading over all beats refusing everything (APISIX, Envoy).
        if (!table.panic) {
          table.panic = true;
          api.log.warn({ route: route.name }, 'panic mode: every upstream is unhealthy, spreading traffic over all of them');
        }
        candidates = inService.filter(untried);
        if (candidates.length === 0) candidates = inService;
      }
      candidates = candidates.filter((m) => !isFull(m));
      if (candidates.length === 0) throw new SwitchyardError('SY_ERR_NO_HEALTHY_UPSTREAM', `every upstream of route ${route.name} is at its maxConnections`);
      return candidates;
    };

    const panicOver = (table: RouteTable) => {
      table.panic = false;
      api.log.info({ route: table.routeName }, 'panic mode over: a healthy upstream is back');
    };

    const finish = (ctx: RequestContext, attempt: Attempt, outcome: 'ok' | 'failed' | 'aborted') => {
      const { member, table } = attempt;
      if (!member || !table) return;
      attempt.member = undefined;
      member.stats.inFlight--;
      if (outcome === 'aborted') return;
      const start = ctx.timings.upstreamStart ?? 0;
      const head = ctx.timings.firstByte !== undefined && ctx.timings.firstByte >= start ? ctx.timings.firstByte : ctx.elapsed();
      member.stats.record(head - start, outcome === 'ok', latency);
    };

    // A route plugin (the usual case) asks for the same table every time: no Map lookup for it.
    let lastRoute: Route | undefined;
    let lastTable: RouteTable | undefined;
    api.hooks.selectUpstream.tap(NAME, (ctx) => {
      const route = ctx.route!;
      let table = route === lastRoute ? lastTable! : undefined;
      if (table === undefined) {
        table = tables.get(route.name) ?? tableFor(route.name, () => route.upstreams);
        lastRoute = route;
        lastTable = table;
      }
      const attempt = ctx.scratch<Attempt>(NAME, newAttempt);
      // The core selects again only to retry: the attempt before this one failed.
      if (attempt.member) finish(ctx, attempt, 'failed');
      const member = choose(route, table, ctx);
      member.stats.inFlight++;
      attempt.member = member;
      attempt.table = table;
      attempt.errorBefore = ctx.error;
      // An upgraded connection never reaches `done`; it is in flight until its socket closes.
      if (ctx.req.headers.upgrade !== undefined) ctx.req.socket.once('close', () => finish(ctx, attempt, 'aborted'));
      return member.upstream;
    });

    api.hooks.done.tap(NAME, (ctx) => {
      if (ctx.tried.length === 0) return;
      const attempt = ctx.scratch<Attempt>(NAME, newAttempt);
      const error = ctx.error !== attempt.errorBefore ? ctx.error : undefined;
      if (error?.code === 'SY_ERR_CLIENT_ABORTED') return finish(ctx, attempt, 'aborted');
      const failed = error !== undefined || (ctx.response?.status ?? ctx.res.statusCode) >= 500;
      finish(ctx, attempt, failed ? 'failed' : 'ok');
    });

    // Slow start for an upstream that comes back. Read the current state, not the event's: another
    // plugin may already have marked it down again inside this same change.
    const onHealthChange = (upstream: Upstream, _status: HealthStatus) => {
      if (options.slowStart.duration <= 0 || !api.health.isHealthy(upstream)) return;
      for (const table of tables.values()) {
        const member = table.members.find((m) => m.upstream.id === upstream.id);
        if (member) member.warmSince = Date.now();
      }
    };
    api.health.on('change', onHealthChange);

    let committing = 0;
    const balanced: BalancedRoute[] = configuredRoutes.map((name) => ({
      name,
      algorithm: options.algorithm,
      streamingAlgorithm: options.streamingAlgorithm,
      settings,
      table: () => tableFor(name, () => upstreamsOf(name)),
      commit: async (table) => {
        table.resync(defaults, latency);
        live.changed(table.routeName);
        committing++;
        try {
          await persist(table);
        } finally {
          committing--;
        }
      },
    }));

    // Another instance on the same store may change upstreams at run time: read the changes back.
    const refresh = async () => {
      for (const table of tables.values()) {
        if (committing > 0) return; // our own write is on its way; the next round reads it
        const saved = await api.store.get(storeKey(table.routeName)) as RouteTable['changes'] | undefined;
        if (saved && JSON.stringify(saved) !== JSON.stringify(table.changes)) {
          table.changes = saved;
          table.resync(defaults, latency);
          live.changed(table.routeName);
        }
      }
    };
    const refresher = options.refreshInterval > 0
      ? setInterval(() => refresh().catch((err: unknown) => api.log.warn({ err }, 'could not read runtime upstream changes from the store')), options.refreshInterval)
      : undefined;
    refresher?.unref();
    registerAdmin(api, balanced, options.adminAliases === 'go-proxy' ? goProxyAliases(api, { configFile: options.configFile }) : undefined);

    return () => {
      clearInterval(refresher);
      api.health.off('change', onHealthChange);
    };
  },
});
