// The rate limiter itself, free of HTTP: N hits per window per key, fixed or sliding window, with
// stacked limits and blocking. Counters and the clock are injected, so tests can step time.

/** Where hit counts live: in this process (MemoryCounters) or in a shared store (counters.ts). */
export interface Counters {
  /** Adds one to `key` and returns the new count; a new (or expired) key starts at 0 and lives `ttlMs`. */
  increment(key: string, ttlMs: number): Promise<number>;
  /** The value of `key`; 0 when absent or expired. */
  get(key: string): Promise<number>;
  /** Sets `key` to `value` for `ttlMs`. */
  set(key: string, value: number, ttlMs: number): Promise<void>;
}

export interface Limit {
  /** Hits allowed per window. */
  readonly count: number;
  readonly windowMs: number;
  /** Once over the limit, refuse the key for this long (0: only until the window allows again). */
  readonly blockMs: number;
}

export type Algorithm = 'fixed' | 'sliding';

export interface Decision {
  readonly allowed: boolean;
  /** The limit closest to being exhausted: what X-RateLimit-* report. */
  readonly limit: number;
  readonly remaining: number;
  /** Milliseconds until that limit has room again. */
  readonly resetMs: number;
  /** Set when refused: milliseconds until a request may succeed. */
  readonly retryAfterMs?: number;
}

export interface LimiterOptions {
  readonly limits: readonly Limit[];
  readonly algorithm: Algorithm;
  readonly counters: Counters;
  /** Prefix for every counter key, so limiters sharing a store don't collide. */
  readonly prefix: string;
  readonly now?: () => number;
}

/** One limit's verdict for one hit. */
interface Outcome {
  readonly limit: Limit;
  readonly allowed: boolean;
  readonly remaining: number;
  readonly resetMs: number;
}

export class RateLimiter {
  private readonly now: () => number;
  private readonly blocks: boolean;

  constructor(private readonly options: LimiterOptions) {
    this.now = options.now ?? Date.now;
    this.blocks = options.limits.some((limit) => limit.blockMs > 0);
  }

  /**
   * Counts one hit for `key` against every limit and says whether it may pass. Refused hits count
   * too (a client hammering the limit stays limited); a store failure throws.
   */
  async hit(key: string): Promise<Decision> {
    const now = this.now();
    const { counters, prefix } = this.options;
    const blockKey = `${prefix}block:${key}`;
    if (this.blocks) {
      const until = await counters.get(blockKey);
      if (until > now) {
        const first = this.options.limits[0]!;
        return { allowed: false, limit: first.count, remaining: 0, resetMs: until - now, retryAfterMs: until - now };
      }
    }
    const outcomes = await Promise.all(this.options.limits.map((limit) => this.count(limit, key, now)));
    const refused = outcomes.filter((o) => !o.allowed);
    const tightest = outcomes.reduce((a, b) => (b.remaining < a.remaining || (b.remaining === a.remaining && b.resetMs > a.resetMs) ? b : a));
    if (refused.length === 0) {
      return { allowed: true, limit: tightest.limit.count, remaining: tightest.remaining, resetMs: tightest.resetMs };
    }
    let retryAfterMs = Math.max(...refused.map((o) => o.resetMs));
    const blockMs = Math.max(...refused.map((o) => o.limit.blockMs));
    if (blockMs > 0) {
      await counters.set(blockKey, now + blockMs, blockMs);
      retryAfterMs = Math.max(retryAfterMs, blockMs);
    }
    return { allowed: false, limit: tightest.limit.count, remaining: 0, resetMs: retryAfterMs, retryAfterMs };
  }

  private async count(limit: Limit, key: string, now: number): Promise<Outcome> {
    const { counters, prefix, algorithm } = this.options;
    const { count: max, windowMs } = limit;
    const index = Math.floor(now / windowMs);
    const start = index * windowMs;
    const base = `${prefix}${windowMs}:${key}:`;
    if (algorithm === 'fixed') {
      const hits = await counters.increment(base + index, windowMs);
      return { limit, allowed: hits <= max, remaining: Math.max(0, max - hits), resetMs: start + windowMs - now };
    }
    // Sliding window counter (as in Cloudflare's and nginx's limiters): the previous window's
    // count, weighted by how much of it the sliding window still covers, plus the current count.
    // Two counters per key instead of a log of timestamps, and it works on any shared store.
    const [current, previous] = await Promise.all([
      counters.increment(base + index, 2 * windowMs),
      counters.get(base + (index - 1)),
    ]);
    const covered = (start + windowMs - now) / windowMs;
    const used = previous * covered + current;
    const allowed = used <= max;
    const resetMs = allowed ? start + windowMs - now : slidingRetryAt(max, current, previous, start, windowMs, now) - now;
    return { limit, allowed, remaining: Math.max(0, Math.floor(max - used)), resetMs };
  }
}

/** When the next hit would fit under `max` again, given the counts so far (epoch ms). */
function slidingRetryAt(max: number, current: number, previous: number, start: number, windowMs: number, now: number): number {
  // Still in this window: the previous window's weight falls linearly to 0 at start + windowMs.
  if (current + 1 <= max && previous > 0) {
    const at = start + windowMs - (windowMs * (max - current - 1)) / previous;
    return Math.max(now, Math.ceil(at));
  }
  // In the next window this window's count is the one fading out; the new hit counts as 1.
  if (current === 0 || max <= 1) return start + 2 * windowMs;
  return Math.max(now, Math.ceil(start + 2 * windowMs - (windowMs * (max - 1)) / current));
}

/** Counters in this process; expired keys are swept now and then, so memory follows the traffic. */
export class MemoryCounters implements Counters {
  private readonly entries = new Map<string, { value: number; expiresAt: number }>();
  private nextSweep = 0;

  constructor(private readonly now: () => number = Date.now) {}

  increment(key: string, ttlMs: number): Promise<number> {
    const now = this.now();
    this.sweep(now);
    let entry = this.entries.get(key);
    if (!entry || entry.expiresAt <= now) {
      entry = { value: 0, expiresAt: now + ttlMs };
      this.entries.set(key, entry);
    }
    entry.value++;
    return Promise.resolve(entry.value);
  }

  get(key: string): Promise<number> {
    const entry = this.entries.get(key);
    return Promise.resolve(entry && entry.expiresAt > this.now() ? entry.value : 0);
  }

  set(key: string, value: number, ttlMs: number): Promise<void> {
    this.entries.set(key, { value, expiresAt: this.now() + ttlMs });
    return Promise.resolve();
  }

  /** How many keys are held (for tests of the sweep). */
  get size(): number {
    return this.entries.size;
  }

  private sweep(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + 10_000;
    for (const [key, entry] of this.entries) if (entry.expiresAt <= now) this.entries.delete(key);
  }
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `1500`, `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"` → milliseconds. */
export function parseDuration(value: number | string): number {
  if (typeof value === 'number') return value;
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(value);
  if (!match) throw new Error(`"${value}" is not a duration (e.g. 500ms, 10s, 5m, 1h, 1d)`);
  return Number(match[1]) * UNITS[match[2]!]!;
}
