// The in-memory tier: an LRU bounded by entry count and by bytes (lru-cache). Expiry is ours, not
// lru-cache's, because an expired entry may still be served stale; the sweep drops dead ones.
import { LRUCache } from 'lru-cache';
import { entrySize, type CachedEntry } from './entry.js';

export interface MemoryBounds {
  maxEntries: number;
  maxBytes: number;
}

export class MemoryTier {
  private lru: LRUCache<string, CachedEntry>;
  private bounds: MemoryBounds;

  constructor(bounds: MemoryBounds) {
    this.bounds = bounds;
    this.lru = MemoryTier.create(bounds);
  }

  private static create(bounds: MemoryBounds): LRUCache<string, CachedEntry> {
    return new LRUCache<string, CachedEntry>({
      max: bounds.maxEntries,
      maxSize: bounds.maxBytes,
      // An entry larger than the whole tier is simply not kept.
      maxEntrySize: bounds.maxBytes,
      sizeCalculation: (entry) => Math.max(1, entrySize(entry)),
    });
  }

  /** A reload may change the bounds: the entries move to a cache of the new size, most recent last. */
  resize(bounds: MemoryBounds): void {
    if (bounds.maxEntries === this.bounds.maxEntries && bounds.maxBytes === this.bounds.maxBytes) return;
    const next = MemoryTier.create(bounds);
    for (const [id, entry] of [...this.lru.entries()].reverse()) next.set(id, entry);
    this.lru = next;
    this.bounds = bounds;
  }

  get(id: string): CachedEntry | undefined {
    return this.lru.get(id);
  }

  set(entry: CachedEntry): void {
    this.lru.set(entry.id, entry);
  }

  delete(id: string): boolean {
    return this.lru.delete(id);
  }

  clear(): number {
    const count = this.lru.size;
    this.lru.clear();
    return count;
  }

  /** Drops every entry `matches` selects; returns how many. */
  deleteWhere(matches: (entry: CachedEntry) => boolean): number {
    const doomed = [...this.lru.values()].filter(matches);
    for (const entry of doomed) this.lru.delete(entry.id);
    return doomed.length;
  }

  /** Removes entries past any use (fresh or stale); returns how many. */
  sweep(now: number): number {
    return this.deleteWhere((entry) => entry.keepUntil <= now);
  }

  entries(): IterableIterator<CachedEntry> {
    return this.lru.values();
  }

  get size(): number {
    return this.lru.size;
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }

  get limits(): MemoryBounds {
    return this.bounds;
  }
}
