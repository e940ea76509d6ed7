// One balancer instance (global or on a route): the route tables it keeps, the pick for each
// request, the in-flight counts and latency figures given back when a request ends, and the
// runtime upstream changes it persists and reads back from the store.
import type { FromSchema } from 'json-schema-to-ts';
import type { Resolver } from 'node:dns/promises';
import { createResolver, liveUpstreams, SwitchyardError, type LiveUpstreams, type PluginApi, type RequestContext, type Route, type Upstream } from '../../core/index.js';
import { needsClock, pickerFor, type Picker, type PickSettings } from './algorithms.js';
import { BalancedRoute } from './balanced-route.js';
import { Discovery, newRecord, type DiscoveryView } from './discovery.js';
import { RouteTable, type Expanded, type LatencyTuning, type Member } from './table.js';
import type { schema } from './schema.js';

export type BalancerOptions = FromSchema<typeof schema>;

/** A request's attempt in flight on an upstream (at most one at a time). */
interface Attempt {
  member: Member | undefined;
  table: RouteTable | undefined;
  /** ctx.error when the attempt started, to tell this attempt's failure from an earlier one's. */
  errorBefore: unknown;
}

const NAME = 'balancer';

// One function for every request, so asking for the scratch space makes no closure.
const newAttempt = (): Attempt => ({ member: undefined, table: undefined, errorBefore: undefined });

export class Balancer {
  /** The routes this instance balances from the start (its own, or every configured one when global). */
  readonly routes: readonly BalancedRoute[];
  private readonly tables = new Map<string, RouteTable>();
  private readonly settings: PickSettings;
  private readonly latency: LatencyTuning;
  private readonly defaults: { maxConnections: number };
  private readonly pickMain: Picker;
  private readonly pickStreaming: Picker | undefined;
  /** Whether finished attempts feed the peak EWMA: only the latency algorithm's default formula reads it. */
  private readonly tracksPeak: boolean;
  // Each route's upstreams as they are now, for plugins that follow them (active health checks).
  private readonly live: LiveUpstreams;
  /** Admin writes on their way to the store: the refresh leaves the store alone meanwhile. */
  private committing = 0;
  /** Counts this instance's commits, so a read-back that overlapped one is known to be stale. */
  private commits = 0;
  private refresher: NodeJS.Timeout | undefined;
  /** Upstreams found through DNS, by the id of the upstream marked `discover`. */
  private readonly discoveries = new Map<string, Discovery>();
  /** Made on the first `discover` upstream: server.dns's servers, else the system's. */
  private resolver: Resolver | undefined;
  // A route plugin (the usual case) asks for the same table every time: no Map lookup for it.
  private lastRoute: Route | undefined;
  private lastTable: RouteTable | undefined;

  constructor(private readonly api: PluginApi, private readonly options: BalancerOptions) {
    const { latency } = options;
    if (latency.alphaMin > latency.alphaMax) throw new Error(`${NAME}: options.latency.alphaMin (${latency.alphaMin}) is above alphaMax (${latency.alphaMax})`);
    if (options.dns.minTtl > options.dns.maxTtl) throw new Error(`${NAME}: options.dns.minTtl (${options.dns.minTtl}) is above maxTtl (${options.dns.maxTtl})`);
    this.latency = latency;
    this.settings = { hashKey: options.hashKey ?? '', hashReplicas: options.hashReplicas, slowStart: options.slowStart, reports: options.reports, latency };
    this.defaults = { maxConnections: options.maxConnections };
    this.pickMain = pickerFor(options.algorithm, latency.formula);
    this.pickStreaming = options.streamingAlgorithm === undefined ? undefined : pickerFor(options.streamingAlgorithm, latency.formula);
    this.tracksPeak = latency.formula === 'peak-ewma' && (options.algorithm === 'latency' || options.streamingAlgorithm === 'latency');
    this.live = liveUpstreams(api);
    const owner = {
      tableFor: (name: string) => this.tableFor(name, () => this.configuredUpstreams(name)),
      commit: (table: RouteTable) => this.commit(table),
      discoveries: (name: string) => this.discoveryViews(name),
    };
    const names = api.route ? [api.route.name] : api.config.routes.map((r) => r.name);
    this.routes = names.map((name) => new BalancedRoute(api, name, options.algorithm, options.streamingAlgorithm, this.settings, owner));
  }

  /** Builds the tables of the configured routes, with the runtime changes the store holds. */
  async loadTables(): Promise<void> {
    for (const { name } of this.routes) {
      const table = this.tableFor(name, () => this.configuredUpstreams(name));
      await this.load(table, this.configuredUpstreams(name));
    }
    await Promise.all([...this.discoveries.values()].map((discovery) => discovery.started));
  }

  /** selectUpstream: the upstream for this attempt, by the algorithm, among those that may take it. */
  select(ctx: RequestContext): Upstream {
    const route = ctx.route!;
    let table = route === this.lastRoute ? this.lastTable! : undefined;
    if (table === undefined) {
      table = this.tables.get(route.name) ?? this.tableFor(route.name, () => route.upstreams);
      this.lastRoute = route;
      this.lastTable = table;
    }
    const attempt = ctx.scratch<Attempt>(NAME, newAttempt);
    // The core selects again only to retry: the attempt before this one failed.
    if (attempt.member) this.finish(ctx, attempt, 'failed');
    const member = this.choose(route, table, ctx);
    member.stats.inFlight++;
    attempt.member = member;
    attempt.table = table;
    attempt.errorBefore = ctx.error;
    return member.upstream;
  }

  /** done: gives the attempt's in-flight slot back and records how it went. */
  onDone(ctx: RequestContext): void {
    if (ctx.tried.length === 0) return;
    const attempt = ctx.scratch<Attempt>(NAME, newAttempt);
    const error = ctx.error !== attempt.errorBefore ? ctx.error : undefined;
    if (error?.code === 'SY_ERR_CLIENT_ABORTED') return this.finish(ctx, attempt, 'aborted');
    const failed = error !== undefined || (ctx.response?.status ?? ctx.res.statusCode) >= 500;
    this.finish(ctx, attempt, failed ? 'failed' : 'ok');
  }

  /**
   * Slow start for an upstream that comes back. Reads the current state, not the event's: another
   * plugin may already have marked it down again inside this same change.
   */
  readonly onHealthChange = (upstream: Upstream): void => {
    if (this.options.slowStart.duration <= 0 || !this.api.health.isHealthy(upstream)) return;
    for (const table of this.tables.values()) {
      const member = table.members.find((m) => m.upstream.id === upstream.id);
      if (member) member.warmSince = Date.now();
    }
  };

  /** Another instance on the same store may change upstreams at run time: read the changes back every refreshInterval. */
  startRefreshing(): void {
    if (this.options.refreshInterval <= 0) return;
    this.refresher = setInterval(() => this.refresh().catch((err: unknown) => this.api.log.warn({ err }, 'could not read runtime upstream changes from the store')), this.options.refreshInterval);
    this.refresher.unref();
  }

  dispose(): void {
    clearInterval(this.refresher);
    for (const discovery of this.discoveries.values()) discovery.stop();
    this.resolver?.cancel();
  }

  private choose(route: Route, table: RouteTable, ctx: RequestContext): Member {
    const pick = this.pickStreaming !== undefined && isStreaming(ctx) ? this.pickStreaming : this.pickMain;
    let candidates: readonly Member[];
    if (this.everyMemberFree(table, ctx.tried)) {
      if (table.panic) this.panicOver(table);
      candidates = table.members;
    } else {
      candidates = this.filterCandidates(route, table, ctx);
    }
    if (candidates.length === 1) return candidates[0]!;
    return pick(table, candidates, ctx, this.settings, needsClock(candidates, this.settings) ? Date.now() : 0);
  }

  // The usual case: every member is in service, healthy, not tried yet and below its limit. The
  // members are then the candidates as they are, with no list to build.
  private everyMemberFree(table: RouteTable, tried: readonly Upstream[]): boolean {
    const { members } = table;
    if (members.length === 0) return false;
    // A first attempt (nearly every request) has tried nothing: no list to walk per member.
    const retrying = tried.length > 0;
    for (let i = 0; i < members.length; i++) {
      const member = members[i]!;
      const { settings } = member;
      if (!settings.active || settings.draining || isFull(member) || !this.api.health.isHealthy(member.upstream)) return false;
      if (retrying && wasTried(tried, member)) return false;
    }
    return true;
  }

  // Otherwise the rules in full: healthy before unhealthy (panic mode), untried before tried.
  private filterCandidates(route: Route, table: RouteTable, ctx: RequestContext): Member[] {
    const inService = table.members.filter((m) => m.settings.active && !m.settings.draining);
    if (inService.length === 0) throw new SwitchyardError('SY_ERR_NO_HEALTHY_UPSTREAM', `no upstream of route ${route.name} is in service (all removed, inactive or draining)`);
    const untried = (m: Member) => !wasTried(ctx.tried, m);
    const healthy = inService.filter((m) => this.api.health.isHealthy(m.upstream));
    let candidates: Member[];
    if (healthy.length > 0) {
      if (table.panic) this.panicOver(table);
      candidates = healthy.filter(untried);
      if (candidates.length === 0) candidates = healthy;
    } else {
      if (this.options.failFast) throw new SwitchyardError('SY_ERR_NO_HEALTHY_UPSTREAM', `no healthy upstream for route ${route.name} (failFast)`);
      // Health checks can be wrong; spreading over all beats refusing everything (APISIX, Envoy).
      if (!table.panic) {
        table.panic = true;
        this.api.log.warn({ route: route.name }, 'panic mode: every upstream is unhealthy, spreading traffic over all of them');
      }
      candidates = inService.filter(untried);
      if (candidates.length === 0) candidates = inService;
    }
    candidates = candidates.filter((m) => !isFull(m));
    if (candidates.length === 0) throw new SwitchyardError('SY_ERR_NO_HEALTHY_UPSTREAM', `every upstream of route ${route.name} is at its maxConnections`);
    return candidates;
  }

  private panicOver(table: RouteTable): void {
    table.panic = false;
    this.api.log.info({ route: table.routeName }, 'panic mode over: a healthy upstream is back');
  }

  private finish(ctx: RequestContext, attempt: Attempt, outcome: 'ok' | 'failed' | 'aborted'): void {
    const { member, table } = attempt;
    if (!member || !table) return;
    attempt.member = undefined;
    member.stats.inFlight--;
    // A member gone from its DNS answer is dropped once its last request is over.
    if (member.leaving && member.stats.inFlight === 0) this.resync(table);
    if (outcome === 'aborted') return;
    const start = ctx.timings.upstreamStart ?? 0;
    const head = ctx.timings.firstByte !== undefined && ctx.timings.firstByte >= start ? ctx.timings.firstByte : ctx.elapsed();
    member.stats.record(head - start, outcome === 'ok', this.latency);
    if (this.tracksPeak) member.stats.recordPeak(head - start, outcome === 'ok', table.decayClock, this.latency);
  }

  private tableFor(routeName: string, upstreams: () => readonly Upstream[]): RouteTable {
    let table = this.tables.get(routeName);
    if (table) return table;
    table = this.api.state(() => new RouteTable(routeName, (config) => this.api.createUpstream(config, routeName)), routeName);
    const own = table;
    own.expand = (configured) => this.expand(own, configured);
    this.applyConfig(table, upstreams());
    // Published once the store's runtime changes are read, so nobody sees the file's set first.
    void this.load(table, upstreams()).then(() => this.live.publish(routeName, () => table.members.map((m) => m.upstream)));
    this.tables.set(routeName, table);
    return table;
  }

  private configuredUpstreams(routeName: string): readonly Upstream[] {
    if (this.api.route?.name === routeName) return this.api.route.upstreams;
    const config = this.api.config.routes.find((r) => r.name === routeName);
    return (config?.upstreams ?? []).map((u) => this.api.createUpstream(u, routeName));
  }

  // Runtime changes come back from the store once per process; later reloads keep the in-memory table.
  private load(table: RouteTable, upstreams: readonly Upstream[]): Promise<void> {
    table.loading ??= (async () => {
      try {
        const saved = await this.api.store.get(storeKey(table.routeName)) as RouteTable['changes'] | undefined;
        if (saved) table.changes = { ...saved, ...table.changes };
      } catch (err) {
        this.api.log.error({ err, route: table.routeName }, 'could not read runtime upstream changes from the store; using the config file only');
      }
      this.applyConfig(table, upstreams);
    })();
    return table.loading;
  }

  private applyConfig(table: RouteTable, upstreams: readonly Upstream[]): void {
    const dropped = table.sync(upstreams, this.defaults, this.latency);
    for (const line of dropped) this.api.log.info({ route: table.routeName }, `runtime change dropped: ${line}`);
    if (dropped.length > 0) void this.persist(table);
    this.live.changed(table.routeName);
  }

  /**
   * Each upstream marked `discover` becomes the members its last good DNS answer names, plus those
   * that left the answer while requests were in flight on them (kept, draining, until they end).
   */
  private expand(table: RouteTable, configured: readonly Upstream[]): Expanded {
    if (!configured.some((u) => u.discover)) return { upstreams: configured, leaving: new Set() };
    const upstreams: Upstream[] = [];
    const ids = new Set<string>();
    const leaving = new Set<string>();
    const add = (upstream: Upstream) => {
      if (ids.has(upstream.id)) return false;
      ids.add(upstream.id);
      upstreams.push(upstream);
      return true;
    };
    for (const upstream of configured) {
      if (!upstream.discover) {
        add(upstream);
        continue;
      }
      const discovery = this.discoveryFor(upstream, table);
      for (const member of discovery.members) add(member);
      for (const [id, gone] of discovery.leaving) {
        const member = table.members.find((m) => m.upstream.id === id);
        if (member !== undefined && member.stats.inFlight > 0) {
          if (add(gone)) leaving.add(id);
        } else {
          discovery.leaving.delete(id);
          this.api.log.info({ route: table.routeName, upstream: id }, 'DNS discovery: drained member removed');
        }
      }
    }
    return { upstreams, leaving };
  }

  private discoveryFor(upstream: Upstream, table: RouteTable): Discovery {
    let discovery = this.discoveries.get(upstream.id);
    if (discovery) return discovery;
    this.resolver ??= createResolver(this.api.config.server?.dns);
    const record = this.api.state(newRecord, `discovery:${upstream.id}`);
    discovery = new Discovery(upstream, table.routeName, this.api, this.resolver, this.options.dns, record, () => this.resync(table));
    this.discoveries.set(upstream.id, discovery);
    return discovery;
  }

  private discoveryViews(routeName: string): DiscoveryView[] {
    return [...this.discoveries.values()].filter((d) => d.routeName === routeName).map((d) => d.view());
  }

  /** Lays the same config and runtime changes over the table again (DNS answers changed). */
  private resync(table: RouteTable): void {
    table.resync(this.defaults, this.latency);
    this.live.changed(table.routeName);
  }

  private async commit(table: RouteTable): Promise<void> {
    table.resync(this.defaults, this.latency);
    this.live.changed(table.routeName);
    this.committing++;
    this.commits++;
    try {
      await this.persist(table);
    } finally {
      this.committing--;
    }
  }

  private async persist(table: RouteTable): Promise<void> {
    await this.api.store.set(storeKey(table.routeName), table.changes);
  }

  private async refresh(): Promise<void> {
    for (const table of this.tables.values()) {
      if (this.committing > 0) return; // our own write is on its way; the next round reads it
      const before = this.commits;
      const saved = await this.api.store.get(storeKey(table.routeName)) as RouteTable['changes'] | undefined;
      // A change made here while the read was on its way is newer than what the read found.
      if (this.commits !== before) return;
      if (saved && JSON.stringify(saved) !== JSON.stringify(table.changes)) {
        table.changes = saved;
        table.resync(this.defaults, this.latency);
        this.live.changed(table.routeName);
      }
    }
  }
}

function storeKey(route: string): string {
  return `runtime:${route}`;
}

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
