// Preset `tmdb`: the TMDB API and image proxy people run for Jellyfin/Emby/Kodi, from the same
// environment variables as today's proxies. Composition only: key injection, latency balancing,
// failover, type-specific health checks, two-tier cache, nested-proxy detection are plugins.
import type { Preset } from '../core/index.js';
import { envBoolean, envChoice, envInt, envNumber, envPort, envString, envUrls, PresetEnvError } from './env.js';

type UpstreamType = 'tmdb-api' | 'tmdb-image' | 'custom';

const TMDB_API = 'https://api.themoviedb.org';
const TMDB_IMAGE = 'https://image.tmdb.org';
/** TMDB's own logo: small, always there. */
const IMAGE_TEST_PATH = '/t/p/original/wwemzKWzjKYJFfCeiB57q3r4Bcm.png';
/** The cheapest authenticated TMDB call. */
const API_TEST_PATH = '/3/configuration';

/** Admin paths of the Go proxy, for users migrating from it: `/api/…` public, `/mapi/…` protected. */
const GO_ALIASES = [
  { path: '/api/health', target: '/health', public: true },
  { path: '/api/status', target: '/status', public: true },
  { path: '/api/stats', target: '/stats', public: true },
  { path: '/api/upstream', target: '/upstream', public: true },
  { path: '/mapi/config', target: '/config' },
  { path: '/mapi/cache/info', target: '/cache/info' },
  { path: '/mapi/cache/keys', target: '/cache/keys' },
  { path: '/mapi/cache/search', target: '/cache/search' },
  { path: '/mapi/cache/clear', target: '/cache/clear', method: 'POST' },
];

export const tmdb: Preset = {
  variables: { adminKey: 'API_KEY', store: 'CACHE_DIR or STORE_URL' },
  description: 'TMDB API + image proxy (key injection, latency balancing, two-tier cache): TMDB_API_KEY, UPSTREAM_TYPE, UPSTREAM_SERVERS, PORT (6635), API_KEY…',
  build(env) {
    const type = envChoice<UpstreamType>(env, 'UPSTREAM_TYPE', ['tmdb-api', 'tmdb-image', 'custom']);
    const credential = tmdbCredential(env);
    const settings = readSettings(env);
    const routes = type === undefined
      ? combinedRoutes(env).map((r) => route(r.name, r.prefix, r.kind, r.upstreams, credential, settings, env))
      : [route(type, '/', type, singleTypeUpstreams(env, type), credential, settings, env)];
    return {
      server: {
        port: envPort(env, 'PORT', 6635),
        // STORE_URL (redis://… to share the cache between instances) beats CACHE_DIR.
        store: envString(env, 'STORE_URL') ?? `sqlite://${(envString(env, 'CACHE_DIR') ?? './cache').replace(/\/+$/, '')}/switchyard.sqlite`,
        admin: { key: envString(env, 'API_KEY') },
        timeouts: { connect: Math.min(settings.requestTimeout, 5000), firstByte: settings.requestTimeout },
      },
      routes,
      plugins: [
        { name: 'proxy-chain', options: { detect: envBoolean(env, 'ENABLE_NESTED_PROXY_DETECTION', false) } },
        { name: 'proxy-stats' },
        { name: 'admin-aliases', options: { aliases: GO_ALIASES } },
      ],
    };
  },
};

interface Settings {
  cacheEnabled: boolean;
  memoryEntries: number;
  diskEntries: number;
  memoryTtl: number;
  diskTtl: number;
  requestTimeout: number;
  unhealthyTimeout: number;
  maxErrors: number;
  checkInterval: number;
  switches: number;
  latency: Record<string, number>;
}

function readSettings(env: NodeJS.ProcessEnv): Settings {
  return {
    cacheEnabled: envBoolean(env, 'CACHE_ENABLED', true),
    memoryEntries: envInt(env, 'MEMORY_CACHE_SIZE', 100, 1),
    diskEntries: envInt(env, 'CACHE_MAX_SIZE', 1000, 1),
    // Both in milliseconds, as today's proxies read them; the cache counts seconds.
    memoryTtl: envInt(env, 'MEMORY_CACHE_TTL', 3_600_000, 1000) / 1000,
    diskTtl: envInt(env, 'DISK_CACHE_TTL', 86_400_000, 1000) / 1000,
    requestTimeout: envInt(env, 'REQUEST_TIMEOUT', 5000, 1),
    unhealthyTimeout: envInt(env, 'UNHEALTHY_TIMEOUT', 900_000, 1),
    maxErrors: envInt(env, 'MAX_ERRORS_BEFORE_UNHEALTHY', 3, 1),
    checkInterval: envInt(env, 'HEALTH_CHECK_INTERVAL', 30_000, 10),
    switches: envInt(env, 'MAX_SERVER_SWITCHES', 3, 0, 15),
    latency: {
      baseWeightMultiplier: envNumber(env, 'BASE_WEIGHT_MULTIPLIER', 20, 0, Infinity, true),
      dynamicWeightMultiplier: envNumber(env, 'DYNAMIC_WEIGHT_MULTIPLIER', 50, 0, Infinity, true),
      alphaInitial: envNumber(env, 'ALPHA_INITIAL', 0.5, 0, 1),
      alphaAdjustmentStep: envNumber(env, 'ALPHA_ADJUSTMENT_STEP', 0.05, 0, 1),
    },
  };
}

/** TMDB_API_KEY: a v4 read-access token is a JWT (`eyJ…`); anything else is a v3 key. */
function tmdbCredential(env: NodeJS.ProcessEnv): { apiKey: string } | { readAccessToken: string } | undefined {
  const raw = envString(env, 'TMDB_API_KEY');
  if (raw === undefined) return undefined;
  const key = raw.trim();
  if (!/^[\x21-\x7e]+$/.test(key)) throw new PresetEnvError('TMDB_API_KEY', 'has spaces or characters no TMDB key has');
  return /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/.test(key) ? { readAccessToken: key } : { apiKey: key };
}

/** Both kinds on one instance: /3 and /t/p each to their own upstream list. */
function combinedRoutes(env: NodeJS.ProcessEnv): { name: string; prefix: string; kind: UpstreamType; upstreams: string[] }[] {
  if (envString(env, 'UPSTREAM_SERVERS') !== undefined) {
    throw new PresetEnvError('UPSTREAM_SERVERS', 'is set but UPSTREAM_TYPE is not: set UPSTREAM_TYPE (tmdb-api, tmdb-image, custom) as today, or leave it unset and give TMDB_API_SERVERS / TMDB_IMAGE_SERVERS to serve both');
  }
  const api = envUrls(env, 'TMDB_API_SERVERS');
  const image = envUrls(env, 'TMDB_IMAGE_SERVERS');
  return [
    { name: 'tmdb-api', prefix: '/3', kind: 'tmdb-api', upstreams: api.length > 0 ? api : [TMDB_API] },
    { name: 'tmdb-image', prefix: '/t/p', kind: 'tmdb-image', upstreams: image.length > 0 ? image : [TMDB_IMAGE] },
  ];
}

function singleTypeUpstreams(env: NodeJS.ProcessEnv, type: UpstreamType): string[] {
  const given = envUrls(env, 'UPSTREAM_SERVERS');
  if (given.length > 0) return given;
  if (type === 'custom') throw new PresetEnvError('UPSTREAM_SERVERS', 'is not set: UPSTREAM_TYPE=custom needs a comma-separated list of http(s) URLs');
  return [type === 'tmdb-api' ? TMDB_API : TMDB_IMAGE];
}

function route(name: string, prefix: string, kind: UpstreamType, upstreams: string[], credential: ReturnType<typeof tmdbCredential>, s: Settings, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const plugins: Record<string, unknown>[] = [
    // The TMDB proxy's own formula: BASE_WEIGHT_MULTIPLIER and the alpha variables mean what
    // they meant there only in it (presets/tmdb.md, "Balancing").
    { name: 'balancer', options: { algorithm: 'latency', latency: { formula: 'tmdb-proxy', ...s.latency } } },
    // MAX_SERVER_SWITCHES upstreams at most per request; no retry budget, as today: every
    // failed attempt may switch (health checks take a dead upstream out soon enough).
    {
      name: 'retry',
      options: { retries: s.switches, statuses: [500, 502, 503, 504], retryTimeout: s.requestTimeout * (s.switches + 1), budget: { ratio: 1, minRetries: 1000 } },
    },
    { name: 'health-check', options: healthOptions(kind, credential, s, env) },
  ];
  if (kind === 'tmdb-api' && credential) plugins.push({ name: 'tmdb-key', options: credential });
  plugins.push({ name: 'cache', enabled: s.cacheEnabled, options: cacheOptions(kind, s) });
  return {
    name,
    match: { pathPrefix: prefix },
    upstreams: upstreams.map((url) => ({ url })),
    plugins,
  };
}

function healthOptions(kind: UpstreamType, credential: ReturnType<typeof tmdbCredential>, s: Settings, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const common = { interval: s.checkInterval, timeout: Math.min(s.requestTimeout, s.checkInterval), unhealthyThreshold: s.maxErrors, healthyThreshold: 1 };
  const passive = { failures: s.maxErrors, unhealthyTimeout: s.unhealthyTimeout };
  if (kind === 'tmdb-image') {
    return { active: { ...common, path: imageTestPath(env), expectedStatuses: ['2xx'], contentType: 'image/*' }, passive };
  }
  if (kind === 'custom') return { active: { ...common, path: '/', expectedStatuses: ['2xx', '3xx'] }, passive };
  // Probes go straight to the upstream, past tmdb-key, so they carry the credential themselves.
  // Without one, TMDB's 401 JSON still proves the upstream answers.
  if (credential && 'apiKey' in credential) {
    return { active: { ...common, path: `${API_TEST_PATH}?api_key=${encodeURIComponent(credential.apiKey)}`, expectedStatuses: ['2xx'], contentType: 'application/json' }, passive };
  }
  if (credential) {
    return { active: { ...common, path: API_TEST_PATH, headers: { authorization: `Bearer ${credential.readAccessToken}` }, expectedStatuses: ['2xx'], contentType: 'application/json' }, passive };
  }
  return { active: { ...common, path: API_TEST_PATH, expectedStatuses: ['2xx', '401'], contentType: 'application/json' }, passive };
}

/** TMDB_IMAGE_TEST_URL: a path (`/t/p/w92/x.png`) or a whole URL, of which the path is used. */
function imageTestPath(env: NodeJS.ProcessEnv): string {
  const raw = envString(env, 'TMDB_IMAGE_TEST_URL');
  if (raw === undefined) return IMAGE_TEST_PATH;
  if (raw.startsWith('/') && !/\s/.test(raw)) return raw;
  try {
    const url = new URL(raw);
    if (url.protocol === 'http:' || url.protocol === 'https:') return `${url.pathname}${url.search}`;
  } catch { /* reported below */ }
  throw new PresetEnvError('TMDB_IMAGE_TEST_URL', `is "${raw}", neither a path starting with / nor an http(s) URL`);
}

function cacheOptions(kind: UpstreamType, s: Settings): Record<string, unknown> {
  const common = {
    // TMDB says little of freshness: the cache's own TTLs decide (forcing mode).
    honourUpstreamCacheControl: false,
    // DISK_CACHE_TTL: how long an entry is served, from either tier. MEMORY_CACHE_TTL: how long
    // API JSON is (the cache has one freshness per entry, not one per tier; see presets/tmdb.md).
    ttl: s.diskTtl,
    memory: { maxEntries: s.memoryEntries },
    persistent: { enabled: true, maxEntries: s.diskEntries },
    // Only 2xx: a client's 4xx (bad id, bad key) is never stored as a success.
    statuses: [200, 203, 204],
    // The injected key never reaches a key; a client's own key is kept out too.
    excludeQueryParams: ['api_key'],
  };
  if (kind === 'tmdb-api') return { ...common, contentTypes: ['application/json'], ttlByContentType: { 'application/json': Math.min(s.memoryTtl, s.diskTtl) } };
  if (kind === 'tmdb-image') return { ...common, contentTypes: ['image/*'], ttlByContentType: { 'image/*': s.diskTtl } };
  return { ...common, contentTypes: ['*/*'] };
}
