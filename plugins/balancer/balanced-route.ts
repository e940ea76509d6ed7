// One balanced route as admin code sees it: what its upstreams are doing, and the runtime changes
// (add, change, disconnect, remove, load reports). The balancer's own admin routes and other
// plugins (through `@balancer.tables`, published.ts) both go through these methods.
import { SwitchyardError, type PluginApi, type UpstreamConfig } from '../../core/index.js';
import { loadFactor, peakCost, tmdbProxyShares, warmFactor, type PickSettings } from './algorithms.js';
import type { BalancedRouteHandle, UpstreamStatsRow, UpstreamView } from '../../core/index.js';
import type { DiscoveryView } from './discovery.js';
import { fileEntryOf, type Member, type RouteTable, type RuntimeChange } from './table.js';

/** What a balanced route needs from the balancer instance that serves it. */
export interface TableOwner {
  tableFor(routeName: string): RouteTable;
  /** Re-applies the runtime changes to the table and persists them. */
  commit(table: RouteTable): Promise<void>;
  /** The route's upstreams found through DNS, as `GET /upstream` shows them. */
  discoveries(routeName: string): DiscoveryView[];
}

export type Patch = Partial<Pick<RuntimeChange, 'weight' | 'maxConnections' | 'active' | 'draining'>>;

/** What `GET /upstream` shows of the latency algorithm's view of one upstream. */
interface LatencyFigures {
  cost: number | null;
  share: number | null;
}

export type LoadFigures = { cpu?: number; memory?: number; load?: number; at: number };

export class BalancedRoute implements BalancedRouteHandle {
  constructor(
    private readonly api: PluginApi,
    readonly name: string,
    readonly algorithm: string,
    readonly streamingAlgorithm: string | undefined,
    readonly settings: PickSettings,
    private readonly owner: TableOwner,
  ) {}

  get table(): RouteTable {
    return this.owner.tableFor(this.name);
  }

  upstreams(): UpstreamView[] {
    const figures = this.latencyFigures();
    return this.table.members.map((m) => this.view(m, figures));
  }

  upstream(ref: string): UpstreamView {
    return this.view(this.memberOf(ref), this.latencyFigures());
  }

  async add(body: unknown): Promise<string> {
    const table = this.table;
    const config = upstreamBody(body);
    // Stored with the addition, so the tier does not move when the file's tiers change later.
    if (config.priority === undefined) config.priority = table.defaultPriority;
    const upstream = this.api.createUpstream(config, this.name);
    if (table.find(upstream.id) || table.changes[upstream.id]?.added) throw badRequest(`route ${this.name} already has upstream ${upstream.name}`);
    // Adding back a config-file upstream removed at run time undoes the removal.
    if (table.isConfigured(upstream.id)) delete table.changes[upstream.id];
    else table.changes[upstream.id] = { added: config };
    await this.owner.commit(table);
    return upstream.id;
  }

  change(ref: string, patch: unknown): Promise<string> {
    return this.apply(ref, patchBody(patch));
  }

  async disconnect(ref: string): Promise<string> {
    const id = await this.apply(ref, { active: false });
    const { upstream } = this.memberOf(id);
    // Not awaited: a long response (an event stream) on one of them must not hold up the answer.
    this.api.closeIdleConnections(upstream).catch((err: unknown) => this.api.log.warn({ err }, 'closing the upstream\'s connections failed'));
    return id;
  }

  async remove(ref: string): Promise<string> {
    const table = this.table;
    const id = this.memberOf(ref).upstream.id;
    if (table.isConfigured(id)) table.changes[id] = { file: fileEntryOf(table.configuredUpstream(id)!), removed: true };
    else delete table.changes[id];
    await this.owner.commit(table);
    return id;
  }

  stats(ref: string | null): UpstreamStatsRow[] {
    return this.table.members
      .filter((m) => ref === null || matches(m, ref))
      .map((m) => ({ route: this.name, id: m.upstream.id, name: m.upstream.name, requests: m.stats.requests, failures: m.stats.failures, inFlight: m.stats.inFlight, latencyMs: m.stats.percentiles() }));
  }

  report(ref: string, figures: unknown): string[] {
    const checked = loadFigures(figures);
    const members = this.table.members.filter((m) => matches(m, ref));
    for (const member of members) member.stats.report = checked;
    return members.map((m) => m.upstream.id);
  }

  /** The row `GET /upstream` shows for the upstream known by `ref`. */
  describe(ref: string): Record<string, unknown> {
    const member = this.memberOf(ref);
    return this.describeMember(member, this.latencyFigures().get(member));
  }

  /** What `GET /upstream` shows for the whole route. */
  overview(): Record<string, unknown> {
    const table = this.table;
    const figures = this.latencyFigures();
    return {
      name: this.name,
      algorithm: this.algorithm,
      streamingAlgorithm: this.streamingAlgorithm ?? null,
      latencyFormula: this.usesLatency ? this.settings.latency.formula : null,
      panic: table.panic,
      upstreams: table.members.map((m) => this.describeMember(m, figures.get(m))),
      ...this.discoveryOverview(),
    };
  }

  /** Only routes with upstreams found through DNS say how the lookups go. */
  private discoveryOverview(): { discovery?: DiscoveryView[] } {
    const views = this.owner.discoveries(this.name);
    return views.length > 0 ? { discovery: views } : {};
  }

  private get usesLatency(): boolean {
    return this.algorithm === 'latency' || this.streamingAlgorithm === 'latency';
  }

  /**
   * Each member's cost and share as the latency algorithm sees them now. peak-ewma: the cost it
   * compares, and the member's share of the attempts finished lately (over about the decay time);
   * tmdb-proxy: no cost, and the chance the next pick is this member.
   */
  private latencyFigures(): Map<Member, LatencyFigures> {
    const figures = new Map<Member, LatencyFigures>();
    if (!this.usesLatency) return figures;
    const { members, decayClock } = this.table;
    const now = Date.now();
    const tuning = this.settings.latency;
    const amounts = tuning.formula === 'peak-ewma'
      ? members.map((m) => m.stats.finishedLately(decayClock, tuning))
      : tmdbProxyShares(members, this.settings, now);
    const total = amounts.reduce((sum, amount) => sum + amount, 0);
    members.forEach((m, i) => {
      figures.set(m, {
        cost: tuning.formula === 'peak-ewma' ? round(peakCost(m, decayClock, this.settings, now)) : null,
        share: total > 0 ? round(amounts[i]! / total) : null,
      });
    });
    return figures;
  }

  private async apply(ref: string, patch: Patch): Promise<string> {
    const table = this.table;
    const { upstream } = this.memberOf(ref);
    const record: RuntimeChange = table.changes[upstream.id] ?? { file: fileEntryOf(upstream) };
    Object.assign(record, patch);
    table.changes[upstream.id] = record;
    await this.owner.commit(table);
    return upstream.id;
  }

  private memberOf(ref: string): Member {
    const member = this.table.find(ref);
    if (!member) throw notFound(`route ${this.name} has no upstream "${ref}" (give its id, name or URL, URL-encoded)`);
    return member;
  }

  private view(member: Member, figures: Map<Member, LatencyFigures>): UpstreamView {
    return { ...this.describeMember(member, figures.get(member)), url: member.upstream.url, meta: { ...member.upstream.meta } } as UpstreamView;
  }

  private describeMember(member: Member, latency: LatencyFigures | undefined): Record<string, unknown> {
    const { upstream, settings, stats } = member;
    const health = this.api.health.get(upstream);
    const now = Date.now();
    const warm = warmFactor(member, now, this.settings);
    const load = loadFactor(member, now, this.settings);
    const latencyWeight = this.algorithm === 'latency' && this.settings.latency.formula === 'tmdb-proxy' ? (stats.combinedWeight ?? null) : null;
    return {
      id: upstream.id,
      name: upstream.name,
      source: member.source,
      healthy: health.healthy,
      healthReason: health.reason ?? null,
      healthSince: health.since || null,
      active: settings.active,
      draining: settings.draining,
      priority: settings.priority,
      inFlight: stats.inFlight,
      maxConnections: settings.maxConnections,
      weights: {
        configured: settings.weight,
        base: stats.ewma === undefined ? null : stats.baseWeight,
        dynamic: stats.ewma === undefined ? null : stats.dynamicWeight,
        effective: round(settings.weight * warm * load * (latencyWeight ?? 1)),
      },
      slowStart: warm < 1 ? round(warm) : null,
      alpha: round(stats.alpha),
      ewmaMs: stats.ewma === undefined ? null : round(stats.ewma),
      cost: latency?.cost ?? null,
      share: latency?.share ?? null,
      requests: stats.requests,
      failures: stats.failures,
      report: stats.report ?? null,
    };
  }
}

function matches(member: Member, ref: string): boolean {
  return member.upstream.id === ref || member.upstream.name === ref || member.upstream.url === ref;
}

/** An upstream to add: the config file's upstream shape, checked as strictly as the file is. */
function upstreamBody(body: unknown): UpstreamConfig {
  if (!isObject(body)) throw badRequest('give the upstream as a JSON object: {"url": "http://host:port", "weight"?, "priority"?, "name"?, "meta"?}');
  const unknown = Object.keys(body).filter((k) => !['url', 'name', 'weight', 'priority', 'meta'].includes(k));
  if (unknown.length > 0) throw badRequest(`unknown key "${unknown[0]}" (maxConnections and active are set with PATCH after adding)`);
  if (typeof body.url !== 'string' || !/^https?:\/\/[^\s/]+/.test(body.url) || !URL.canParse(body.url)) throw badRequest('url must be an http(s) URL like http://10.0.0.5:9000');
  if (body.name !== undefined && (typeof body.name !== 'string' || body.name === '')) throw badRequest('name must be a non-empty string');
  if (body.weight !== undefined) positive('weight', body.weight);
  if (body.priority !== undefined && !(Number.isInteger(body.priority) && (body.priority as number) >= 0)) throw badRequest('priority must be an integer ≥ 0');
  if (body.meta !== undefined && !isObject(body.meta)) throw badRequest('meta must be an object');
  return body as UpstreamConfig;
}

function patchBody(body: unknown): Patch {
  if (!isObject(body) || Object.keys(body).length === 0) throw badRequest('give at least one of {"weight": >0, "maxConnections": integer ≥0, "active": boolean, "draining": boolean}');
  const patch: Patch = {};
  for (const [key, value] of Object.entries(body)) {
    if (key === 'weight') patch.weight = positive('weight', value);
    else if (key === 'maxConnections') {
      if (!Number.isInteger(value) || (value as number) < 0) throw badRequest('maxConnections must be an integer ≥ 0 (0 is unlimited)');
      patch.maxConnections = value as number;
    } else if (key === 'active' || key === 'draining') {
      if (typeof value !== 'boolean') throw badRequest(`${key} must be true or false`);
      patch[key] = value;
    } else throw badRequest(`unknown key "${key}" (allowed: weight, maxConnections, active, draining)`);
  }
  return patch;
}

/** `{cpu?, memory?, load?}`, each 0–1, stamped with the time it arrived. */
export function loadFigures(body: unknown): LoadFigures {
  if (!isObject(body)) throw badRequest('give the load as {"cpu"?: 0..1, "memory"?: 0..1, "load"?: 0..1}');
  const given = body;
  const figures: LoadFigures = { at: Date.now() };
  for (const key of ['cpu', 'memory', 'load'] as const) {
    const value = given[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || value < 0 || value > 1) throw badRequest(`${key} must be a number from 0 to 1`);
    figures[key] = value;
  }
  const unknown = Object.keys(given).filter((k) => !['cpu', 'memory', 'load'].includes(k));
  if (unknown.length > 0) throw badRequest(`unknown key "${unknown[0]}"`);
  return figures;
}

function positive(key: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw badRequest(`${key} must be a number > 0`);
  return value;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function badRequest(message: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_BAD_REQUEST', message);
}

export function notFound(message: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_ADMIN_NOT_FOUND', message);
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
