// Response cache: repeated GET/HEAD requests are answered from memory or from the persistent
// store (SQLite, or Redis shared by several instances) instead of asking the upstream each time.
import type { FromSchema } from 'json-schema-to-ts';
import { definePlugin, Stage } from '../../core/index.js';
import { registerInstance } from './admin.js';
import { exportCacheMetrics } from './metrics.js';
import { ResponseCache } from './response-cache.js';

export const name = 'cache';

const seconds = (description: string, fallback: number) => ({ type: 'number', minimum: 0, default: fallback, description } as const);
const bytes = (description: string, fallback: number) => ({ type: 'integer', minimum: 1, default: fallback, description } as const);
const strings = (description: string, fallback: readonly string[]) => ({ type: 'array', items: { type: 'string', minLength: 1 }, default: fallback, description } as const);

export const cacheSchema = {
  type: 'object',
  properties: {
    ttl: seconds("How long a response that gives no lifetime of its own stays fresh (seconds; 0: it is not stored), unless a rule below says otherwise; in forcing mode (honourUpstreamCacheControl: false), every response's.", 0),
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
    vary: strings('Request headers that are part of the key. A response varying on other headers is stored as variants (one per request values of them, RFC 9111 §4.1).', []),
    maxVariants: { type: 'integer', minimum: 1, default: 16, description: 'Most variants kept per URL (Vary values: encodings, origins, languages…); past it the oldest other variant goes.' },
    warmupHost: { type: 'string', default: 'localhost', description: 'Host the warm-up requests carry: keys hold the host, so this is the name clients use.' },
    honourUpstreamCacheControl: {
      type: 'boolean', default: true,
      description: "Standards mode (the default): the upstream's s-maxage/max-age/Expires, less the age it arrived with, is the TTL; false (forcing mode) overrides them with the TTL options.",
    },
    targetedCacheControl: {
      ...strings('Response headers targeted at this cache (RFC 9213, and Surrogate-Control of the Edge Architecture), first present wins: such a field replaces Cache-Control and Expires for the caching decision; [] ignores them all.', ['cdn-cache-control', 'surrogate-control']),
      items: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$' },
    },
    honourClientCacheControl: { type: 'boolean', default: false, description: 'Follow the request: no-cache revalidates, no-store bypasses, only-if-cached answers 504 on a miss.' },
    staleWhileRevalidate: seconds("After expiry, serve the entry this long while one background refresh runs (seconds), for responses that say nothing of it: the origin's own stale-while-revalidate wins, and must-revalidate, proxy-revalidate, s-maxage or no-cache forbid it.", 0),
    staleIfError: seconds("After expiry, serve the entry this long when the upstream fails or answers 5xx (seconds), for responses that say nothing of it: the origin's own stale-if-error wins, and must-revalidate, proxy-revalidate, s-maxage or no-cache forbid it.", 0),
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

export const errors = {
  SY_ERR_CACHE_ONLY_IF_CACHED: { status: 504, message: 'not in the cache, and the request said only-if-cached (cache plugin)' },
} as const;

export default definePlugin({
  name,
  schema: cacheSchema,
  errors,
  setup(api, given: CacheOptions) {
    // Header names compared per request are lower-cased once, here.
    const cache = new ResponseCache(api, {
      ...given, bypassHeader: given.bypassHeader.toLowerCase(), targetedCacheControl: given.targetedCacheControl.map((h) => h.toLowerCase()),
    });
    exportCacheMetrics(api.metrics, cache.stats);
    registerInstance(api, cache);

    api.hooks.cacheLookup.tapMaybeAsync(name, (ctx) => cache.lookup(ctx));
    api.hooks.postResponse.tapMaybeAsync({ name, stage: Stage.OBSERVE }, (ctx) => cache.onResponse(ctx));
    api.hooks.cacheStore.tapMaybeAsync(name, (ctx) => cache.store(ctx));
    api.hooks.error.tap(name, (ctx) => cache.onError(ctx));
    api.hooks.done.tap(name, (ctx) => cache.onDone(ctx));

    return () => cache.dispose();
  },
});
