// The persistent tier: entries in the plugin's keyv store (SQLite or Redis), plus an index of what
// is there (readable key, size, expiry) kept in memory in LRU order and saved under one store key,
// for admin listings, the size bound and the sweep. A store that fails or hangs marks the tier
// unavailable: the cache carries on from memory and tries the store again a moment later.
import { performance } from 'node:perf_hooks';
import type Keyv from 'keyv';
import type { Logger } from 'pino';
import { decodeEntry, encodeEntry, type CachedEntry } from './entry.js';

export interface IndexEntry {
  key: string;
  route: string;
  size: number;
  storedAt: number;
  freshUntil: number;
  keepUntil: number;
}

export interface PersistentBounds {
  maxEntries: number;
  maxBytes: number;
}

const INDEX_KEY = 'index';
const ENTRY_PREFIX = 'e:';
/** After a failure, how long the store is left alone before one call tries it again (ms). */
const RETRY_AFTER = 1000;
/** Index writes are batched: at most one per this interval (ms). */
const INDEX_FLUSH_DELAY = 1000;

const DOWN = Symbol('store down');

const tiers = new WeakMap<Keyv, PersistentTier>();

export class PersistentTier {
  /** Insertion order is LRU order: the first entry is the least recently used. */
  private index = new Map<string, IndexEntry>();
  /** The id last moved to the end of `index`, if nothing was added after it. */
  private mostRecent: string | undefined;
  private indexState: 'unloaded' | 'loading' | 'loaded' = 'unloaded';
  private flushTimer: NodeJS.Timeout | undefined;
  private dirty = false;
  private retryAt = 0;
  /** The first store call, while it runs: the others wait for it (see loadIndex). */
  private opening: Promise<void> | undefined;
  available = true;
  timeoutMs = 1000;
  corrupted = 0;
  failures = 0;

  private constructor(private readonly store: Keyv, private readonly log: Logger) {}

  /** One tier per store, shared by every route the plugin is on and across reloads. */
  static for(store: Keyv, log: Logger): PersistentTier {
    let tier = tiers.get(store);
    if (!tier) {
      tier = new PersistentTier(store, log);
      tiers.set(store, tier);
      void tier.loadIndex();
    }
    return tier;
  }

  async get(id: string): Promise<CachedEntry | undefined> {
    let raw: unknown;
    try {
      raw = await this.call('read', () => this.store.get(ENTRY_PREFIX + id));
    } catch {
      raw = null; // the stored text did not even parse
    }
    if (raw === DOWN) return undefined;
    if (raw === undefined) {
      if (this.index.delete(id)) this.dirty = true;
      return undefined;
    }
    const entry = decodeEntry(id, raw);
    if (!entry) {
      this.corrupted++;
      this.log.warn({ id }, 'a corrupted cache entry was found in the store; it is treated as a miss and removed');
      await this.delete(id);
      return undefined;
    }
    this.touch(id);
    return entry;
  }

  /**
   * Marks an entry as just used (the index is in LRU order). Not a reason to save the index on
   * its own: hits are frequent, and the order is saved with the next change.
   */
  touch(id: string): void {
    // A hot entry hit again and again is already last: no delete and set on every hit.
    if (id === this.mostRecent) return;
    const meta = this.index.get(id);
    if (!meta) return;
    this.index.delete(id);
    this.index.set(id, meta);
    this.mostRecent = id;
  }

  /** Writes an entry, then evicts the route's least recently used entries past its bounds. */
  async set(entry: CachedEntry, bounds: PersistentBounds): Promise<boolean> {
    if (entry.body.length > bounds.maxBytes) return false;
    // The store's own TTL is a backstop for entries the index lost track of; it runs on real time.
    const ttl = Math.max(1000, entry.keepUntil - entry.storedAt) + 60_000;
    const done = await this.call('write', () => this.store.set(ENTRY_PREFIX + entry.id, encodeEntry(entry), ttl));
    if (done === DOWN) return false;
    this.index.delete(entry.id);
    this.mostRecent = entry.id;
    this.index.set(entry.id, {
      key: entry.key, route: entry.route, size: entry.body.length, storedAt: entry.storedAt,
      freshUntil: entry.storedAt + entry.ttl * 1000, keepUntil: entry.keepUntil,
    });
    this.markDirty();
    await this.enforceBounds(entry.route, bounds);
    return true;
  }

  async delete(id: string): Promise<boolean> {
    const known = this.index.delete(id);
    if (known) this.markDirty();
    const done = await this.call('delete', () => this.store.delete(ENTRY_PREFIX + id));
    return known || done === true;
  }

  /** Deletes every indexed entry `matches` selects; returns how many. */
  async deleteWhere(matches: (id: string, meta: IndexEntry) => boolean): Promise<number> {
    const ids = [...this.index].filter(([id, meta]) => matches(id, meta)).map(([id]) => id);
    for (const id of ids) await this.delete(id);
    return ids.length;
  }

  /** Empties the plugin's namespace in the store. */
  async clear(): Promise<number> {
    const count = this.index.size;
    const done = await this.call('clear', () => this.store.clear());
    if (done === DOWN) throw new Error('the persistent store is unavailable');
    this.index.clear();
    this.markDirty();
    return count;
  }

  /** Removes entries past any use; returns how many. */
  sweep(now: number): Promise<number> {
    return this.deleteWhere((_, meta) => meta.keepUntil <= now);
  }

  private async enforceBounds(route: string, bounds: PersistentBounds): Promise<void> {
    let entries = 0;
    let bytes = 0;
    for (const meta of this.index.values()) {
      if (meta.route !== route) continue;
      entries++;
      bytes += meta.size;
    }
    const evict: string[] = [];
    for (const [id, meta] of this.index) {
      if (entries <= bounds.maxEntries && bytes <= bounds.maxBytes) break;
      if (meta.route !== route) continue;
      evict.push(id);
      entries--;
      bytes -= meta.size;
    }
    for (const id of evict) await this.delete(id);
  }

  entries(): IterableIterator<[string, IndexEntry]> {
    return this.index.entries();
  }

  get size(): number {
    return this.index.size;
  }

  get bytes(): number {
    let bytes = 0;
    for (const meta of this.index.values()) bytes += meta.size;
    return bytes;
  }

  /** Saves the index now (at dispose, and batched after changes). */
  async flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (!this.dirty || this.indexState !== 'loaded') return;
    this.dirty = false;
    const done = await this.call('index write', () => this.store.set(INDEX_KEY, { v: 1, entries: [...this.index] }));
    if (done === DOWN) this.dirty = true;
  }

  private markDirty(): void {
    this.dirty = true;
    if (this.flushTimer || this.indexState !== 'loaded') return;
    this.flushTimer = setTimeout(() => void this.flush(), INDEX_FLUSH_DELAY);
    this.flushTimer.unref();
  }

  /**
   * Reads the saved index, merging it under what this process already knows (which is newer). No
   * saved index (first start, or a store that lost it) rebuilds it by reading the entries.
   */
  private async loadIndex(): Promise<void> {
    if (this.indexState !== 'unloaded') return;
    this.indexState = 'loading';
    let saved: unknown;
    const read = this.call('index read', () => this.store.get(INDEX_KEY), false);
    // The first call opens the connection (Redis): calls racing it would each try to connect, and
    // all but one fail. It is the first because `for()` starts it before handing the tier out.
    this.opening ??= read.then(() => {
      this.opening = undefined;
    }, () => {
      this.opening = undefined;
    });
    try {
      saved = await read;
    } catch {
      saved = undefined;
    }
    if (saved === DOWN) {
      this.indexState = 'unloaded';
      return;
    }
    const loaded = new Map<string, IndexEntry>();
    if (isSavedIndex(saved)) {
      for (const [id, meta] of saved.entries) loaded.set(id, meta);
    } else if (saved === undefined && this.store.iterator) {
      try {
        for await (const [key, value] of this.store.iterator(undefined) as AsyncIterable<[string, unknown]>) {
          const at = key.lastIndexOf(ENTRY_PREFIX);
          const entry = at === -1 ? undefined : decodeEntry(key.slice(at + ENTRY_PREFIX.length), value);
          if (entry) loaded.set(entry.id, { key: entry.key, route: entry.route, size: entry.body.length, storedAt: entry.storedAt, freshUntil: entry.storedAt + entry.ttl * 1000, keepUntil: entry.keepUntil });
        }
      } catch (err) {
        this.log.warn({ err }, 'could not rebuild the cache index from the store');
      }
    }
    for (const [id, meta] of this.index) {
      loaded.delete(id);
      loaded.set(id, meta);
    }
    this.index = loaded;
    this.mostRecent = undefined;
    this.indexState = 'loaded';
    if (this.dirty) this.markDirty();
  }

  /**
   * Runs one store call with a time bound. A failure marks the store unavailable (one warning),
   * and calls are skipped until a retry succeeds (one info line). A value that does not parse is
   * the entry's fault, not the store's: that error is rethrown.
   */
  private async call<T>(what: string, op: () => Promise<T>, afterOpening = true): Promise<T | typeof DOWN> {
    if (afterOpening && this.opening) await this.opening;
    if (!this.available) {
      if (performance.now() < this.retryAt) return DOWN;
      this.retryAt = performance.now() + RETRY_AFTER;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        op(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the store did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
        }),
      ]);
      if (!this.available) {
        this.available = true;
        this.log.info('the persistent cache store is reachable again; both tiers are in use');
        void this.loadIndex();
      }
      return result;
    } catch (err) {
      if (err instanceof SyntaxError) throw err;
      this.failures++;
      if (this.available) {
        this.available = false;
        this.log.warn({ err: (err as Error).message, during: what }, 'the persistent cache store failed; serving from memory only until it is back');
      }
      this.retryAt = performance.now() + RETRY_AFTER;
      return DOWN;
    } finally {
      clearTimeout(timer);
    }
  }
}

function isSavedIndex(value: unknown): value is { v: 1; entries: [string, IndexEntry][] } {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { v?: unknown; entries?: unknown };
  return v.v === 1 && Array.isArray(v.entries) && v.entries.every((e) => Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'object' && e[1] !== null
    && typeof (e[1] as IndexEntry).key === 'string' && typeof (e[1] as IndexEntry).size === 'number');
}
