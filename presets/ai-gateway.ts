// Preset `ai-gateway`: one address for many AI providers. Live-editable prefix → provider
// mappings, streaming, Gemini NoThink, usage stats with a dashboard, an admin page and a web proxy.
// Composition only: every behaviour is a plugin.
import type { Preset } from '../core/index.js';
import { builtinPlugins } from '../plugins/index.js';
import { parseHostPattern } from '../plugins/web-proxy/guard.js';
import { envPort, envString, PresetEnvError } from './env.js';

/** Edge plugins join the preset once they are in the catalogue (they are built separately). */
const EDGE_PLUGINS = ['cors', 'security-headers'] as const;

export const aiGateway: Preset = {
  variables: { adminKey: 'ADMIN_TOKEN', store: 'STORE_URL' },
  description: 'AI API gateway: live mappings (/openai, /gemini, /claude…), /admin, /stats, /proxy/<url>; PORT (8000), ADMIN_TOKEN, STORE_URL (or API_PROXY_REDIS_URL)',
  build(env) {
    const webProxy = envFlag(env, 'WEB_PROXY', true);
    // Traced once a collector is named the standard way (OTEL_EXPORTER_OTLP_*), or with TRACING=true.
    const tracing = envFlag(env, 'TRACING', envString(env, 'OTEL_EXPORTER_OTLP_ENDPOINT') !== undefined || envString(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') !== undefined);
    const store = storeUrl(env);
    return {
      server: {
        port: envPort(env, 'PORT', 8000),
        ...(store ? { store } : {}),
        admin: { key: envString(env, 'ADMIN_TOKEN') },
        // Long generations: the first byte of a non-streamed answer may take minutes; streams are
        // cut only after a long silence, never for their total length.
        timeouts: { firstByte: 600_000, idle: 300_000 },
        maxBufferedBody: 20 * 1024 * 1024,
      },
      routes: [],
      plugins: [
        // The tracing plugin reads the OTEL_* variables itself; ai-usage adds the gen_ai.* attributes.
        { name: 'tracing', enabled: tracing },
        ...EDGE_PLUGINS.filter((name) => name in builtinPlugins).map((name) => ({ name })),
        // The Go AI proxy kept its table in this hash: imported once when the store is that Redis.
        { name: 'ai-mappings', options: store && /^rediss?:\/\//.test(store) ? { importRedisHash: GO_PROXY_MAPPINGS_HASH } : {} },
        { name: 'gemini-nothink', options: { enabled: envFlag(env, 'GEMINI_NOTHINK', false) } },
        { name: 'ai-usage' },
        {
          name: 'web-proxy',
          enabled: webProxy,
          options: { allowHosts: envHosts(env, 'WEB_PROXY_ALLOW'), denyHosts: envHosts(env, 'WEB_PROXY_DENY') },
        },
      ],
    };
  },
};

const GO_PROXY_MAPPINGS_HASH = 'apiproxy:mappings';

/** STORE_URL, or the Go AI proxy's API_PROXY_REDIS_URL (the same thing under its old name). */
function storeUrl(env: NodeJS.ProcessEnv): string | undefined {
  const store = envString(env, 'STORE_URL');
  const redis = envString(env, 'API_PROXY_REDIS_URL');
  if (redis !== undefined && !/^rediss?:\/\/\S+$/.test(redis)) throw new PresetEnvError('API_PROXY_REDIS_URL', 'is not a redis:// or rediss:// URL (e.g. redis://:password@localhost:6379/0)');
  if (store !== undefined && redis !== undefined && store !== redis) {
    throw new PresetEnvError('API_PROXY_REDIS_URL', 'and STORE_URL are both set and differ; API_PROXY_REDIS_URL is the old name of STORE_URL: give one');
  }
  return store ?? redis;
}

function envFlag(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = envString(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'on', 'yes'].includes(raw)) return true;
  if (['0', 'false', 'off', 'no'].includes(raw)) return false;
  throw new PresetEnvError(name, `is "${raw}"; use true or false`);
}

function envList(env: NodeJS.ProcessEnv, name: string): string[] {
  return (envString(env, name) ?? '').split(',').map((item) => item.trim()).filter(Boolean);
}

/** A comma list of web proxy host entries (`host`, `*.domain`, `host:port`), each checked at start. */
function envHosts(env: NodeJS.ProcessEnv, name: string): string[] {
  const entries = envList(env, name);
  for (const entry of entries) {
    try {
      parseHostPattern(entry, name);
    } catch (err) {
      throw new PresetEnvError(name, `is refused: ${(err as Error).message}`);
    }
  }
  return entries;
}
