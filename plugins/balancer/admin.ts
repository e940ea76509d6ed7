// The balancer's admin routes: what every upstream is doing (GET /upstream, GET /stats/upstream),
// changing upstreams at run time (persisted), and upstreams reporting their own load (POST /report).
import { SwitchyardError, type PluginApi, type Reply, type UpstreamConfig } from '../../core/index.js';
import { loadFactor, warmFactor, type PickSettings } from './algorithms.js';
import type { Member, RouteTable, RuntimeChange } from './table.js';
import { fileEntryOf } from './table.js';

/** One route a balancer instance serves, as the admin routes see it. */
export interface BalancedRoute {
  readonly name: string;
  readonly algorithm: string;
  readonly streamingAlgorithm: string | undefined;
  readonly settings: PickSettings;
  table(): RouteTable;
  /** Re-applies the runtime changes to the table and persists them. */
  commit(table: RouteTable): Promise<void>;
}

/** Registers the admin routes once per applied config (every instance shares them); `aliases` adds a second set of paths over the same operations. */
export function registerAdmin(api: PluginApi, routes: readonly BalancedRoute[], aliases?: (balanced: Map<string, BalancedRoute>) => void): void {
  let first = false;
  const balanced = api.shared('routes', () => {
    first = true;
    return new Map<string, BalancedRoute>();
  });
  for (const route of routes) balanced.set(route.name, route);
  if (!first) return;

  api.admin({ method: 'GET', path: '/upstream', public: true, handler: () => ({ status: 200, json: { routes: overview(api, balanced) } }) });
  api.admin({ method: 'GET', path: '/stats/upstream', public: true, handler: (req) => stats(balanced, req.query.get('route'), req.query.get('id')) });
  api.admin({ method: 'POST', path: '/upstream/:route', handler: async (req) => addUpstream(api, balanced, req.params.route!, await req.json()) });
  api.admin({ method: 'PATCH', path: '/upstream/:route/:upstream', handler: async (req) => changeUpstream(api, balanced, req.params.route!, req.params.upstream!, patchBody(await req.json())) });
  api.admin({ method: 'POST', path: '/upstream/:route/:upstream/drain', handler: (req) => changeUpstream(api, balanced, req.params.route!, req.params.upstream!, { draining: true }) });
  api.admin({ method: 'POST', path: '/upstream/:route/:upstream/disconnect', handler: (req) => disconnectUpstream(api, balanced, req.params.route!, req.params.upstream!) });
  api.admin({ method: 'DELETE', path: '/upstream/:route/:upstream', handler: (req) => removeUpstream(balanced, req.params.route!, req.params.upstream!) });
  api.admin({ method: 'POST', path: '/report', handler: async (req) => report(balanced, await req.json()) });
  if (aliases) aliases(balanced);
}

/** The admin operations, shared by the routes above and by alias paths (go-proxy-admin.ts). */
export async function addUpstream(api: PluginApi, balanced: Map<string, BalancedRoute>, routeName: string, body: unknown): Promise<Reply> {
  const route = routeOf(balanced, routeName);
  const table = route.table();
  const config = upstreamBody(body);
  const upstream = api.createUpstream(config, route.name);
  if (table.find(upstream.id) || table.changes[upstream.id]?.added) throw badRequest(`route ${route.name} already has upstream ${upstream.name}`);
  // Adding back a config-file upstream removed at run time undoes the removal.
  if (table.isConfigured(upstream.id)) delete table.changes[upstream.id];
  else table.changes[upstream.id] = { added: config };
  await route.commit(table);
  return { status: 201, json: { route: route.name, upstream: describe(table.find(upstream.id)!, route, api) } };
}

export async function removeUpstream(balanced: Map<string, BalancedRoute>, routeName: string, ref: string): Promise<Reply> {
  const { route, table, member } = memberOf(balanced, routeName, ref);
  const id = member.upstream.id;
  if (table.isConfigured(id)) table.changes[id] = { file: fileEntryOf(table.configuredUpstream(id)!), removed: true };
  else delete table.changes[id];
  await route.commit(table);
  return { status: 200, json: { route: route.name, removed: member.upstream.id } };
}

export function report(balanced: Map<string, BalancedRoute>, body: unknown): Reply {
  if (!isObject(body) || typeof body.upstream !== 'string') throw badRequest('give {"upstream": "<id, name or URL>", "cpu"?: 0..1, "memory"?: 0..1, "load"?: 0..1, "route"?: "<name>"}');
  const figures: { cpu?: number; memory?: number; load?: number; at: number } = { at: Date.now() };
  for (const key of ['cpu', 'memory', 'load'] as const) {
    const value = body[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || value < 0 || value > 1) throw badRequest(`${key} must be a number from 0 to 1`);
    figures[key] = value;
  }
  const unknown = Object.keys(body).filter((k) => !['upstream', 'route', 'cpu', 'memory', 'load'].includes(k));
  if (unknown.length > 0) throw badRequest(`unknown key "${unknown[0]}"`);
  const routes = body.route === undefined ? [...balanced.values()] : [routeOf(balanced, String(body.route))];
  const members = routes.flatMap((route) => route.table().members.filter((m) => matches(m, body.upstream as string)));
  if (members.length === 0) throw notFound(`no balanced upstream "${body.upstream}"`);
  for (const member of members) member.stats.report = figures;
  return { status: 200, json: { updated: members.map((m) => m.upstream.id) } };
}

export type Patch = Partial<Pick<RuntimeChange, 'weight' | 'maxConnections' | 'active' | 'draining'>>;

/** Stops traffic to the upstream and closes its pooled connections once their requests ended. */
export async function disconnectUpstream(api: PluginApi, balanced: Map<string, BalancedRoute>, routeName: string, ref: string): Promise<Reply> {
  const reply = await changeUpstream(api, balanced, routeName, ref, { active: false });
  const { member } = memberOf(balanced, routeName, ref);
  // Not awaited: a long response (an event stream) on one of them must not hold up the answer.
  api.closeIdleConnections(member.upstream).catch((err: unknown) => api.log.warn({ err }, 'closing the upstream\'s connections failed'));
  return reply;
}

export async function changeUpstream(api: PluginApi, balanced: Map<string, BalancedRoute>, routeName: string, ref: string, patch: Patch): Promise<Reply> {
  const { route, table, member } = memberOf(balanced, routeName, ref);
  const id = member.upstream.id;
  const record: RuntimeChange = table.changes[id] ?? { file: fileEntryOf(member.upstream) };
  Object.assign(record, patch);
  table.changes[id] = record;
  await route.commit(table);
  return { status: 200, json: { route: route.name, upstream: describe(table.find(id)!, route, api) } };
}

export function overview(api: PluginApi, balanced: Map<string, BalancedRoute>): unknown[] {
  return api.config.routes.map((config) => {
    const route = balanced.get(config.name);
    if (route) {
      const table = route.table();
      return { name: route.name, algorithm: route.algorithm, streamingAlgorithm: route.streamingAlgorithm ?? null, panic: table.panic, upstreams: table.members.map((m) => describe(m, route, api)) };
    }
    // A route without a balancer: health is all there is to say.
    return {
      name: config.name,
      algorithm: null,
      upstreams: config.upstreams.map((u) => {
        const upstream = api.createUpstream(u, config.name);
        const health = api.health.get(upstream);
        return { id: upstream.id, name: upstream.name, healthy: health.healthy, healthReason: health.reason ?? null };
      }),
    };
  });
}

export function describe(member: Member, route: BalancedRoute, api: PluginApi): Record<string, unknown> {
  const { upstream, settings, stats } = member;
  const health = api.health.get(upstream);
  const now = Date.now();
  const warm = warmFactor(member, now, route.settings);
  const load = loadFactor(member, now, route.settings);
  const latencyWeight = route.algorithm === 'latency' ? (stats.combinedWeight ?? null) : null;
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
    requests: stats.requests,
    failures: stats.failures,
    report: stats.report ?? null,
  };
}

export function stats(balanced: Map<string, BalancedRoute>, routeName: string | null, ref: string | null): Reply {
  const routes = routeName ? [routeOf(balanced, routeName)] : [...balanced.values()];
  const rows = routes.flatMap((route) => route.table().members
    .filter((m) => ref === null || matches(m, ref))
    .map((m) => ({ route: route.name, id: m.upstream.id, name: m.upstream.name, requests: m.stats.requests, failures: m.stats.failures, inFlight: m.stats.inFlight, latencyMs: m.stats.percentiles() })));
  if (ref !== null && rows.length === 0) throw notFound(`no balanced upstream "${ref}"${routeName ? ` on route ${routeName}` : ''}`);
  return { status: 200, json: { upstreams: rows } };
}

export function routeOf(balanced: Map<string, BalancedRoute>, name: string): BalancedRoute {
  const route = balanced.get(name);
  if (!route) throw notFound(`no balanced route "${name}" (balanced: ${[...balanced.keys()].join(', ') || 'none'})`);
  return route;
}

export function memberOf(balanced: Map<string, BalancedRoute>, routeName: string, ref: string): { route: BalancedRoute; table: RouteTable; member: Member } {
  const route = routeOf(balanced, routeName);
  const table = route.table();
  const member = table.find(ref);
  if (!member) throw notFound(`route ${route.name} has no upstream "${ref}" (give its id, name or URL, URL-encoded)`);
  return { route, table, member };
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

export function patchBody(body: unknown): Patch {
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
