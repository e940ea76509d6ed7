// Preset `ai-gateway`: one address for many AI providers. Live-editable prefix → provider
// mappings, streaming, Gemini NoThink, usage stats with a dashboard, an admin page and a web proxy.
// Composition only: every behaviour is a plugin.
import type { Preset } from '../core/index.js';
import { builtinPlugins } from '../plugins/index.js';
import { envPort, envString, PresetEnvError } from './env.js';

/** Edge plugins join the preset once they are in the catalogue (they are built separately). */
const EDGE_PLUGINS = ['cors', 'security-headers'] as const;

export const aiGateway: Preset = {
  description: 'AI API gateway: live mappings (/openai, /gemini, /claude…), /admin, /stats, /proxy/<url>; PORT (8000), ADMIN_TOKEN',
  build(env) {
    const webProxy = envFlag(env, 'WEB_PROXY', true);
    return {
      server: {
        port: envPort(env, 'PORT', 8000),
        ...(envString(env, 'STORE_URL') ? { store: envString(env, 'STORE_URL') } : {}),
        admin: { key: envString(env, 'ADMIN_TOKEN') },
        // Long generations: the first byte of a non-streamed answer may take minutes; streams are
        // cut only after a long silence, never for their total length.
        timeouts: { firstByte: 600_000, idle: 300_000 },
        maxBufferedBody: 20 * 1024 * 1024,
      },
      routes: [],
      plugins: [
        ...EDGE_PLUGINS.filter((name) => name in builtinPlugins).map((name) => ({ name })),
        { name: 'ai-mappings' },
        { name: 'gemini-nothink', options: { enabled: envFlag(env, 'GEMINI_NOTHINK', false) } },
        { name: 'ai-usage' },
        {
          name: 'web-proxy',
          enabled: webProxy,
          options: { allowHosts: envList(env, 'WEB_PROXY_ALLOW'), denyHosts: envList(env, 'WEB_PROXY_DENY') },
        },
      ],
    };
  },
};

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
