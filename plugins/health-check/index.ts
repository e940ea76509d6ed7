// Health checks: probes each upstream on an interval (active) and watches real traffic (passive);
// an upstream that fails is taken out of rotation until it answers well again.
import { definePlugin, liveUpstreams, observeAttempts, type RequestContext, type Upstream } from '../../core/index.js';
import { probe, statusMatcher, type ProbeResult, type ProbeSpec } from './probe.js';

const NAME = 'health-check';

const schema = {
  type: 'object',
  properties: {
    active: {
      type: 'object',
      description: 'Probes on an interval; present means on.',
      properties: {
        enabled: { type: 'boolean', default: true },
        interval: { type: 'integer', minimum: 10, default: 10000 },
        timeout: { type: 'integer', minimum: 1, default: 2000 },
        path: { type: 'string', pattern: '^/', default: '/' },
        method: { type: 'string', enum: ['GET', 'HEAD', 'OPTIONS', 'POST'], default: 'GET' },
        headers: { type: 'object', additionalProperties: { type: 'string' }, default: {} },
        expectedStatuses: { type: 'array', items: { type: 'string', pattern: '^[1-5]([0-9]{2}|xx)$' }, minItems: 1, default: ['2xx', '3xx'] },
        bodyMatch: { type: 'string', minLength: 1, description: 'A regular expression the body must match.' },
        contentType: { type: 'string', minLength: 1, description: 'e.g. image/* or application/json' },
        healthyThreshold: { type: 'integer', minimum: 1, default: 2 },
        unhealthyThreshold: { type: 'integer', minimum: 1, default: 3 },
        jitter: { type: 'number', minimum: 0, maximum: 1, default: 0.1 },
      },
      additionalProperties: false,
    },
    passive: {
      type: 'object',
      properties: {
        enabled: { type: 'boolean', default: true },
        failures: { type: 'integer', minimum: 1, default: 3 },
        window: { type: 'integer', minimum: 1, default: 30000 },
        unhealthyTimeout: { type: 'integer', minimum: 1, default: 30000 },
        statuses: { type: 'array', items: { type: 'integer', minimum: 500, maximum: 599 }, default: [500, 502, 503, 504] },
      },
      additionalProperties: false,
      default: {},
    },
  },
  additionalProperties: false,
} as const;

/** What this plugin knows about one upstream; kept in api.state, so reloads keep counting. */
interface Watch {
  upstream: Upstream;
  route: string;
  /** This plugin's verdict (others may hold it down too), and which kind of evidence decided. */
  down: 'active' | 'passive' | undefined;
  reason: string | undefined;
  okStreak: number;
  failStreak: number;
  passiveFailures: number;
  passiveSince: number;
  /** Passive: when the half-open probe is due. */
  probeAt: number;
  /** A check is in flight (at most one per upstream, whichever plugin instance started it). */
  checking: boolean;
  lastCheck: (ProbeResult & { at: number }) | undefined;
  /** Left its route's live upstream set (removed at run time): no checks, not listed; the verdict is kept should it come back. */
  removed: boolean;
}

/** One followed upstream's active checks in one plugin instance; a new one each time it joins. */
interface Loop {
  timer: NodeJS.Timeout | undefined;
  /** Aborts its check in flight when the upstream is removed. */
  aborter: AbortController;
}


export default definePlugin({
  name: NAME,
  schema,
  setup(api, options) {
    const { passive } = options;
    const active = options.active?.enabled ? options.active : undefined;
    const bodyMatch = compile(active?.bodyMatch);
    const activeSpec: ProbeSpec | undefined = active && {
      method: active.method, path: active.path, headers: active.headers, timeout: active.timeout,
      accepts: statusMatcher(active.expectedStatuses), contentType: active.contentType, bodyMatch,
    };
    // Without active settings the half-open probe asks for / and accepts anything but a failing status.
    const halfOpenSpec: ProbeSpec = activeSpec ?? {
      method: 'GET', path: '/', headers: {}, timeout: 2000, accepts: (status) => !passive.statuses.includes(status),
    };

    const watches = api.state(() => new Map<string, Watch>(), 'watches');
    const timers = new Set<NodeJS.Timeout>();
    const aborter = new AbortController();
    let stopped = false;
    const later = (ms: number, fn: () => void): NodeJS.Timeout | undefined => {
      if (stopped) return undefined;
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!stopped) fn();
      }, ms);
      timer.unref();
      timers.add(timer);
      return timer;
    };
    const cancel = (timer: NodeJS.Timeout | undefined) => {
      if (!timer) return;
      clearTimeout(timer);
      timers.delete(timer);
    };

    const watchOf = (upstream: Upstream, route: string): Watch => {
      let watch = watches.get(upstream.id);
      if (!watch) {
        watch = { upstream, route, down: undefined, reason: undefined, okStreak: 0, failStreak: 0, passiveFailures: 0, passiveSince: 0, probeAt: 0, checking: false, lastCheck: undefined, removed: false };
        watches.set(upstream.id, watch);
      }
      watch.upstream = upstream;
      return watch;
    };

    // Logged once per transition of this plugin's verdict, never per request.
    const markDown = (watch: Watch, kind: 'active' | 'passive', reason: string) => {
      if (watch.down) return;
      watch.down = kind;
      watch.reason = reason;
      watch.okStreak = 0;
      api.log.warn({ upstream: watch.upstream.name, route: watch.route, reason }, 'upstream marked unhealthy');
      api.health.set(watch.upstream, false, reason);
    };
    const markUp = (watch: Watch, why: string) => {
      if (!watch.down) return;
      watch.down = undefined;
      watch.reason = undefined;
      watch.failStreak = 0;
      watch.passiveFailures = 0;
      api.log.info({ upstream: watch.upstream.name, route: watch.route, why }, 'upstream healthy again');
      api.health.set(watch.upstream, true);
    };

    const check = async (watch: Watch, spec: ProbeSpec, signal: AbortSignal): Promise<ProbeResult | undefined> => {
      if (watch.checking) return undefined;
      watch.checking = true;
      try {
        const result = await probe(watch.upstream, spec, signal);
        if (stopped || signal.aborted) return undefined;
        watch.lastCheck = { ...result, at: Date.now() };
        return result;
      } finally {
        watch.checking = false;
      }
    };

    /** Upstream id → its active checks in this instance, for the upstreams of the live sets followed. */
    const loops = new Map<string, Loop>();
    const activeRound = async (watch: Watch, loop: Loop) => {
      const result = await check(watch, activeSpec!, loop.aborter.signal);
      // Removed meanwhile (and perhaps added back, with a loop of its own): this loop ends here.
      if (loops.get(watch.upstream.id) !== loop) return;
      if (result && active) {
        if (result.ok) {
          watch.failStreak = 0;
          watch.okStreak++;
          if (watch.down && watch.okStreak >= active.healthyThreshold) markUp(watch, `${watch.okStreak} active checks passed`);
        } else {
          watch.okStreak = 0;
          watch.failStreak++;
          if (watch.failStreak >= active.unhealthyThreshold) markDown(watch, 'active', `${watch.failStreak} active checks failed: ${result.detail}`);
        }
      }
      // Jitter spreads the checks so upstreams are not all probed in the same instant.
      if (active) loop.timer = later(active.interval * (1 + active.jitter * (Math.random() * 2 - 1)), () => void activeRound(watch, loop));
    };

    /** Upstream id → its pending half-open probe (one at a time). */
    const probes = new Map<string, NodeJS.Timeout>();
    const halfOpenIn = (watch: Watch, ms: number) => {
      const id = watch.upstream.id;
      cancel(probes.get(id));
      const timer = later(ms, () => {
        probes.delete(id);
        void halfOpen(watch);
      });
      if (timer) probes.set(id, timer);
    };
    const halfOpen = async (watch: Watch) => {
      if (watch.down !== 'passive' || watch.removed) return;
      const result = await check(watch, halfOpenSpec, aborter.signal);
      if (watch.down !== 'passive' || watch.removed) return;
      if (result?.ok) return markUp(watch, 'half-open probe passed');
      watch.probeAt = Date.now() + passive.unhealthyTimeout;
      halfOpenIn(watch, passive.unhealthyTimeout);
    };

    const recordPassive = (ctx: RequestContext, ok: boolean) => {
      const watch = watchOf(ctx.upstream!, ctx.route!.name);
      if (ok) {
        watch.passiveFailures = 0;
        return;
      }
      const now = Date.now();
      if (watch.passiveFailures === 0 || now - watch.passiveSince > passive.window) {
        watch.passiveFailures = 0;
        watch.passiveSince = now;
      }
      watch.passiveFailures++;
      if (!watch.down && watch.passiveFailures >= passive.failures) {
        markDown(watch, 'passive', `${watch.passiveFailures} consecutive failures (last: ${ctx.error?.code ?? `status ${ctx.response?.status}`})`);
        watch.probeAt = now + passive.unhealthyTimeout;
        halfOpenIn(watch, passive.unhealthyTimeout);
      }
    };

    // Checks follow each route's live upstream set: the one a balancer publishes (the config
    // file's upstreams with those added and removed at run time), else the config file's.
    const live = liveUpstreams(api);
    const configured = new Map<string, readonly Upstream[]>(api.route
      ? [[api.route.name, api.route.upstreams]]
      : api.config.routes.map((r) => [r.name, r.upstreams.map((u) => api.createUpstream(u, r.name))]));
    /** Route → the ids of its upstreams this instance follows. */
    const followed = new Map<string, Set<string>>();

    const follow = (upstream: Upstream, route: string) => {
      const watch = watchOf(upstream, route);
      watch.removed = false;
      if (active && !loops.has(upstream.id)) {
        const loop: Loop = { timer: undefined, aborter: new AbortController() };
        loops.set(upstream.id, loop);
        // The first check comes soon, jittered, so upstreams that join together are not all probed at once.
        loop.timer = later(Math.random() * Math.min(active.interval, 1000) * active.jitter, () => void activeRound(watch, loop));
      }
      // A kept passive verdict (a reload, an upstream added back): its probe is still due.
      if (watch.down === 'passive') halfOpenIn(watch, Math.max(0, watch.probeAt - Date.now()));
    };
    const unfollow = (id: string) => {
      const watch = watches.get(id);
      if (watch) watch.removed = true;
      const loop = loops.get(id);
      if (loop) {
        loops.delete(id);
        cancel(loop.timer);
        loop.aborter.abort();
      }
      cancel(probes.get(id));
      probes.delete(id);
    };
    const sync = (route: string, initial: boolean) => {
      const upstreams = live.get(route) ?? configured.get(route) ?? [];
      const before = followed.get(route) ?? new Set<string>();
      const now = new Set<string>();
      for (const upstream of upstreams) {
        now.add(upstream.id);
        if (before.has(upstream.id)) {
          watchOf(upstream, route); // the same upstream, perhaps a fresh object: its counts go on
          continue;
        }
        follow(upstream, route);
        if (!initial && active) api.log.info({ upstream: upstream.name, route }, 'upstream joined: health checks started');
      }
      for (const id of before) {
        if (now.has(id)) continue;
        unfollow(id);
        if (active) api.log.info({ upstream: watches.get(id)?.upstream.name ?? id, route }, 'upstream left: health checks stopped');
      }
      followed.set(route, now);
    };
    for (const route of configured.keys()) sync(route, true);
    const unsubscribe = live.subscribe((route) => {
      if (stopped || !followed.has(route)) return;
      try {
        sync(route, false);
      } catch (err) {
        api.log.error({ err, route }, 'could not follow the route\'s upstream changes');
      }
    });

    if (passive.enabled) {
      observeAttempts(api, { failureStatuses: passive.statuses }, (ctx, outcome) => {
        // A client going away or a plugin failing says nothing about the upstream.
        if (outcome !== 'inconclusive') recordPassive(ctx, outcome === 'success');
      });
    }

    // One /health-checks route lists the upstreams of every instance of this config.
    const lists = api.shared('lists', () => {
      const all = new Set<() => Watch[]>();
      api.admin({
        method: 'GET',
        path: '/health-checks',
        public: true,
        handler: () => ({ status: 200, json: { upstreams: [...all].flatMap((list) => list()).map(describe) } }),
      });
      return all;
    });
    lists.add(() => [...watches.values()].filter((watch) => !watch.removed));

    return () => {
      stopped = true;
      unsubscribe();
      aborter.abort();
      for (const loop of loops.values()) loop.aborter.abort();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    };
  },
});

function describe(watch: Watch): Record<string, unknown> {
  return {
    route: watch.route,
    id: watch.upstream.id,
    name: watch.upstream.name,
    healthy: watch.down === undefined,
    reason: watch.reason ?? null,
    consecutive: { ok: watch.okStreak, failed: watch.failStreak, passiveFailures: watch.passiveFailures },
    lastCheck: watch.lastCheck ?? null,
  };
}

function compile(source: string | undefined): RegExp | undefined {
  if (source === undefined) return undefined;
  try {
    return new RegExp(source);
  } catch (err) {
    throw new Error(`${NAME}: options.active.bodyMatch is not a valid regular expression: ${(err as Error).message}`);
  }
}
