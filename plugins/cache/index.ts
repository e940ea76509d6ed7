// Response cache: repeated GET/HEAD requests are answered from memory or from the persistent
// store (SQLite, or Redis shared by several instances) instead of asking the upstream each time.
import type { FromSchema } from 'json-schema-to-ts';
import { definePlugin, Stage, SwitchyardError, type Reply, type RequestContext } from '../../core/index.js';
import { registerInstance, type CacheInstance } from './admin.js';
import { BodyTee } from './body-tee.js';
import { cacheKey, normaliseUrl, type CacheKey } from './cache-key.js';
import { clock } from './clock.js';
import { Flights, type Flight } from './coalesce.js';
import { freshUntil, storableHeaders, type CachedEntry } from './entry.js';
import { MemoryTier } from './memory-tier.js';
import { PersistentTier } from './persistent-tier.js';
import { acceptsEncoding, requestPolicy, responsePolicy, type RequestPolicy } from './policy.js';
import { answer, onlyIfCachedMiss } from './respond.js';
import { addressOf, configuredAddress, REFRESH_HEADER, refreshHeaders, refreshToken, selfRequest, type ProxyAddress } from './self-request.js';
import { createWarmUp } from './warm-up.js';
import { CacheStats, type RouteStats, type Tier } from './stats.js';
import { exportCacheMetrics } from './metrics.js';

export const name = 'cache';

const seconds = (description: string, fallback: number) => ({ type: 'number', minimum: 0, default: fallback, description } as const);
const bytes = (description: string, fallback: number) => ({ type: 'integer', minimum: 1, default: fallback, description } as const);
const strings = (description: string, fallback: readonly string[]) => ({ type: 'array', items: { type: 'string', minLength: 1 }, default: fallback, description } as const);

export const cacheSchema = {
  type: 'object',
  properties: {
    ttl: seconds('How long a response stays fresh (seconds), unless a rule below says otherwise.', 300),
    ttlByContentType: {
      type: 'object', additionalProperties: { type: 'number', minimum: 0 }, default: {},
      description: 'TTL in seconds per content type, e.g. { "application/json": 3600, "image/*": 86400 }; the most specific pattern wins.',
    },
    ttlByPath: {
      type: 'object', propertyNames: { pattern: '^/' }, additionalProperties: { type: 'number', minimum: 0 }, default: {},
      description: 'TTL in seconds per path prefix, e.g. { "/v1/models": 300 }; the longest matching prefix wins and beats ttlByContentType.',
    },
    contentTypes: strings('Content types that may be stored (`image/*` patterns); anything else is a validation failure.', ['*/*']),
    statuses: { type: 'array', items: { type: 'integer', minimum: 100, maximum: 599 }, default: [200, 203, 204, 301], description: 'Statuses that may be stored.' },
    negativeTtl: seconds('TTL for 404 answers (seconds); 0 never stores them.', 0),
    maxBodyBytes: bytes('Larger responses are streamed through and not stored.', 5 * 1024 * 1024),
    memory: {
      type: 'object', default: {}, additionalProperties: false,
      properties: {
        maxEntries: bytes('Most entries the memory tier holds.', 1000),
        maxBytes: bytes('Most bytes the memory tier holds.', 64 * 1024 * 1024),
      },
    },
    persistent: {
      type: 'object', default: {}, additionalProperties: false,
      properties: {
        enabled: { type: 'boolean', default: true, description: 'Keep entries in the store (server.store) too.' },
        maxEntries: bytes('Most entries this route keeps in the store; the least recently used go first.', 10000),
        maxBytes: bytes('Most body bytes this route keeps in the store.', 256 * 1024 * 1024),
        timeoutMs: bytes('A store call slower than this counts as a failure (ms).', 1000),
      },
    },
    bypassPaths: strings('Path prefixes never cached (e.g. generation endpoints).', []),
    bypassHeader: { type: 'string', default: 'x-cache-bypass', description: 'A request with this header (any value but 0/false/no) skips the cache; "" turns it off.' },
    bypassQuery: { type: 'string', default: 'nocache', description: 'A request with this query parameter skips the cache; "" turns it off.' },
    excludeQueryParams: strings('Query parameters left out of the key, and so never stored or shown.', ['api_key']),
    vary: strings('Request headers that are part of the key; a response varying on any other header (but Accept-Encoding) is not stored.', []),
    honourUpstreamCacheControl: { type: 'boolean', default: false, description: "Use the upstream's s-maxage/max-age/Expires as the TTL." },
    honourClientCacheControl: { type: 'boolean', default: false, description: 'Follow the request: no-cache revalidates, no-store bypasses, only-if-cached answers 504 on a miss.' },
    staleWhileRevalidate: seconds('After expiry, serve the entry this long while one background refresh runs (seconds).', 0),
    staleIfError: seconds('After expiry, serve the entry this long when the upstream fails or answers 5xx (seconds).', 0),
    coalesce: { type: 'boolean', default: true, description: 'Concurrent misses for one key send one upstream request.' },
    coalesceWaitMs: bytes('How long a coalesced request waits before sending its own (ms).', 10000),
    sweepInterval: { type: 'number', exclusiveMinimum: 0, default: 60, description: 'Seconds between sweeps of entries past any use.' },
    warmup: strings('Paths fetched into the cache at start (and by POST /cache/warm).', []),
  },
  additionalProperties: false,
} as const;

export type CacheOptions = FromSchema<typeof cacheSchema>;

/** What the cache remembers about one request between its stages. */
interface RequestState {
  key?: CacheKey;
  xCache?: 'MISS' | 'BYPASS' | 'EXPIRED';
  /** An expired entry that may still answer if the upstream fails. */
  stale?: CachedEntry;
  flight?: Flight;
  /** The complete response, to write to the persistent tier once it went out. */
  entry?: CachedEntry;
  stats?: RouteStats;
}

export default definePlugin({
  name,
  schema: cacheSchema,
  setup(api, given: CacheOptions) {
    // Header names compared per request are lower-cased once, here.
    const options: CacheOptions = { ...given, bypassHeader: given.bypassHeader.toLowerCase() };
    const scope = api.route?.name ?? '*';
    const memory = api.state(() => new MemoryTier(options.memory), 'memory');
    memory.resize(options.memory);
    const persistent = options.persistent.enabled ? PersistentTier.for(api.store, api.log) : undefined;
    if (persistent) persistent.timeoutMs = options.persistent.timeoutMs;
    const stats = api.state(() => new CacheStats(), 'stats');
    exportCacheMetrics(api.metrics, stats);
    const flights = api.state(() => new Flights(), 'flights');
    const seen = api.state((): { address?: ProxyAddress } => ({}), 'address');
    const refreshing = new Set<string>();
    const exclude = new Set(options.excludeQueryParams.map((p) => p.toLowerCase()));
    const vary = options.vary.map((h) => h.toLowerCase());
    const state = (ctx: RequestContext) => ctx.scratch<RequestState>(name, () => ({}));
    const proxyAddress = () => seen.address ?? configuredAddress(api.config.server.host, api.config.server.port);
    const warmUp = createWarmUp(api, options.warmup, proxyAddress);

    // A memory hit answers synchronously; only a store read or a coalesced wait makes a promise.
    api.hooks.cacheLookup.tapMaybeAsync(name, (ctx) => {
      if (ctx.req.method === 'PURGE') return purge(ctx);
      seen.address ??= addressOf(ctx.req);
      warmUp.onRequest();
      const st = state(ctx);
      const counters = st.stats = stats.route(ctx.route!.name);
      const own = ctx.req.headers[REFRESH_HEADER] !== undefined;
      const ours = own && ctx.req.headers[REFRESH_HEADER] === refreshToken;
      if (own) {
        ctx.outgoing.headers = { ...ctx.outgoing.headers };
        delete ctx.outgoing.headers[REFRESH_HEADER];
      }
      const policy = requestPolicy(ctx.req.method ?? 'GET', ctx.pathname, ctx.url, ctx.req.headers, options);
      // The cache's own refresh or warm-up request goes to the upstream and stores what it gets.
      if (ours) Object.assign(policy, { lookup: false, onlyIfCached: false });
      if (policy.bypass) {
        st.xCache = 'BYPASS';
        counters.bypassed++;
        return undefined;
      }
      const key = st.key = cacheKey(ctx.route!.name, ctx.url, ctx.req.headers, exclude, vary);
      if (!policy.lookup) return goUpstream(ctx, st, policy);
      const inMemory = memory.get(key.id);
      if (inMemory) {
        persistent?.touch(key.id);
        return lookedUp(ctx, st, policy, inMemory, 'memory');
      }
      if (!persistent) return lookedUp(ctx, st, policy, undefined, 'memory');
      return persistent.get(key.id).then((stored) => {
        if (stored) memory.set(stored);
        return lookedUp(ctx, st, policy, stored, 'persistent');
      });
    });

    api.hooks.postResponse.tap({ name, stage: Stage.OBSERVE }, (ctx) => {
      const st = state(ctx);
      const response = ctx.response!;
      if (!st.key && !st.xCache) return;
      response.headers['x-cache'] = st.xCache ?? 'MISS';
      if (!st.key || ctx.req.method !== 'GET') return st.flight?.settle();
      const now = clock.now();
      const decision = responsePolicy(response.status, response.headers, options, now, ctx.pathname);
      if (!decision.store) {
        if (decision.validationFailure) {
          st.stats!.validationFailures++;
          ctx.log.debug({ key: st.key.readable, reason: decision.reason }, 'response not cached: validation failed');
        } else {
          st.stats!.uncacheable++;
        }
        return st.flight?.settle();
      }
      const key = st.key;
      const headers = storableHeaders(response.headers);
      const declared = response.headers['content-length'];
      const upstreamAge = Number(response.headers.age);
      ctx.transformResponseBody(new BodyTee(options.maxBodyBytes, (body) => {
        // A body shorter than announced was cut off: never keep half a response.
        if (declared !== undefined && Number(declared) !== body.length) return st.flight?.settle();
        const entry: CachedEntry = {
          id: key.id, key: key.readable, route: key.route, vary: key.vary, status: response.status, headers, body,
          storedAt: now, ttl: decision.ttl, initialAge: Number.isFinite(upstreamAge) && upstreamAge > 0 ? Math.floor(upstreamAge) : 0,
          keepUntil: now + (decision.ttl + Math.max(options.staleWhileRevalidate, options.staleIfError)) * 1000,
        };
        memory.set(entry);
        st.stats!.stored++;
        st.entry = entry;
        st.flight?.settle(entry);
      }), { preservesLength: true });
    });

    api.hooks.cacheStore.tapPromise(name, async (ctx) => {
      const st = state(ctx);
      if (st.entry && persistent) await persistent.set(st.entry, options.persistent);
    });

    api.hooks.error.tap(name, (ctx) => {
      const st = state(ctx);
      st.flight?.settle();
      if (!st.stale) return undefined;
      st.stats!.stale++;
      return answer(ctx, st.stale, 'STALE', st.stats!);
    });

    api.hooks.done.tap(name, (ctx) => {
      state(ctx).flight?.settle();
    });

    /** What a lookup found decides: a fresh hit answers, a stale one may, anything else goes upstream. */
    function lookedUp(ctx: RequestContext, st: RequestState, policy: RequestPolicy, found: CachedEntry | undefined, tier: Tier): Reply | undefined | Promise<Reply | undefined> {
      const counters = st.stats!;
      if (found && !acceptsEncoding(ctx.req.headers, found)) found = undefined;
      const now = clock.now();
      if (found && now < freshUntil(found)) {
        counters.hit(tier, found.body.length);
        return answer(ctx, found, 'HIT', counters);
      }
      if (found) {
        const late = now - freshUntil(found);
        if (late < options.staleWhileRevalidate * 1000) {
          counters.stale++;
          refresh(ctx, st.key!);
          return answer(ctx, found, 'STALE', counters);
        }
        st.xCache = 'EXPIRED';
        counters.expired++;
        if (late < options.staleIfError * 1000) st.stale = found;
      } else {
        counters.misses++;
      }
      if (policy.onlyIfCached) return onlyIfCachedMiss(ctx);
      return goUpstream(ctx, st, policy);
    }

    /** A miss: join a request already on its way for this key, or lead one. */
    function goUpstream(ctx: RequestContext, st: RequestState, policy: RequestPolicy): undefined | Promise<Reply | undefined> {
      if (ctx.req.method !== 'GET') return undefined;
      if (options.coalesce && policy.lookup) {
        const leader = flights.get(st.key!.id);
        if (leader) {
          return flights.wait(leader, options.coalesceWaitMs).then((entry) => {
            if (entry && acceptsEncoding(ctx.req.headers, entry)) {
              st.stats!.coalesced++;
              st.stats!.bytesServed.memory += entry.body.length;
              return answer(ctx, entry, 'HIT', st.stats!);
            }
            return forwardWhole(ctx);
          });
        }
        st.flight = flights.start(st.key!.id);
      }
      return forwardWhole(ctx);
    }

    /** The upstream must send the whole body to be stored; the cache answers conditionals itself. */
    function forwardWhole(ctx: RequestContext): undefined {
      if (ctx.outgoing.headers['if-none-match'] !== undefined || ctx.outgoing.headers['if-modified-since'] !== undefined) {
        ctx.outgoing.headers = { ...ctx.outgoing.headers };
        delete ctx.outgoing.headers['if-none-match'];
        delete ctx.outgoing.headers['if-modified-since'];
      }
      return undefined;
    }

    /** Stale-while-revalidate: one refresh per key at a time, through the proxy itself. */
    function refresh(ctx: RequestContext, key: CacheKey): void {
      const address = addressOf(ctx.req);
      if (!address || refreshing.has(key.id)) return;
      refreshing.add(key.id);
      selfRequest(address, ctx.url, refreshHeaders(ctx.req.headers))
        .catch((err: unknown) => api.log.warn({ key: key.readable, err: (err as Error).message }, 'background refresh failed'))
        .finally(() => refreshing.delete(key.id));
    }

    /** PURGE <url> with the admin key evicts that URL's entries (every Vary variant) from both tiers. */
    async function purge(ctx: RequestContext): Promise<Reply> {
      if (!api.isAdmin(ctx.req)) throw new SwitchyardError(api.config.server.admin.key ? 'SY_ERR_ADMIN_UNAUTHORIZED' : 'SY_ERR_ADMIN_KEY_NOT_SET');
      const route = ctx.route!.name;
      const readable = `GET ${normaliseUrl(ctx.url, exclude)}`;
      const ids = new Set<string>();
      const ofThisUrl = (id: string, key: string, entryRoute: string) => {
        const hit = entryRoute === route && key === readable;
        if (hit) ids.add(id);
        return hit;
      };
      memory.deleteWhere((e) => ofThisUrl(e.id, e.key, e.route));
      // The variant this request's headers select, even if the index lost track of it.
      const direct = cacheKey(route, ctx.url, ctx.req.headers, exclude, vary).id;
      if (memory.delete(direct)) ids.add(direct);
      if (persistent) {
        await persistent.deleteWhere((id, meta) => ofThisUrl(id, meta.key, meta.route));
        if (await persistent.delete(direct)) ids.add(direct);
      }
      api.log.info({ audit: 'cache.purge', who: 'admin-key holder', from: ctx.clientIp, key: readable, removed: ids.size }, 'cache entry purged');
      return { status: ids.size > 0 ? 200 : 404, json: { key: readable, purged: ids.size } };
    }

    const instance: CacheInstance = { route: scope, memory, persistent, stats, flights, exclude, warm: warmUp.warm };
    registerInstance(api, instance, proxyAddress);

    const sweep = setInterval(() => {
      const now = clock.now();
      memory.sweep(now);
      void persistent?.sweep(now);
    }, options.sweepInterval * 1000);
    sweep.unref();

    return async () => {
      clearInterval(sweep);
      warmUp.dispose();
      await persistent?.flush();
    };
  },
});
