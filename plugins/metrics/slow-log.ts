// Where a slow or failed request spent its time. The core stamps routed, upstreamStart, connected,
// firstByte and end on ctx.timings; the slow log adds when cache lookup and upstream selection began (its
// own taps, first in their stages), so each phase is the gap between two stamps.
import type { RequestContext } from '../../core/index.js';

export interface Marks {
  cacheLookup?: number;
  select?: number;
}

export interface Breakdown {
  /** Until the route was chosen. */
  route?: number;
  /** Route chosen → cache lookup began: access taps (auth, limits). */
  access?: number;
  /** Cache lookup → upstream selection (or, for an answer from the cache, → the end). */
  cache?: number;
  /** Selecting the upstream and preRequest taps. */
  select?: number;
  /** Getting a connection to the upstream: a new one's TCP (and TLS) handshake, or waiting for a pooled one. */
  connect?: number;
  /** Request sent → response head: the upstream's work. */
  firstByte?: number;
  /** Response head → last byte out. */
  body?: number;
  total: number;
}

const round = (ms: number | undefined) => (ms === undefined ? undefined : Math.round(ms * 100) / 100);
const gap = (from: number | undefined, to: number | undefined) => (from === undefined || to === undefined ? undefined : round(to - from));

/** The phases in ms (two decimals); a phase the request never reached is left out. */
export function breakdown(ctx: RequestContext, marks: Marks | undefined): Breakdown {
  const t = ctx.timings;
  const end = t.end ?? ctx.elapsed();
  const cacheEnd = marks?.select ?? (ctx.answeredBy === 'cacheLookup' ? end : undefined);
  return {
    route: round(t.routed),
    access: gap(t.routed, marks?.cacheLookup ?? marks?.select ?? t.upstreamStart),
    cache: gap(marks?.cacheLookup, cacheEnd),
    select: gap(marks?.select, t.upstreamStart),
    connect: gap(t.upstreamStart, t.connected),
    firstByte: gap(t.connected ?? t.upstreamStart, t.firstByte),
    body: gap(t.firstByte, end),
    total: round(end)!,
  };
}
