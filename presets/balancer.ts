// Preset `balancer`: a general load-balancing reverse proxy from environment variables (or a YAML
// file with `preset: balancer`): weighted/priority balancing with sticky streams, health checks,
// retries, per-path caching, rate limits, CORS, compression and the Go proxy's admin paths.
// Composition only: every behaviour is a plugin. The variables are documented in presets/balancer.md.
import type { Preset } from '../core/index.js';
import { ALGORITHMS } from '../plugins/balancer/algorithms.js';
import { envPort, envString, PresetEnvError } from './env.js';

export const balancer: Preset = {
  description: 'general load-balancing reverse proxy: BACKEND_SERVERS (url|weight|priority|region), LB_ALGORITHM, HEALTH_PATH, CACHE_TTLS, RATE_LIMIT, CORS_ORIGINS, ADMIN_KEY, PORT (8080)',
  build(env) {
    const cacheTtls = parseCacheTtls(env);
    const cacheBypass = envList(env, 'CACHE_BYPASS');
    for (const prefix of cacheBypass) if (!prefix.startsWith('/')) throw new PresetEnvError('CACHE_BYPASS', `entry "${prefix}" is not a path prefix starting with /`);
    const rateLimit = parseRateLimit(env);
    const corsOrigins = envList(env, 'CORS_ORIGINS');
    const backends = parseBackends(env);
    return {
      server: {
        port: envPort(env, 'PORT', 8080),
        ...(envString(env, 'STORE_URL') ? { store: envString(env, 'STORE_URL') } : {}),
        admin: { key: envString(env, 'ADMIN_KEY') },
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
          options: { ttl: 0, ttlByPath: cacheTtls, bypassPaths: cacheBypass, persistent: { enabled: false } },
        },
        // On the same level as the cache and after it: the cache keeps the identity body, each client gets its encoding.
        { name: 'compression', enabled: envFlag(env, 'COMPRESSION', true), options: { identityUpstream: true } },
        {
          name: 'health-check',
          options: { active: { path: healthPath(env), interval: envDuration(env, 'HEALTH_INTERVAL', 10_000) } },
        },
        // Failover: a connection refused or a 502/503/504 on an idempotent request goes to the next backend.
        { name: 'retry' },
        {
          name: 'balancer',
          options: {
            algorithm: algorithm(env),
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

/** `url|weight|priority|region,…` → upstreams; every part after the URL is optional. */
function parseBackends(env: NodeJS.ProcessEnv): Record<string, unknown>[] {
  const raw = envString(env, 'BACKEND_SERVERS');
  if (!raw) throw new PresetEnvError('BACKEND_SERVERS', 'is not set: give a comma-separated list like http://10.0.0.1:8080|3,http://10.0.0.2:8080|1');
  const entries = raw.split(',').map((entry) => entry.trim()).filter(Boolean);
  if (entries.length === 0) throw new PresetEnvError('BACKEND_SERVERS', 'lists no backend: give a comma-separated list like http://10.0.0.1:8080|3,http://10.0.0.2:8080|1');
  return entries.map((entry) => {
    const [url = '', weight, priority, region, ...extra] = entry.split('|').map((part) => part.trim());
    if (!/^https?:\/\/[^\s/|]+/.test(url) || !URL.canParse(url)) throw new PresetEnvError('BACKEND_SERVERS', `entry "${entry}" does not start with an http(s) URL`);
    if (extra.length > 0) throw new PresetEnvError('BACKEND_SERVERS', `entry "${entry}" has more than url|weight|priority|region`);
    const upstream: Record<string, unknown> = { url };
    if (weight) {
      const value = Number(weight);
      if (!Number.isFinite(value) || value <= 0) throw new PresetEnvError('BACKEND_SERVERS', `entry "${entry}": weight "${weight}" is not a number above 0`);
      upstream.weight = value;
    }
    if (priority) {
      const value = Number(priority);
      if (!Number.isInteger(value) || value < 0) throw new PresetEnvError('BACKEND_SERVERS', `entry "${entry}": priority "${priority}" is not a whole number ≥ 0 (lower is preferred)`);
      upstream.priority = value;
    }
    if (region) upstream.meta = { region };
    return upstream;
  });
}

/** Default `priority`: smooth weighted round robin inside the lowest priority level that has a healthy backend. */
function algorithm(env: NodeJS.ProcessEnv): string {
  const raw = envString(env, 'LB_ALGORITHM') ?? 'priority';
  if (!(ALGORITHMS as readonly string[]).includes(raw)) throw new PresetEnvError('LB_ALGORITHM', `is "${raw}"; use one of ${ALGORITHMS.join(', ')}`);
  if (raw === 'header-hash' || raw === 'cookie-hash') throw new PresetEnvError('LB_ALGORITHM', `"${raw}" needs a hash key; use a config file for it`);
  return raw;
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
