// Warm-up: the configured paths fetched through the proxy into the cache, at start and on demand
// (POST /cache/warm). The requests run in-process (api.inject); at start they wait until the
// proxy serves (an in-process request answers SY_ERR_NOT_READY before that), or until the first
// request arrives, whichever comes first.
import type { PluginApi } from '../../core/index.js';
import type { WarmResult } from './admin.js';
import { selfRequest } from './self-request.js';

export interface WarmUp {
  /** Fetches every path now. */
  warm(): Promise<WarmResult[]>;
  /** Called on each request: starts the deferred warm-up the first time. */
  onRequest(): void;
  dispose(): void;
}

/** How long a warm-up at start waits for the proxy to serve, in tries of STARTING_RETRY_MS. */
const STARTING_TRIES = 40;
const STARTING_RETRY_MS = 250;
/** What an in-process request answers while the proxy is still starting (core/server.ts). */
const NOT_READY = 503;

export function createWarmUp(api: PluginApi, paths: readonly string[], host: string): WarmUp {
  let pending = paths.length > 0;
  let timer: NodeJS.Timeout | undefined;
  let disposed = false;

  async function warm(): Promise<WarmResult[]> {
    pending = false;
    const results: WarmResult[] = [];
    for (const path of paths) {
      try {
        results.push({ path, status: await selfRequest(api, path, { host }) });
      } catch (err) {
        results.push({ path, error: (err as Error).message });
      }
    }
    return results;
  }

  const report = (results: WarmResult[]) => {
    if (results.some((r) => r.error || (r.status ?? 0) >= 400)) api.log.warn({ results }, 'cache warm-up did not fetch every path');
  };

  // Setup runs before the server serves: a not-ready answer at start is retried a few times.
  async function warmWhenServing(): Promise<void> {
    for (let attempt = 0; attempt < STARTING_TRIES && !disposed; attempt++) {
      const results = await warm();
      if (!results.some((r) => r.status === NOT_READY)) return report(results);
      await new Promise((resolve) => {
        timer = setTimeout(resolve, STARTING_RETRY_MS);
      });
    }
    if (!disposed) api.log.warn('cache warm-up gave up: the proxy did not start serving');
  }

  if (pending) timer = setTimeout(() => void warmWhenServing(), 0);

  return {
    warm,
    onRequest() {
      if (!pending) return;
      pending = false;
      void warm().then(report);
    },
    dispose() {
      disposed = true;
      clearTimeout(timer);
    },
  };
}
