// The built-in plugins by config name. Each is imported only when a config names it.
import type { PluginCatalog } from '../core/index.js';

export const builtinPlugins: PluginCatalog = {
  balancer: async () => (await import('./balancer/index.js')).default,
  cache: async () => (await import('./cache/index.js')).default,
  'health-check': async () => (await import('./health-check/index.js')).default,
  retry: async () => (await import('./retry/index.js')).default,
  'circuit-breaker': async () => (await import('./circuit-breaker/index.js')).default,
};
