// The cache's counters on the shared Prometheus registry (api.metrics). They are read from the
// per-route stats the cache keeps anyway when /metrics is scraped, so a request pays nothing more.
import type { Registry } from 'prom-client';
import { counter } from '../../core/index.js';
import type { CacheStats, RouteStats, Tier } from './stats.js';

const TIERS: readonly Tier[] = ['memory', 'persistent'];

// The stats objects live in plugin state (one per cache instance, kept across reloads); a Set
// per registry, so re-running setup adds nothing twice.
const sources = new WeakMap<Registry, Set<CacheStats>>();

export function exportCacheMetrics(registry: Registry, stats: CacheStats): void {
  let set = sources.get(registry);
  if (set) {
    set.add(stats);
    return;
  }
  const all = (set = new Set([stats]));
  sources.set(registry, set);
  const routes = function* (): Generator<[string, RouteStats]> {
    for (const source of all) yield* source.routes;
  };
  counter(registry, {
    name: 'switchyard_cache_hits_total', help: 'Requests answered from the cache, by tier (stale and coalesced answers count as memory).', labelNames: ['route', 'tier'],
    collect() {
      this.reset();
      for (const [route, s] of routes()) {
        this.inc({ route, tier: 'memory' }, s.hits.memory + s.stale + s.coalesced);
        this.inc({ route, tier: 'persistent' }, s.hits.persistent);
      }
    },
  });
  counter(registry, {
    name: 'switchyard_cache_misses_total', help: 'Lookups that found nothing fresh (missing or expired), so the upstream was asked.', labelNames: ['route'],
    collect() {
      this.reset();
      for (const [route, s] of routes()) this.inc({ route }, s.misses + s.expired);
    },
  });
  counter(registry, {
    name: 'switchyard_cache_served_bytes_total', help: 'Body bytes answered from the cache, by tier.', labelNames: ['route', 'tier'],
    collect() {
      this.reset();
      for (const [route, s] of routes()) for (const tier of TIERS) this.inc({ route, tier }, s.bytesServed[tier]);
    },
  });
  counter(registry, {
    name: 'switchyard_cache_stored_total', help: 'Responses stored in the cache.', labelNames: ['route'],
    collect() {
      this.reset();
      for (const [route, s] of routes()) this.inc({ route }, s.stored);
    },
  });
}
