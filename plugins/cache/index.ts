// Response cache: repeated GET/HEAD requests are answered from memory or from the persistent
// store (SQLite, or Redis shared by several instances) instead of asking the upstream each time.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { FromSchema } from 'json-schema-to-ts';
import { definePlugin, Stage, SwitchyardError, type Reply, type RequestContext } from '../../core/index.js';
import { registerInstance, type CacheInstance } from './admin.js';
import { BodyTee } from './body-tee.js';
import { cacheKey, keyMaker, normaliseUrl, type CacheKey } from './cache-key.js';
import { clock } from './clock.js';
import { Flights, type Flight } from './coalesce.js';
import { freshUntil, newEntry, storableHeaders, type CachedEntry } from './entry.js';
import { MemoryTier } from './memory-tier.js';
import { PersistentTier } from './persistent-tier.js';
import { acceptsEncoding, notModified, NOT_MODIFIED_HEADERS, requestPolicy, responsePolicy, type RequestPolicy } from './policy.js';
import { deleteHeader, fieldsNotRepeated, hasValidators, setValidators, StoredBody } from './revalidate.js';
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
    revalidate: {
      type: 'boolean', default: true,
      description: "Ask the upstream about an expired entry with If-None-Match/If-Modified-Since from its ETag/Last-Modified; a 304 renews the entry (nginx's proxy_cache_revalidate, on by default here).",
    },
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
  /** The stored entry the upstream request is conditional on: a 304 renews and serves it. */
  revalidating?: CachedEntry;
  /**
   * The client's own conditionals, kept when the cache's replace them: an engine may hand the
   * outgoing headers to `ctx.req` (http-proxy does), so `ctx.req.headers` is not the client's then.
   */
  clientConditionals?: IncomingHttpHeaders;
  flight?: Flight;
  /** The complete response, to write to the persistent tier once it went out. */
  entry?: CachedEntry;
  stats?: RouteStats;
}

// One function for every request, so asking for the scratch space makes no closure.
const newRequestState = (): RequestState => ({});

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
    const keyOf = keyMaker(exclude, vary);
    const state = (ctx: RequestContext) => ctx.scratch<RequestState>(name, newRequestState);
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
      if (own) delete ctx.outgoing.headers[REFRESH_HEADER];
      const policy = requestPolicy(ctx.req.method ?? 'GET', ctx.pathname, ctx.url, ctx.req.headers, options);
      // The cache's own refresh or warm-up request goes to the upstream and stores what it gets.
      if (ours) Object.assign(policy, { lookup: false, onlyIfCached: false });
      if (policy.bypass) {
        st.xCache = 'BYPASS';
        counters.bypassed++;
        return undefined;
      }
      const key = st.key = keyOf(ctx.route!.name, ctx.url, ctx.req.headers);
      if (!policy.lookup) return validateOnly(ctx, st, policy);
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
      if (st.revalidating && response.status === 304) return revalidated(ctx, st, st.revalidating);
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
        const entry = newEntry({
          id: key.id, key: key.readable, route: key.route, vary: key.vary, status: response.status, headers, body,
          storedAt: now, ttl: decision.ttl, initialAge: Number.isFinite(upstreamAge) && upstreamAge > 0 ? Math.floor(upstreamAge) : 0,
          keepUntil: now + (decision.ttl + Math.max(options.staleWhileRevalidate, options.staleIfError)) * 1000,
        });
        if (!entry) return st.flight?.settle();
        memory.set(entry);
        st.stats!.stored++;
        st.entry = entry;
        st.flight?.settle(entry);
      }), { preservesLength: true });
    });

    // Only a response that was stored in memory goes on to the persistent tier; the rest need no promise.
    api.hooks.cacheStore.tapMaybeAsync(name, (ctx) => {
      const st = state(ctx);
      if (st.entry && persistent) return persistent.set(st.entry, options.persistent).then(() => undefined);
      return undefined;
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
        st.revalidating = revalidatable(ctx, found);
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
            return forwardWhole(ctx, st);
          });
        }
        st.flight = flights.start(st.key!.id);
      }
      return forwardWhole(ctx, st);
    }

    /**
     * The client's conditionals never go upstream: the cache needs the whole body to store, and
     * answers conditionals itself. When revalidating, the conditionals sent are the cache's own,
     * built from the stored entry's validators.
     */
    function forwardWhole(ctx: RequestContext, st: RequestState): undefined {
      const outgoing = ctx.outgoing;
      if (!st.revalidating && outgoing.headers['if-none-match'] === undefined && outgoing.headers['if-modified-since'] === undefined) return undefined;
      delete outgoing.headers['if-none-match'];
      delete outgoing.headers['if-modified-since'];
      if (st.revalidating) {
        st.clientConditionals = { 'if-none-match': ctx.req.headers['if-none-match'], 'if-modified-since': ctx.req.headers['if-modified-since'] };
        setValidators(outgoing.headers, st.revalidating);
      }
      return undefined;
    }

    /** The stored entry a conditional request may be built from, if revalidation applies to it. */
    function revalidatable(ctx: RequestContext, entry: CachedEntry | undefined): CachedEntry | undefined {
      if (!options.revalidate || !entry || ctx.req.method !== 'GET') return undefined;
      return hasValidators(entry) && acceptsEncoding(ctx.req.headers, entry) ? entry : undefined;
    }

    /**
     * A request that must not be answered from the cache (the cache's own background refresh or
     * warm-up, a client's `no-cache`) still asks the upstream conditionally when an entry with
     * validators is there: a 304 renews that entry instead of sending the whole body again.
     */
    function validateOnly(ctx: RequestContext, st: RequestState, policy: RequestPolicy): undefined | Promise<Reply | undefined> {
      if (!options.revalidate || ctx.req.method !== 'GET') return goUpstream(ctx, st, policy);
      const id = st.key!.id;
      const inMemory = memory.get(id);
      if (inMemory || !persistent) {
        st.revalidating = revalidatable(ctx, inMemory);
        return goUpstream(ctx, st, policy);
      }
      return persistent.get(id).then((stored) => {
        st.revalidating = revalidatable(ctx, stored);
        return goUpstream(ctx, st, policy);
      });
    }

    /**
     * The upstream answered the conditional request with 304: the stored entry is still good. It
     * is renewed — the 304's header fields replace the stored ones of the same name (RFC 9111
     * §4.3.4; Content-Length stays the stored body's, hop-by-hop fields never got this far), and
     * its lifetime starts again, from the updated headers as for a new response — and written to
     * both tiers (memory now, the store in cacheStore). Coalesced requests get it too.
     *
     * The client must not see the upstream's 304 (unless its own conditional matches): the core
     * writes whatever head `ctx.response` holds once postResponse is over, and streams the
     * upstream body through the transforms added here. So this tap turns the head into the stored
     * one in place (status, the stored fields the 304 did not repeat, the stored body's
     * Content-Length) and adds a transform that drops the 304's empty body and emits the stored
     * body. Taps after this one (compression, at a later stage) see a 200 and the stored body, as
     * on a miss; transforms added before it see the 304's empty body, whose output is dropped.
     */
    function revalidated(ctx: RequestContext, st: RequestState, stored: CachedEntry): void {
      const response = ctx.response!;
      const counters = st.stats!;
      counters.revalidated++;
      const now = clock.now();
      const added = fieldsNotRepeated(stored, response.headers);
      const hasBody = stored.status !== 204;
      const updated: OutgoingHttpHeaders = { ...response.headers, ...added };
      deleteHeader(updated, 'content-length');
      if (hasBody) updated['content-length'] = String(stored.body.length);
      const decision = responsePolicy(stored.status, updated, options, now, ctx.pathname);
      const upstreamAge = Number(response.headers.age);
      // Undefined only for a header Node refuses to write, and writing this answer would fail on it anyway.
      const entry = newEntry({
        id: stored.id, key: stored.key, route: stored.route, vary: stored.vary, status: stored.status, body: stored.body,
        headers: storableHeaders(updated), storedAt: now, ttl: decision.store ? decision.ttl : 0,
        initialAge: Number.isFinite(upstreamAge) && upstreamAge > 0 ? Math.floor(upstreamAge) : 0,
        keepUntil: now + ((decision.store ? decision.ttl : 0) + Math.max(options.staleWhileRevalidate, options.staleIfError)) * 1000,
      })!;
      if (decision.store) {
        memory.set(entry);
        st.entry = entry;
        st.flight?.settle(entry);
      } else {
        // The updated headers forbid storing it (no-store now, a TTL of 0): served once, not kept.
        counters.uncacheable++;
        st.flight?.settle();
      }
      response.headers['x-cache'] = 'REVALIDATED';
      if (notModified(st.clientConditionals ?? {}, entry)) {
        // The client holds it too: the upstream's 304 goes on, with the entry's validators and
        // freshness fields. It has no body, and no Content-Length describing one.
        counters.notModified++;
        for (const name of NOT_MODIFIED_HEADERS) if (entry.headers[name] !== undefined) response.headers[name] = entry.headers[name];
        deleteHeader(response.headers, 'content-length');
        return;
      }
      response.status = stored.status;
      Object.assign(response.headers, added);
      deleteHeader(response.headers, 'content-length');
      if (!hasBody) return;
      response.headers['content-length'] = String(stored.body.length);
      ctx.transformResponseBody(new StoredBody(stored.body), { preservesLength: true });
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
