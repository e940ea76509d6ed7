// Cache clears other plugins act on: the cache plugin calls these listeners after an admin clear,
// and a plugin that must follow a clear (proxy-chain clearing nested proxies) adds one. One set
// per applied config, met through the cross-plugin shared key below, never by importing a plugin.
import type { IncomingHttpHeaders } from 'node:http';
import type { PluginApi } from './plugin.js';

/** What a clear listener hears: the clear's selector and the request's headers. */
export interface ClearEvent {
  readonly type: 'memory' | 'disk' | 'all';
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
}

/** Returns what it did, reported in the clear's answer under `cascade`. */
export type ClearListener = (event: ClearEvent) => unknown[] | Promise<unknown[]>;

/** The `api.shared` key; use `cacheClearListeners(api)` rather than the key itself. */
export const CACHE_CLEAR_LISTENERS = '@cache.clear-listeners';

/**
 * The listeners of this applied config's cache clears. A listener added in `setup` should be
 * removed by the plugin's dispose.
 *
 * @example const listeners = cacheClearListeners(api); listeners.add(onClear); return () => listeners.delete(onClear);
 */
export function cacheClearListeners(api: PluginApi): Set<ClearListener> {
  return api.shared(CACHE_CLEAR_LISTENERS, () => new Set<ClearListener>());
}
