// The built-in plugins by config name. Each is imported only when a config names it.
import type { PluginCatalog } from '../core/index.js';

export const builtinPlugins: PluginCatalog = {
  cache: async () => (await import('./cache/index.js')).default,
};
