// Counters per route and per tier: hits, misses, what was served from where, and why responses
// were not stored. They live in plugin state, so a config reload keeps counting.

export type Tier = 'memory' | 'persistent';

export class RouteStats {
  readonly hits: Record<Tier, number> = { memory: 0, persistent: 0 };
  readonly bytesServed: Record<Tier, number> = { memory: 0, persistent: 0 };
  misses = 0;
  /** Found but expired, so the upstream was asked (X-Cache: EXPIRED). */
  expired = 0;
  /** Served stale (while revalidating, or because the upstream failed). */
  stale = 0;
  /** Answered from another request's upstream response (coalescing). */
  coalesced = 0;
  /** Expired entries the upstream confirmed with a 304 to a conditional request (X-Cache: REVALIDATED). */
  revalidated = 0;
  notModified = 0;
  bypassed = 0;
  stored = 0;
  /** Responses refused because their content type is not allowed (an HTML error page, say). */
  validationFailures = 0;
  /** Responses refused for any other reason (status, Cache-Control, Set-Cookie, size). */
  uncacheable = 0;

  hit(tier: Tier, bytes: number): void {
    this.hits[tier]++;
    this.bytesServed[tier] += bytes;
  }

  toJSON(): Record<string, unknown> {
    const hits = this.hits.memory + this.hits.persistent + this.stale + this.coalesced;
    const lookups = hits + this.misses + this.expired;
    return {
      hits: { ...this.hits, stale: this.stale, coalesced: this.coalesced, total: hits },
      misses: this.misses,
      expired: this.expired,
      revalidated: this.revalidated,
      hitRatio: lookups === 0 ? 0 : Math.round((hits / lookups) * 10000) / 10000,
      bytesServed: { ...this.bytesServed },
      notModified: this.notModified,
      bypassed: this.bypassed,
      stored: this.stored,
      validationFailures: this.validationFailures,
      uncacheable: this.uncacheable,
    };
  }
}

export class CacheStats {
  readonly routes = new Map<string, RouteStats>();

  route(name: string): RouteStats {
    let stats = this.routes.get(name);
    if (!stats) {
      stats = new RouteStats();
      this.routes.set(name, stats);
    }
    return stats;
  }
}

/** Adds up several routes' counters. */
export function totalOf(all: Iterable<RouteStats>): RouteStats {
  const total = new RouteStats();
  for (const s of all) {
    for (const tier of ['memory', 'persistent'] as const) {
      total.hits[tier] += s.hits[tier];
      total.bytesServed[tier] += s.bytesServed[tier];
    }
    total.misses += s.misses;
    total.expired += s.expired;
    total.stale += s.stale;
    total.coalesced += s.coalesced;
    total.revalidated += s.revalidated;
    total.notModified += s.notModified;
    total.bypassed += s.bypassed;
    total.stored += s.stored;
    total.validationFailures += s.validationFailures;
    total.uncacheable += s.uncacheable;
  }
  return total;
}
