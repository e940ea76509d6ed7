// The built-in plugins by config name. Each is imported only when a config names it.
import type { PluginCatalog } from '../core/index.js';

export const builtinPlugins: PluginCatalog = {
  'ai-mappings': async () => (await import('./ai-mappings/index.js')).default,
  'gemini-nothink': async () => (await import('./gemini-nothink/index.js')).default,
  'ai-usage': async () => (await import('./ai-usage/index.js')).default,
  'web-proxy': async () => (await import('./web-proxy/index.js')).default,
  'api-key': async () => (await import('./api-key/index.js')).default,
  'basic-auth': async () => (await import('./basic-auth/index.js')).default,
  'upstream-auth': async () => (await import('./upstream-auth/index.js')).default,
  'rate-limit': async () => (await import('./rate-limit/index.js')).default,
  'concurrency-limit': async () => (await import('./concurrency-limit/index.js')).default,
  cors: async () => (await import('./cors/index.js')).default,
  'security-headers': async () => (await import('./security-headers/index.js')).default,
  headers: async () => (await import('./headers/index.js')).default,
  balancer: async () => (await import('./balancer/index.js')).default,
  cache: async () => (await import('./cache/index.js')).default,
  'health-check': async () => (await import('./health-check/index.js')).default,
  retry: async () => (await import('./retry/index.js')).default,
  'circuit-breaker': async () => (await import('./circuit-breaker/index.js')).default,
  metrics: async () => (await import('./metrics/index.js')).default,
  compression: async () => (await import('./compression/index.js')).default,
  'tmdb-key': async () => (await import('./tmdb-key/index.js')).default,
  'proxy-chain': async () => (await import('./proxy-chain/index.js')).default,
  'proxy-stats': async () => (await import('./proxy-stats/index.js')).default,
  'admin-aliases': async () => (await import('./admin-aliases/index.js')).default,
  'confluence-guard': async () => (await import('./confluence-guard/index.js')).default,
};
