// Passing a cache clear on to nested proxies: the same selector, the admin key, a hop counter
// and a clear id, so a loop of proxies (A → B → A) clears each once and stops.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ClearEvent } from '../../core/index.js';

/** An upstream seen answering with the proxy header. */
export interface Nested {
  id: string;
  route: string;
  name: string;
  url: string;
  /** Where its admin routes live (the upstream's origin, without the base path). */
  origin: string;
  kind: string;
  version: string | null;
  firstSeen: string;
  lastChecked: string;
  checkCount: number;
}

export interface CascadeSettings {
  path: string;
  hopHeader: string;
  maxHops: number;
  adminKey?: string;
  timeoutMs: number;
}

/** Today's TMDB proxies send this on the clears they pass on; kept for them. */
const LINKAGE_HEADER = 'x-cache-clear-linkage';
const ID_HEADER = 'x-cache-clear-id';
/** Clear ids remembered, to recognise one coming back around a loop. */
const SEEN_LIMIT = 1000;

export async function cascadeClear(event: ClearEvent, nested: Nested[], seen: Set<string>, settings: CascadeSettings, log: Logger): Promise<unknown[]> {
  if (nested.length === 0) return [];
  const hops = Number.parseInt(first(event.headers[settings.hopHeader.toLowerCase()]) ?? '0', 10) || 0;
  if (hops >= settings.maxHops) return [{ skipped: `hop limit reached (${hops} of ${settings.maxHops})` }];
  const id = first(event.headers[ID_HEADER]) ?? randomUUID();
  if (seen.has(id)) return [{ skipped: 'this clear already passed through here (a loop of proxies)', id }];
  seen.add(id);
  if (seen.size > SEEN_LIMIT) seen.delete(seen.values().next().value!);

  const key = settings.adminKey ?? presentedKey(event.headers);
  const query = new URLSearchParams(event.query);
  // Route names are this proxy's own; the nested proxy clears by type, prefix and key.
  query.delete('route');
  // One clear per proxy, even when several routes (or upstream base paths) lead to it.
  const targets = new Map<string, Nested>();
  for (const n of nested) if (!targets.has(n.origin)) targets.set(n.origin, n);
  return Promise.all([...targets.values()].map(async (target) => {
    const url = `${target.origin}${settings.path}?${query.toString()}`;
    const shown = { upstream: target.name, url: `${target.origin}${settings.path}` };
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          ...(key ? { 'x-api-key': key } : {}),
          [LINKAGE_HEADER]: 'true',
          [settings.hopHeader]: String(hops + 1),
          [ID_HEADER]: id,
        },
        signal: AbortSignal.timeout(settings.timeoutMs),
      });
      const text = await res.text();
      let answer: unknown = text.slice(0, 2000);
      try {
        answer = JSON.parse(text);
      } catch { /* not JSON: keep the start of the text */ }
      if (!res.ok) log.warn({ upstream: target.name, status: res.status }, 'nested proxy refused the cache clear');
      return { ...shown, status: res.status, ok: res.ok, answer };
    } catch (err) {
      log.warn({ upstream: target.name, err: (err as Error).message }, 'nested proxy cache clear failed');
      return { ...shown, ok: false, error: (err as Error).message };
    }
  }));
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The key the clear was made with (X-API-Key or Authorization: Bearer), to pass along. */
function presentedKey(headers: Record<string, string | string[] | undefined>): string | undefined {
  const header = first(headers['x-api-key']);
  if (header) return header;
  const auth = first(headers.authorization);
  return auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length).trim() : undefined;
}
