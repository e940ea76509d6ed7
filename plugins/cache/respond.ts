// Answers the cache gives itself: a stored response replayed (with Age and X-Cache), a 304 when
// the client already holds it, and the 504 of an `only-if-cached` miss.
import type { Reply, RequestContext } from '../../core/index.js';
import { clock } from './clock.js';
import { ageOf, type CachedEntry } from './entry.js';
import { notModified, NOT_MODIFIED_HEADERS } from './policy.js';
import type { RouteStats } from './stats.js';

export function answer(ctx: RequestContext, entry: CachedEntry, xCache: 'HIT' | 'STALE', stats: RouteStats): Reply {
  const age = String(ageOf(entry, clock.now()));
  if (notModified(ctx.req.headers, entry)) {
    stats.notModified++;
    const headers: Record<string, string | string[]> = { age, 'x-cache': xCache };
    for (const name of NOT_MODIFIED_HEADERS) if (entry.headers[name] !== undefined) headers[name] = entry.headers[name]!;
    return { status: 304, headers };
  }
  // 204 and 304 have no body, and so no Content-Length either (RFC 9110 §8.6).
  const noBody = entry.status === 204 || entry.status === 304;
  // Object.assign, not `{ ...entry.headers, age, … }`: V8 gives a spread object with properties
  // added after it a new hidden class every time, which cost twenty times the copy.
  const headers: Record<string, string | string[]> = Object.assign({}, entry.headers);
  headers.age = age;
  headers['x-cache'] = xCache;
  return { status: entry.status, headers, body: noBody ? undefined : entry.body };
}

export function onlyIfCachedMiss(ctx: RequestContext): Reply {
  return { status: 504, json: { error: 'not in the cache, and the request said only-if-cached', code: 'SY_ERR_CACHE_ONLY_IF_CACHED', requestId: ctx.id } };
}
