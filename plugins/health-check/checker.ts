// One health-check instance (global or on a route): active checks of each upstream of the live
// sets it follows, passive verdicts from real traffic with a half-open probe, and the verdicts
// written to the core's health table.
import type { FromSchema } from 'json-schema-to-ts';
import { liveUpstreams, type AttemptOutcome, type LiveUpstreams, type PluginApi, type RequestContext, type Upstream } from '../../core/index.js';
import { probe, statusMatcher, type ProbeResult, type ProbeSpec } from './probe.js';
import type { schema } from './schema.js';

export type HealthCheckOptions = FromSchema<typeof schema>;
type ActiveOptions = NonNullable<HealthCheckOptions['active']>;

/** What this plugin knows about one upstream; kept in api.state, so reloads keep counting. */
export interface Watch {
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

export class HealthChecker {
  private readonly passive: HealthCheckOptions['passive'];
  /** Active checks' settings; undefined when they are off. */
  private readonly active: ActiveOptions | undefined;
  private readonly activeSpec: ProbeSpec | undefined;
  private readonly halfOpenSpec: ProbeSpec;
  private readonly watches: Map<string, Watch>;
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Aborts half-open probes in flight on dispose. */
  private readonly aborter = new AbortController();
  private stopped = false;
  /** Upstream id → its active checks in this instance, for the upstreams of the live sets followed. */
  private readonly loops = new Map<string, Loop>();
  /** Upstream id → its pending half-open probe (one at a time). */
  private readonly probes = new Map<string, NodeJS.Timeout>();
  private readonly live: LiveUpstreams;
  /** Each route's upstreams in the config file, for routes no plugin publishes a live set of. */
  private readonly configured: Map<string, readonly Upstream[]>;
  /** Route → the ids of its upstreams this instance follows. */
  private readonly followed = new Map<string, Set<string>>();
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly api: PluginApi, options: HealthCheckOptions) {
    this.passive = options.passive;
    this.active = options.active?.enabled ? options.active : undefined;
    const { active, passive } = this;
    this.activeSpec = active && {
      method: active.method, path: active.path, headers: active.headers, timeout: active.timeout,
      accepts: statusMatcher(active.expectedStatuses), contentType: active.contentType, bodyMatch: compile(api.name, active.bodyMatch),
    };
    // Without active settings the half-open probe asks for / and accepts anything but a failing status.
    this.halfOpenSpec = this.activeSpec ?? {
      method: 'GET', path: '/', headers: {}, timeout: 2000, accepts: (status) => !passive.statuses.includes(status),
    };
    this.watches = api.state(() => new Map<string, Watch>(), 'watches');
    this.live = liveUpstreams(api);
    this.configured = new Map(api.route
      ? [[api.route.name, api.route.upstreams]]
      : api.config.routes.map((r) => [r.name, r.upstreams.map((u) => api.createUpstream(u, r.name))]));
  }

  /**
   * Checks follow each route's live upstream set: the one a balancer publishes (the config file's
   * upstreams with those added and removed at run time), else the config file's.
   */
  followRoutes(): void {
    for (const route of this.configured.keys()) this.sync(route, true);
    this.unsubscribe = this.live.subscribe((route) => {
      if (this.stopped || !this.followed.has(route)) return;
      try {
        this.sync(route, false);
      } catch (err) {
        this.api.log.error({ err, route }, 'could not follow the route\'s upstream changes');
      }
    });
  }

  /** Passive evidence: one judged attempt of a real request. A client going away or a plugin failing says nothing about the upstream. */
  onAttempt(ctx: RequestContext, outcome: AttemptOutcome): void {
    if (outcome !== 'inconclusive') this.recordPassive(ctx, outcome === 'success');
  }

  /** The upstreams this instance's config names now (for GET /health-checks). */
  listed(): Watch[] {
    return [...this.watches.values()].filter((watch) => !watch.removed);
  }

  dispose(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.aborter.abort();
    for (const loop of this.loops.values()) loop.aborter.abort();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private sync(route: string, initial: boolean): void {
    const upstreams = this.live.get(route) ?? this.configured.get(route) ?? [];
    const before = this.followed.get(route) ?? new Set<string>();
    const now = new Set<string>();
    for (const upstream of upstreams) {
      now.add(upstream.id);
      if (before.has(upstream.id)) {
        this.watchOf(upstream, route); // the same upstream, perhaps a fresh object: its counts go on
        continue;
      }
      this.follow(upstream, route);
      if (!initial && this.active) this.api.log.info({ upstream: upstream.name, route }, 'upstream joined: health checks started');
    }
    for (const id of before) {
      if (now.has(id)) continue;
      this.unfollow(id);
      if (this.active) this.api.log.info({ upstream: this.watches.get(id)?.upstream.name ?? id, route }, 'upstream left: health checks stopped');
    }
    this.followed.set(route, now);
  }

  private follow(upstream: Upstream, route: string): void {
    const watch = this.watchOf(upstream, route);
    watch.removed = false;
    const { active } = this;
    if (active && !this.loops.has(upstream.id)) {
      const loop: Loop = { timer: undefined, aborter: new AbortController() };
      this.loops.set(upstream.id, loop);
      // The first check comes soon, jittered, so upstreams that join together are not all probed at once.
      loop.timer = this.later(Math.random() * Math.min(active.interval, 1000) * active.jitter, () => void this.activeRound(watch, loop));
    }
    // A kept passive verdict (a reload, an upstream added back): its probe is still due.
    if (watch.down === 'passive') this.halfOpenIn(watch, Math.max(0, watch.probeAt - Date.now()));
  }

  private unfollow(id: string): void {
    const watch = this.watches.get(id);
    if (watch) watch.removed = true;
    const loop = this.loops.get(id);
    if (loop) {
      this.loops.delete(id);
      this.cancel(loop.timer);
      loop.aborter.abort();
    }
    this.cancel(this.probes.get(id));
    this.probes.delete(id);
  }

  private watchOf(upstream: Upstream, route: string): Watch {
    let watch = this.watches.get(upstream.id);
    if (!watch) {
      watch = { upstream, route, down: undefined, reason: undefined, okStreak: 0, failStreak: 0, passiveFailures: 0, passiveSince: 0, probeAt: 0, checking: false, lastCheck: undefined, removed: false };
      this.watches.set(upstream.id, watch);
    }
    watch.upstream = upstream;
    return watch;
  }

  private async activeRound(watch: Watch, loop: Loop): Promise<void> {
    const { active } = this;
    const result = await this.check(watch, this.activeSpec!, loop.aborter.signal);
    // Removed meanwhile (and perhaps added back, with a loop of its own): this loop ends here.
    if (this.loops.get(watch.upstream.id) !== loop) return;
    if (result && active) {
      if (result.ok) {
        watch.failStreak = 0;
        watch.okStreak++;
        if (watch.down && watch.okStreak >= active.healthyThreshold) this.markUp(watch, `${watch.okStreak} active checks passed`);
      } else {
        watch.okStreak = 0;
        watch.failStreak++;
        if (watch.failStreak >= active.unhealthyThreshold) this.markDown(watch, 'active', `${watch.failStreak} active checks failed: ${result.detail}`);
      }
    }
    // Jitter spreads the checks so upstreams are not all probed in the same instant.
    if (active) loop.timer = this.later(active.interval * (1 + active.jitter * (Math.random() * 2 - 1)), () => void this.activeRound(watch, loop));
  }

  private recordPassive(ctx: RequestContext, ok: boolean): void {
    const { passive } = this;
    const watch = this.watchOf(ctx.upstream!, ctx.route!.name);
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
      this.markDown(watch, 'passive', `${watch.passiveFailures} consecutive failures (last: ${ctx.error?.code ?? `status ${ctx.response?.status}`})`);
      watch.probeAt = now + passive.unhealthyTimeout;
      this.halfOpenIn(watch, passive.unhealthyTimeout);
    }
  }

  private halfOpenIn(watch: Watch, ms: number): void {
    const id = watch.upstream.id;
    this.cancel(this.probes.get(id));
    const timer = this.later(ms, () => {
      this.probes.delete(id);
      void this.halfOpen(watch);
    });
    if (timer) this.probes.set(id, timer);
  }

  private async halfOpen(watch: Watch): Promise<void> {
    if (watch.down !== 'passive' || watch.removed) return;
    const result = await this.check(watch, this.halfOpenSpec, this.aborter.signal);
    if (watch.down !== 'passive' || watch.removed) return;
    if (result?.ok) return this.markUp(watch, 'half-open probe passed');
    watch.probeAt = Date.now() + this.passive.unhealthyTimeout;
    this.halfOpenIn(watch, this.passive.unhealthyTimeout);
  }

  private async check(watch: Watch, spec: ProbeSpec, signal: AbortSignal): Promise<ProbeResult | undefined> {
    if (watch.checking) return undefined;
    watch.checking = true;
    try {
      const result = await probe(watch.upstream, spec, signal);
      if (this.stopped || signal.aborted) return undefined;
      watch.lastCheck = { ...result, at: Date.now() };
      return result;
    } finally {
      watch.checking = false;
    }
  }

  // Logged once per transition of this plugin's verdict, never per request.
  private markDown(watch: Watch, kind: 'active' | 'passive', reason: string): void {
    if (watch.down) return;
    watch.down = kind;
    watch.reason = reason;
    watch.okStreak = 0;
    this.api.log.warn({ upstream: watch.upstream.name, route: watch.route, reason }, 'upstream marked unhealthy');
    this.api.health.set(watch.upstream, false, reason);
  }

  private markUp(watch: Watch, why: string): void {
    if (!watch.down) return;
    watch.down = undefined;
    watch.reason = undefined;
    watch.failStreak = 0;
    watch.passiveFailures = 0;
    this.api.log.info({ upstream: watch.upstream.name, route: watch.route, why }, 'upstream healthy again');
    this.api.health.set(watch.upstream, true);
  }

  /** A timer that does not keep the process up, and is cleared on dispose. */
  private later(ms: number, fn: () => void): NodeJS.Timeout | undefined {
    if (this.stopped) return undefined;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) fn();
    }, ms);
    timer.unref();
    this.timers.add(timer);
    return timer;
  }

  private cancel(timer: NodeJS.Timeout | undefined): void {
    if (!timer) return;
    clearTimeout(timer);
    this.timers.delete(timer);
  }
}

function compile(plugin: string, source: string | undefined): RegExp | undefined {
  if (source === undefined) return undefined;
  try {
    return new RegExp(source);
  } catch (err) {
    throw new Error(`${plugin}: options.active.bodyMatch is not a valid regular expression: ${(err as Error).message}`);
  }
}
