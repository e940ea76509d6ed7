// Answers the cache gives itself: a stored response replayed (with Age and X-Cache), a 304 when
// the client already holds it, a part of it for a Range request, and the 504 of an
// `only-if-cached` miss.
import type { PreparedHead, Reply, RequestContext } from '../../core/index.js';
import { clock } from './clock.js';
import { ageOf, type CachedEntry } from './entry.js';
import { notModified, NOT_MODIFIED_HEADERS } from './policy.js';
import { byteRange, ifRangeHolds, multipartByteranges } from './range.js';
import type { RouteStats } from './stats.js';

export function answer(ctx: RequestContext, entry: CachedEntry, xCache: 'HIT' | 'STALE', stats: RouteStats): Reply {
  const age = ageOf(entry, clock.now());
  if (notModified(ctx.req.headers, entry)) {
    stats.notModified++;
    const headers: Record<string, string | string[]> = { age: String(age), 'x-cache': xCache };
    if (entry.dated !== undefined) headers.date = entry.headers.date!;
    for (const name of NOT_MODIFIED_HEADERS) if (entry.headers[name] !== undefined) headers[name] = entry.headers[name]!;
    return { status: 304, headers };
  }
  const head = answerHead(entry, age, xCache);
  if (ctx.req.headers.range !== undefined && entry.status === 200 && ctx.req.method === 'GET') {
    const partial = partialAnswer(ctx, entry, head);
    if (partial !== undefined) return partial;
  }
  // 204 and 304 have no body, and so no Content-Length either (RFC 9110 §8.6).
  const noBody = entry.status === 204 || entry.status === 304;
  return { status: entry.status, head, body: noBody ? undefined : entry.body };
}

/** A Range request's answer from the stored body: 206 or 416, or undefined for the whole body. */
function partialAnswer(ctx: RequestContext, entry: CachedEntry, head: PreparedHead): Reply | undefined {
  if (!ifRangeHolds(ctx.req.headers['if-range'], entry)) return undefined;
  const size = entry.body.length;
  const range = byteRange(ctx.req.headers.range!, size);
  if (range === undefined) return undefined;
  const headers: Record<string, string> = {};
  if (range === 'unsatisfiable') {
    if (entry.dated !== undefined) headers.date = entry.headers.date as string;
    headers['content-range'] = `bytes */${size}`;
    return { status: 416, headers, body: '' };
  }
  if (range.length === 1) {
    const { start, end } = range[0]!;
    headers['content-range'] = `bytes ${start}-${end}/${size}`;
    return { status: 206, head, headers, body: entry.body.subarray(start, end + 1) };
  }
  const type = entry.headers['content-type'];
  const multipart = multipartByteranges(entry.body, range, typeof type === 'string' ? type : undefined);
  headers['content-type'] = multipart.contentType;
  return { status: 206, head, headers, body: multipart.body };
}

/** The entry's prepared head with Age and X-Cache: made once a second or so, not per hit. */
function answerHead(entry: CachedEntry, age: number, xCache: string): PreparedHead {
  const last = entry.lastAnswer;
  if (last !== undefined && last.age === age && last.xCache === xCache) return last.head;
  const head = entry.head.with({ age: String(age), 'x-cache': xCache });
  entry.lastAnswer = { age, xCache, head };
  return head;
}

