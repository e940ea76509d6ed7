// Preset `balancer`: a general load-balancing reverse proxy from environment variables (or a YAML
// file with `preset: balancer`): weighted/priority balancing with sticky streams, health checks,
// retries, per-path caching, rate limits, CORS, compression and the Go proxy's admin paths.
// Composition only: every behaviour is a plugin. The variables are documented in presets/balancer.md.
import type { Preset } from '../core/index.js';
import { ALGORITHMS } from '../plugins/balancer/algorithms.js';
import { envBoolean, envPort, envString, PresetEnvError } from './env.js';
import { SPEEDMIMI_ALGORITHMS } from './speedmimi.js';

export const balancer: Preset = {
  variables: { store: 'STORE_URL' },
  description: 'general load-balancing reverse proxy: BACKEND_SERVERS (url|weight|priority|region or a JSON array), LB_ALGORITHM, RETRY_METHODS, HEALTH_PATH, HEALTH_TIMEOUT, LB_USE_REPORTS, ADMIN_PORT, CACHE_TTLS, RATE_LIMIT, CORS_ORIGINS, ADMIN_KEY, PORT (8080)',
  build(env) {
    const cacheTtls = parseCacheTtls(env);
    const cacheBypass = envList(env, 'CACHE_BYPASS');
    for (const prefix of cacheBypass) if (!prefix.startsWith('/')) throw new PresetEnvError('CACHE_BYPASS', `entry "${prefix}" is not a path prefix starting with /`);
    const rateLimit = parseRateLimit(env);
    const corsOrigins = envList(env, 'CORS_ORIGINS');
    const backends = parseBackends(env);
    const balancing = algorithm(env);
    const useReports = envBoolean(env, 'LB_USE_REPORTS', balancing.reports);
    // Only latency and p2c weigh the reports in: anything else would take them and change nothing.
    if (useReports && !REPORT_ALGORITHMS.includes(balancing.algorithm)) {
      throw new PresetEnvError('LB_USE_REPORTS', `is on, but LB_ALGORITHM ${balancing.algorithm} does not use load reports; use latency, p2c or performance_least_connections_weight`);
    }
    const adminPort = envString(env, 'ADMIN_PORT') === undefined ? undefined : envPort(env, 'ADMIN_PORT', 0);
    return {
      server: {
        port: envPort(env, 'PORT', 8080),
        ...(envString(env, 'STORE_URL') ? { store: envString(env, 'STORE_URL') } : {}),
        // SpeedMimi served its admin API on a port of its own.
        admin: { key: envString(env, 'ADMIN_KEY'), ...(adminPort === undefined ? {} : { port: adminPort }) },
      },
      // The plugins below are global, so they also apply to routes a file with `preset: balancer` adds or replaces.
      routes: [{ name: 'backends', match: { pathPrefix: '/' }, upstreams: backends }],
      plugins: [
        // CORS first: its headers go on every answer, a 429 included, and preflights never count.
        { name: 'cors', enabled: corsOrigins.length > 0, options: { origins: corsOrigins.length > 0 ? corsOrigins : ['*'] } },
        { name: 'rate-limit', enabled: rateLimit !== undefined, options: { limits: [rateLimit ?? { count: 1, window: '1s' }] } },
        // Only the listed prefixes are cached (ttl 0 elsewhere): a general proxy cannot guess what is safe to keep.
        {
          name: 'cache',
          enabled: Object.keys(cacheTtls).length > 0,
          options: { honourUpstreamCacheControl: false, ttl: 0, ttlByPath: cacheTtls, bypassPaths: cacheBypass, persistent: { enabled: false } },
        },
        // On the same level as the cache and after it: the cache keeps the identity body, each client gets its encoding.
        { name: 'compression', enabled: envFlag(env, 'COMPRESSION', true), options: { identityUpstream: true } },
        {
          name: 'health-check',
          options: { active: { path: healthPath(env), interval: envDuration(env, 'HEALTH_INTERVAL', 10_000), timeout: envDuration(env, 'HEALTH_TIMEOUT', 2_000) } },
        },
        // Failover: a request that never reached a backend (refused, DNS, connect timeout) goes to the
        // next one whatever its method; a reset or a 502/503/504 only for RETRY_METHODS (idempotent ones).
        { name: 'retry', options: retryOptions(env) },
        {
          name: 'balancer',
          options: {
            algorithm: balancing.algorithm,
            reports: { enabled: useReports },
            // Protocol-specific balancing: a WebSocket or SSE client stays on one backend.
            ...(envFlag(env, 'STICKY_STREAMS', true) ? { streamingAlgorithm: 'ip-hash' } : {}),
          },
        },
        // The Go proxy's admin paths over the balancer's routes (and /health, /api/health, /api/ip-preference).
        {
          name: 'go-proxy-admin',
          // What PUT /api/v1/config replaces: normally the --config file (unset: it answers 501).
          options: envString(env, 'CONFIG_FILE') ? { configFile: envString(env, 'CONFIG_FILE') } : {},
        },
      ],
    };
  },
};

/**
 * `url|weight|priority|region,…`, or the edge worker's JSON array
 * `[{"url", "weight"?, "priority"?, "region"?}, …]` (what its users keep as a secret) → upstreams.
 */
function parseBackends(env: NodeJS.ProcessEnv): Record<string, unknown>[] {
  const raw = envString(env, 'BACKEND_SERVERS');
  const example = 'give a comma-separated list like http://10.0.0.1:8080|3,http://10.0.0.2:8080|1 or a JSON array like [{"url":"http://10.0.0.1:8080","weight":3,"priority":1}]';
  if (!raw) throw new PresetEnvError('BACKEND_SERVERS', `is not set: ${example}`);
  const backends = raw.trim().startsWith('[') ? backendsFromJson(raw) : backendsFromList(raw);
  if (backends.length === 0) throw new PresetEnvError('BACKEND_SERVERS', `lists no backend: ${example}`);
  return backends;
}

function backendsFromList(raw: string): Record<string, unknown>[] {
  const entries = raw.split(',').map((entry) => entry.trim()).filter(Boolean);
  return entries.map((entry) => {
    const [url = '', weight, priority, region, ...extra] = entry.split('|').map((part) => part.trim());
    if (extra.length > 0) throw new PresetEnvError('BACKEND_SERVERS', `entry "${entry}" has more than url|weight|priority|region`);
    return backend(`entry "${entry}"`, url, weight ? Number(weight) : undefined, priority ? Number(priority) : undefined, region, { weight, priority });
  });
}

const JSON_BACKEND_KEYS = ['url', 'weight', 'priority', 'region'];

function backendsFromJson(raw: string): Record<string, unknown>[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new PresetEnvError('BACKEND_SERVERS', `starts with [ but is not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(parsed)) throw new PresetEnvError('BACKEND_SERVERS', 'is not a JSON array');
  return parsed.map((item: unknown, i) => {
    const where = `item ${i}`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw new PresetEnvError('BACKEND_SERVERS', `${where} is not an object like {"url": "http://10.0.0.1:8080", "weight": 3}`);
    const entry = item as Record<string, unknown>;
    const unknown = Object.keys(entry).find((key) => !JSON_BACKEND_KEYS.includes(key));
    if (unknown !== undefined) throw new PresetEnvError('BACKEND_SERVERS', `${where} has unknown key "${unknown}" (allowed: ${JSON_BACKEND_KEYS.join(', ')})`);
    const { url, weight, priority, region } = entry;
    if (typeof url !== 'string') throw new PresetEnvError('BACKEND_SERVERS', `${where} has no "url" string`);
    if (weight !== undefined && typeof weight !== 'number') throw new PresetEnvError('BACKEND_SERVERS', `${where}: weight ${JSON.stringify(weight)} is not a number above 0`);
    if (priority !== undefined && typeof priority !== 'number') throw new PresetEnvError('BACKEND_SERVERS', `${where}: priority ${JSON.stringify(priority)} is not a whole number ≥ 0 (lower is preferred)`);
    if (region !== undefined && typeof region !== 'string') throw new PresetEnvError('BACKEND_SERVERS', `${where}: region must be a string`);
    return backend(where, url, weight, priority, region, { weight: String(weight), priority: String(priority) });
  });
}

/** One upstream, checked the same way whichever form it came in; `given` is the text for messages. */
function backend(where: string, url: string, weight: number | undefined, priority: number | undefined, region: string | undefined, given: { weight?: string; priority?: string }): Record<string, unknown> {
  if (!/^https?:\/\/[^\s/|]+/.test(url) || !URL.canParse(url)) throw new PresetEnvError('BACKEND_SERVERS', `${where} does not start with an http(s) URL`);
  const upstream: Record<string, unknown> = { url };
  if (weight !== undefined) {
    if (!Number.isFinite(weight) || weight <= 0) throw new PresetEnvError('BACKEND_SERVERS', `${where}: weight "${given.weight}" is not a number above 0`);
    upstream.weight = weight;
  }
  if (priority !== undefined) {
    if (!Number.isInteger(priority) || priority < 0) throw new PresetEnvError('BACKEND_SERVERS', `${where}: priority "${given.priority}" is not a whole number ≥ 0 (lower is preferred)`);
    upstream.priority = priority;
  }
  if (region) upstream.meta = { region };
  return upstream;
}

const RETRYABLE_METHODS = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'POST', 'PATCH', 'TRACE'];

/**
 * RETRY_METHODS: the methods retried after a failure where the backend may have read the request
 * (a reset, a timeout, a 502/503/504). Unset: the retry plugin's idempotent set. A request that
 * never reached a backend is retried whatever its method either way.
 */
function retryOptions(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const methods = envList(env, 'RETRY_METHODS').map((method) => method.toUpperCase());
  if (envString(env, 'RETRY_METHODS') === undefined) return {};
  if (methods.length === 0) throw new PresetEnvError('RETRY_METHODS', 'lists no method: give a comma-separated list like GET,HEAD,PUT,DELETE,POST');
  const unknown = methods.find((method) => !RETRYABLE_METHODS.includes(method));
  if (unknown !== undefined) throw new PresetEnvError('RETRY_METHODS', `has "${unknown}"; use methods among ${RETRYABLE_METHODS.join(', ')}`);
  return { methods: [...new Set(methods)] };
}

const REPORT_ALGORITHMS = ['latency', 'p2c'];

/**
 * Default `priority`: smooth weighted round robin inside the lowest priority level that has a
 * healthy backend. SpeedMimi's names (least_connections_weight, …) are taken as aliases; the one
 * built on performance reports turns the reports on unless LB_USE_REPORTS says otherwise.
 */
function algorithm(env: NodeJS.ProcessEnv): { algorithm: string; reports: boolean } {
  const raw = envString(env, 'LB_ALGORITHM')?.trim() ?? 'priority';
  const alias = SPEEDMIMI_ALGORITHMS[raw];
  if (alias) return { algorithm: alias.algorithm, reports: alias.reports ?? false };
  if (!(ALGORITHMS as readonly string[]).includes(raw)) {
    throw new PresetEnvError('LB_ALGORITHM', `is "${raw}"; use one of ${ALGORITHMS.join(', ')} (or SpeedMimi's ${Object.keys(SPEEDMIMI_ALGORITHMS).join(', ')})`);
  }
  if (raw === 'header-hash' || raw === 'cookie-hash') throw new PresetEnvError('LB_ALGORITHM', `"${raw}" needs a hash key; use a config file for it`);
  return { algorithm: raw, reports: false };
}

function healthPath(env: NodeJS.ProcessEnv): string {
  const path = envString(env, 'HEALTH_PATH') ?? '/health';
  if (!path.startsWith('/')) throw new PresetEnvError('HEALTH_PATH', `is "${path}", not a path starting with /`);
  return path;
}

/** `/v1/models=300,/usage=60` → { "/v1/models": 300, "/usage": 60 } (seconds, or 5m / 1h). */
function parseCacheTtls(env: NodeJS.ProcessEnv): Record<string, number> {
  const ttls: Record<string, number> = {};
  for (const entry of envList(env, 'CACHE_TTLS')) {
    const eq = entry.lastIndexOf('=');
    const prefix = entry.slice(0, eq).trim();
    const seconds = eq === -1 ? undefined : durationMs(entry.slice(eq + 1).trim(), 's');
    if (!prefix.startsWith('/') || seconds === undefined) throw new PresetEnvError('CACHE_TTLS', `entry "${entry}" is not /path/prefix=seconds (e.g. /v1/models=300)`);
    ttls[prefix] = seconds / 1000;
  }
  return ttls;
}

/**
 * `COUNT/WINDOW` with an optional `;block=DURATION` (or RATE_LIMIT_BLOCK): `100/60s;block=300s`
 * allows 100 requests per client IP per 60 s, and a client over it is refused for 300 s.
 */
function parseRateLimit(env: NodeJS.ProcessEnv): { count: number; window: string; blockDuration: string } | undefined {
  const raw = envString(env, 'RATE_LIMIT');
  const blockVar = envString(env, 'RATE_LIMIT_BLOCK');
  if (raw === undefined) {
    if (blockVar !== undefined) throw new PresetEnvError('RATE_LIMIT_BLOCK', 'is set but RATE_LIMIT is not (e.g. RATE_LIMIT=100/60s)');
    return undefined;
  }
  const m = /^\s*([1-9]\d*)\s*\/\s*(\d+(?:ms|s|m|h|d)?)\s*(?:;\s*block\s*=\s*(\d+(?:ms|s|m|h|d)?)\s*)?$/.exec(raw);
  const window = m && durationMs(m[2]!, 's');
  if (!m || !window) throw new PresetEnvError('RATE_LIMIT', `is "${raw}"; use COUNT/WINDOW[;block=DURATION], e.g. 100/60s;block=300s`);
  if (m[3] !== undefined && blockVar !== undefined) throw new PresetEnvError('RATE_LIMIT_BLOCK', 'is set and RATE_LIMIT has ;block= too: give one of them');
  const blockText = m[3] ?? blockVar;
  const block = blockText === undefined ? 0 : durationMs(blockText, 's');
  if (block === undefined) throw new PresetEnvError(m[3] !== undefined ? 'RATE_LIMIT' : 'RATE_LIMIT_BLOCK', `block duration "${blockText}" is not a duration like 300s or 5m`);
  return { count: Number(m[1]), window: `${window}ms`, blockDuration: `${block}ms` };
}

function envDuration(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = envString(env, name);
  if (raw === undefined) return fallback;
  const ms = durationMs(raw.trim(), 's');
  if (ms === undefined || ms < 10) throw new PresetEnvError(name, `is "${raw}", not a duration like 10s, 500ms or 1m (at least 10ms)`);
  return ms;
}

/** `300`, `300s`, `500ms`, `5m`, `1h`, `1d` → ms; a bare number is in `bareUnit`. */
function durationMs(text: string, bareUnit: 's' | 'ms'): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text);
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? bareUnit]!;
  return Math.round(Number(m[1]) * unit);
}

function envList(env: NodeJS.ProcessEnv, name: string): string[] {
  return (envString(env, name) ?? '').split(',').map((item) => item.trim()).filter(Boolean);
}

function envFlag(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = envString(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'on', 'yes'].includes(raw)) return true;
  if (['0', 'false', 'off', 'no'].includes(raw)) return false;
  throw new PresetEnvError(name, `is "${raw}"; use true or false`);
}
