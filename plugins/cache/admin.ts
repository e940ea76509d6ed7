// The cache's admin routes: sizes and hit ratios, key listing and search, clearing (everything
// only with confirm=yes; a prefix or one key any time), warm-up on demand. The plugin may be on
// several routes; the routes are registered once per applied config and see every instance.
import type { AdminRequest, PluginApi, Reply } from '../../core/index.js';
import { cacheClearListeners, SwitchyardError, type ClearEvent } from '../../core/index.js';
import { normaliseUrl } from './cache-key.js';
import { clock } from './clock.js';
import type { Flights } from './coalesce.js';
import { freshUntil } from './entry.js';
import type { MemoryTier } from './memory-tier.js';
import type { PersistentTier } from './persistent-tier.js';
import { totalOf, type CacheStats } from './stats.js';

export interface WarmResult {
  path: string;
  status?: number;
  error?: string;
}

/** One configured instance of the plugin (a route, or `*` for the global one), as admin sees it. */
export interface CacheInstance {
  readonly route: string;
  readonly memory: MemoryTier;
  readonly persistent: PersistentTier | undefined;
  readonly stats: CacheStats;
  readonly flights: Flights;
  /** Query parameters left out of keys, so a `?key=` given with them still finds the entry. */
  readonly exclude: ReadonlySet<string>;
  warm(): Promise<WarmResult[]>;
}

/** Adds an instance; the first one of an applied config registers the admin routes. */
export function registerInstance(api: PluginApi, instance: CacheInstance): void {
  const instances = api.shared('instances', () => {
    const all = new Map<string, CacheInstance>();
    addAdminRoutes(api, all);
    return all;
  });
  instances.set(instance.route, instance);
}

interface KeyRow {
  key: string;
  route: string;
  id: string;
  size: number;
  storedAt: string;
  expiresAt: string;
  tiers: string[];
  /** Answers served from the entry since it entered memory (0 for one only on disk). */
  hits: number;
}

function addAdminRoutes(api: PluginApi, instances: Map<string, CacheInstance>): void {
  const all = () => [...instances.values()];
  const persistentOf = () => all().find((i) => i.persistent)?.persistent;

  api.admin({ method: 'GET', path: '/cache/info', handler: () => {
    const persistent = persistentOf();
    const total = totalOf(all().flatMap((i) => [...i.stats.routes.values()]));
    return ok({
      memory: all().map((i) => ({ route: i.route, entries: i.memory.size, bytes: i.memory.bytes, maxEntries: i.memory.limits.maxEntries, maxBytes: i.memory.limits.maxBytes })),
      persistent: persistent
        ? { available: persistent.available, entries: persistent.size, bytes: persistent.bytes, corrupted: persistent.corrupted, failures: persistent.failures }
        : null,
      coalescing: { waiting: all().reduce((n, i) => n + i.flights.waiting, 0) },
      // Whether invalidations by other instances on the store reach this one yet.
      invalidations: { listening: api.channel.listening },
      total: total.toJSON(),
      routes: Object.fromEntries(all().flatMap((i) => [...i.stats.routes].map(([route, s]) => [route, s.toJSON()]))),
    });
  } });

  api.admin({ method: 'GET', path: '/cache/keys', handler: (req) => listing(req, rows(all(), persistentOf())) });

  api.admin({ method: 'GET', path: '/cache/search', handler: (req) => {
    const q = req.query.get('q') ?? '';
    if (!q) throw new SwitchyardError('SY_ERR_BAD_REQUEST', 'give the text to look for as ?q=');
    return listing(req, rows(all(), persistentOf()).filter((row) => row.key.includes(q)));
  } });

  api.admin({ method: 'POST', path: '/cache/clear', handler: async (req) => {
    const type = req.query.get('type') ?? 'all';
    if (type !== 'memory' && type !== 'disk' && type !== 'all') throw new SwitchyardError('SY_ERR_BAD_REQUEST', 'type must be memory, disk or all');
    const prefix = req.query.get('prefix') ?? undefined;
    const key = req.query.get('key') ?? undefined;
    const route = req.query.get('route') ?? undefined;
    if (prefix === undefined && key === undefined && route === undefined && req.query.get('confirm') !== 'yes') {
      throw new SwitchyardError('SY_ERR_BAD_REQUEST', `clearing every entry (type=${type}) needs confirm=yes; to remove less, give prefix=, key= or route=`);
    }
    const removed = await clear(all(), persistentOf(), type, { prefix, key, route });
    // The audit line says who and from where, never the admin key itself.
    api.log.info({
      audit: 'cache.clear', who: 'admin-key holder', from: req.raw.socket.remoteAddress, forwardedFor: req.raw.headers['x-forwarded-for'],
      userAgent: req.raw.headers['user-agent'], type, prefix, key, route, removed,
    }, 'cache cleared');
    const listeners = [...cacheClearListeners(api)];
    if (listeners.length === 0) return ok({ cleared: type, removed });
    const event: ClearEvent = { type, query: req.query, headers: req.raw.headers };
    const cascade = await Promise.all(listeners.map(async (listener) => {
      try {
        return await listener(event);
      } catch (err) {
        return [{ error: (err as Error).message }];
      }
    }));
    return ok({ cleared: type, removed, cascade: cascade.flat() });
  } });

  api.admin({ method: 'POST', path: '/cache/warm', handler: async () => {
    const results: Record<string, WarmResult[]> = {};
    for (const instance of all()) results[instance.route] = await instance.warm();
    return ok({ warmed: results });
  } });
}

function ok(json: unknown): Reply {
  return { status: 200, json };
}

/** Every entry either tier holds, once, sorted by key. */
function rows(instances: CacheInstance[], persistent: PersistentTier | undefined): KeyRow[] {
  const byId = new Map<string, KeyRow>();
  const iso = (ms: number) => new Date(ms).toISOString();
  for (const [id, meta] of persistent?.entries() ?? []) {
    byId.set(id, { key: meta.key, route: meta.route, id, size: meta.size, storedAt: iso(meta.storedAt), expiresAt: iso(meta.freshUntil), tiers: ['persistent'], hits: 0 });
  }
  for (const instance of instances) {
    for (const entry of instance.memory.entries()) {
      const row = byId.get(entry.id);
      if (row) {
        row.tiers.unshift('memory');
        row.hits = entry.hits;
      } else byId.set(entry.id, { key: entry.key, route: entry.route, id: entry.id, size: entry.body.length, storedAt: iso(entry.storedAt), expiresAt: iso(freshUntil(entry)), tiers: ['memory'], hits: entry.hits });
    }
  }
  return [...byId.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.route < b.route ? -1 : 1));
}

function listing(req: AdminRequest, all: KeyRow[]): Reply {
  const sort = req.query.get('sort') ?? 'key';
  if (sort === 'hits') all.sort((a, b) => b.hits - a.hits);
  else if (sort !== 'key') throw new SwitchyardError('SY_ERR_BAD_REQUEST', 'sort is key (the default) or hits');
  const limit = Math.min(Math.max(Number(req.query.get('limit') ?? 100) || 100, 1), 1000);
  const offset = Math.max(Number(req.query.get('offset') ?? 0) || 0, 0);
  const now = clock.now();
  return ok({
    total: all.length, limit, offset,
    keys: all.slice(offset, offset + limit).map((row) => ({ ...row, expired: Date.parse(row.expiresAt) <= now })),
  });
}

interface Selector {
  prefix?: string;
  key?: string;
  route?: string;
}

async function clear(instances: CacheInstance[], persistent: PersistentTier | undefined, type: string, selector: Selector): Promise<{ memory: number; disk: number }> {
  const removed = { memory: 0, disk: 0 };
  const everything = selector.prefix === undefined && selector.key === undefined && selector.route === undefined;
  const matches = (key: string, route: string) => {
    if (selector.route !== undefined && route !== selector.route) return false;
    const url = key.slice(key.indexOf(' ') + 1);
    if (selector.prefix !== undefined && !key.startsWith(selector.prefix) && !url.startsWith(selector.prefix)) return false;
    if (selector.key !== undefined && key !== selector.key && url !== selector.key && !sameUrl(instances, route, url, selector.key)) return false;
    return true;
  };
  if (type !== 'disk') {
    for (const instance of instances) {
      removed.memory += everything ? instance.memory.clear() : instance.memory.deleteWhere((e) => matches(e.key, e.route));
    }
  }
  if (type !== 'memory' && persistent) {
    removed.disk = everything ? await persistent.clear() : await persistent.deleteWhere((_, meta) => matches(meta.key, meta.route));
  }
  return removed;
}

/** `?key=/x?b=2&a=1` finds `GET /x?a=1&b=2`: the given URL is normalised the way keys are. */
function sameUrl(instances: CacheInstance[], route: string, url: string, given: string): boolean {
  const exclude = instances.find((i) => i.route === route || i.route === '*')?.exclude ?? new Set<string>();
  return normaliseUrl(given.replace(/^(GET|HEAD) /, ''), exclude) === url;
}
