// Preset `confluence`: links to Confluence attachments that work for people without an account;
// the proxy holds the credentials. Composition only: the guard (attachment paths, login-page
// detection, allowlist), credential injection, cache and optional client keys are plugins.
import type { Preset } from '../core/index.js';
import { envInt, envList, envPort, envString, PresetEnvError } from './env.js';

export const confluence: Preset = {
  variables: { store: 'CACHE_DIR' },
  description: 'Confluence attachment proxy holding the credentials: CONFLUENCE_URL, CONFLUENCE_USERNAME + CONFLUENCE_API_TOKEN or CONFLUENCE_PAT, PROXY_PORT (8080), PROXY_BASE_PATH (/proxy)',
  build(env) {
    const clientKeys = envList(env, 'PROXY_API_KEYS');
    return {
      server: {
        port: envPort(env, 'PROXY_PORT', 8080),
        ...(envString(env, 'CACHE_DIR') ? { store: `sqlite://${envString(env, 'CACHE_DIR')!.replace(/\/+$/, '')}/switchyard.sqlite` } : {}),
        admin: { key: envString(env, 'ADMIN_KEY') },
      },
      routes: [{
        name: 'confluence',
        match: { pathPrefix: basePath(env), methods: ['GET', 'HEAD'] },
        stripPrefix: true,
        upstreams: [{ url: confluenceUrl(env), name: 'confluence' }],
        plugins: [
          // Optional client keys (X-API-Key: a request with Authorization is never cached).
          ...(clientKeys.length > 0 ? [{ name: 'api-key', options: { keys: clientKeys.map((key, i) => ({ name: `client-${i + 1}`, key })) } }] : []),
          { name: 'confluence-guard', options: { allowPageIds: envList(env, 'ALLOWED_PAGE_IDS'), allowSpaceKeys: envList(env, 'ALLOWED_SPACE_KEYS') } },
          { name: 'upstream-auth', options: credentials(env) },
          {
            name: 'cache',
            options: {
              // Confluence sends no-cache on its pages: the cache's own TTL decides (forcing mode).
              honourUpstreamCacheControl: false,
              ttl: envInt(env, 'CACHE_TTL', 3600, 1),
              memory: { maxEntries: envInt(env, 'CACHE_MAX_SIZE', 1000, 1) },
              persistent: { enabled: true, maxEntries: envInt(env, 'CACHE_MAX_SIZE', 1000, 1) },
              statuses: [200, 203],
              // The proxy's Authorization is added upstream; a client's own never reaches the key.
              excludeQueryParams: ['api_key', 'os_authType'],
            },
          },
        ],
      }],
    };
  },
};

function confluenceUrl(env: NodeJS.ProcessEnv): string {
  const raw = envString(env, 'CONFLUENCE_URL');
  if (raw === undefined) throw new PresetEnvError('CONFLUENCE_URL', 'is not set: give your Confluence address, e.g. https://example.atlassian.net/wiki');
  if (!/^https?:\/\/[^\s/?#@]+(\/[^\s?#]*)?$/.test(raw.trim())) throw new PresetEnvError('CONFLUENCE_URL', `is "${raw}", not an http(s) URL without credentials, query or fragment`);
  return raw.trim().replace(/\/+$/, '');
}

/** CONFLUENCE_USERNAME + CONFLUENCE_API_TOKEN (Basic), or CONFLUENCE_PAT (Bearer, Data Center). */
function credentials(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const username = envString(env, 'CONFLUENCE_USERNAME');
  const token = envString(env, 'CONFLUENCE_API_TOKEN');
  const pat = envString(env, 'CONFLUENCE_PAT');
  if (pat !== undefined && (username !== undefined || token !== undefined)) {
    throw new PresetEnvError('CONFLUENCE_PAT', 'is set together with CONFLUENCE_USERNAME / CONFLUENCE_API_TOKEN: give one kind of credentials');
  }
  if (pat !== undefined) return { bearer: { token: pat } };
  if (username === undefined && token === undefined) throw new PresetEnvError('CONFLUENCE_API_TOKEN', 'is not set: give CONFLUENCE_USERNAME + CONFLUENCE_API_TOKEN, or CONFLUENCE_PAT');
  if (username === undefined) throw new PresetEnvError('CONFLUENCE_USERNAME', 'is not set: CONFLUENCE_API_TOKEN needs the account it belongs to');
  if (token === undefined) throw new PresetEnvError('CONFLUENCE_API_TOKEN', 'is not set: CONFLUENCE_USERNAME needs its API token');
  return { basic: { username, password: token } };
}

function basePath(env: NodeJS.ProcessEnv): string {
  const raw = envString(env, 'PROXY_BASE_PATH') ?? '/proxy';
  if (!/^\/[A-Za-z0-9._~\-/]*$/.test(raw)) throw new PresetEnvError('PROXY_BASE_PATH', `is "${raw}"; give a path like /proxy`);
  return raw.replace(/\/+$/, '') || '/';
}
