// Warm-up: the configured paths fetched through the proxy into the cache, at start and on demand
// (POST /cache/warm). At start the proxy's address is known from the config, unless the port is
// chosen at start (0): then the first request that arrives shows it.
import type { PluginApi } from '../../core/index.js';
import type { WarmResult } from './admin.js';
import { selfRequest, type ProxyAddress } from './self-request.js';

export interface WarmUp {
  /** Fetches every path now; `fallback` is used when the proxy's address is not known. */
  warm(fallback?: ProxyAddress): Promise<WarmResult[]>;
  /** Called on each request: starts the deferred warm-up the first time. */
  onRequest(): void;
  dispose(): void;
}

export function createWarmUp(api: PluginApi, paths: readonly string[], address: () => ProxyAddress | undefined): WarmUp {
  let pending = paths.length > 0;
  let timer: NodeJS.Timeout | undefined;
  let disposed = false;

  async function warm(fallback?: ProxyAddress): Promise<WarmResult[]> {
    pending = false;
    const target = address() ?? fallback;
    const results: WarmResult[] = [];
    for (const path of paths) {
      if (!target) {
        results.push({ path, error: 'the proxy address is not known yet' });
        continue;
      }
      try {
        results.push({ path, status: await selfRequest(target, path) });
      } catch (err) {
        results.push({ path, error: (err as Error).message });
      }
    }
    return results;
  }

  // Setup runs before the server listens: a refused connection at start is retried a few times.
  async function warmWhenListening(): Promise<void> {
    for (let attempt = 0; attempt < 20 && !disposed; attempt++) {
      const results = await warm();
      if (!results.some((r) => r.error?.includes('ECONNREFUSED'))) {
        if (results.some((r) => r.error || (r.status ?? 0) >= 400)) api.log.warn({ results }, 'cache warm-up did not fetch every path');
        return;
      }
      await new Promise((resolve) => {
        timer = setTimeout(resolve, 250);
      });
    }
    if (!disposed) api.log.warn('cache warm-up gave up: the proxy did not accept connections');
  }

  if (pending && address()) {
    pending = false;
    timer = setTimeout(() => void warmWhenListening(), 0);
  }

  return {
    warm,
    onRequest() {
      if (!pending) return;
      pending = false;
      void warm().then((results) => {
        if (results.some((r) => r.error || (r.status ?? 0) >= 400)) api.log.warn({ results }, 'cache warm-up did not fetch every path');
      });
    },
    dispose() {
      disposed = true;
      clearTimeout(timer);
    },
  };
}
