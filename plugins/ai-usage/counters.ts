// Usage counters per mapping and endpoint in hourly buckets (so 24 h, 7 d and 30 d windows are sums)
// plus an all-time total. Requests only add to memory; a periodic flush merges the deltas into the
// store, so nothing on the request path waits for a lock or a write. Reusable by a metrics exporter.
import type { PluginStore } from '../../core/index.js';

export interface Counters {
  calls: number;
  s2xx: number;
  s3xx: number;
  s4xx: number;
  s5xx: number;
  /** Requests the client abandoned before the response ended. */
  aborted: number;
  latencyMsSum: number;
  latencyMsMax: number;
  /** Time to the upstream's response head, summed over calls that got one. */
  firstByteMsSum: number;
  inputTokens: number;
  outputTokens: number;
}

/** mapping → endpoint → counters */
export type Bucket = Record<string, Record<string, Counters>>;

export const WINDOWS = { '24h': 24, '7d': 24 * 7, '30d': 24 * 30 } as const;
export type WindowName = keyof typeof WINDOWS | 'total';

const HOUR = 3_600_000;
const TOTAL_KEY = 'total';
/** A bucket outlives the longest window by a day, then the store may drop it. */
const BUCKET_TTL = (WINDOWS['30d'] + 24) * HOUR;
/** Endpoints per mapping and bucket before the rest is counted under "(other)". */
const MAX_ENDPOINTS = 200;

export function emptyCounters(): Counters {
  return { calls: 0, s2xx: 0, s3xx: 0, s4xx: 0, s5xx: 0, aborted: 0, latencyMsSum: 0, latencyMsMax: 0, firstByteMsSum: 0, inputTokens: 0, outputTokens: 0 };
}

function addCounters(into: Counters, from: Partial<Counters>): void {
  for (const [key, value] of Object.entries(from) as [keyof Counters, number][]) {
    if (typeof value !== 'number' || !Number.isFinite(value)) continue;
    if (key === 'latencyMsMax') into.latencyMsMax = Math.max(into.latencyMsMax, value);
    else into[key] = (into[key] ?? 0) + value;
  }
}

function addToBucket(bucket: Bucket, mapping: string, endpoint: string, delta: Partial<Counters>): void {
  const endpoints = (bucket[mapping] ??= {});
  let counters = endpoints[endpoint];
  if (!counters) {
    if (Object.keys(endpoints).length >= MAX_ENDPOINTS) endpoint = '(other)';
    counters = endpoints[endpoint] ??= emptyCounters();
  }
  addCounters(counters, delta);
}

function mergeBucket(into: Bucket, from: Bucket): void {
  for (const [mapping, endpoints] of Object.entries(from)) {
    for (const [endpoint, counters] of Object.entries(endpoints)) addToBucket(into, mapping, endpoint, counters);
  }
}

const hourKey = (hour: number) => `h:${hour}`;

export class UsageStats {
  /** What the store held at the last load or flush, by key. */
  private readonly stored = new Map<string, Bucket>();
  /** Deltas not written yet, by key. */
  private pending = new Map<string, Bucket>();
  private loaded = false;
  private flushing: Promise<void> | undefined;

  /** Adds to the current hour and the total; synchronous and in memory only. */
  record(mapping: string, endpoint: string, delta: Partial<Counters>, at = Date.now()): void {
    for (const key of [hourKey(Math.floor(at / HOUR)), TOTAL_KEY]) {
      let bucket = this.pending.get(key);
      if (!bucket) this.pending.set(key, (bucket = {}));
      addToBucket(bucket, mapping, endpoint, delta);
    }
  }

  /** Reads the last 30 days and the total from the store, once per process. */
  async load(store: PluginStore, now = Date.now()): Promise<void> {
    if (this.loaded) return;
    const current = Math.floor(now / HOUR);
    const keys = [TOTAL_KEY];
    for (let h = current - WINDOWS['30d'] + 1; h <= current; h++) keys.push(hourKey(h));
    const values = await store.getMany<Bucket>(keys);
    keys.forEach((key, i) => {
      const value = values[i];
      if (value && typeof value === 'object') this.stored.set(key, value);
    });
    this.loaded = true;
  }

  /**
   * Merges the pending deltas into the store: read the stored bucket, add, write. Re-reading first
   * keeps what other instances sharing the store wrote. One flush at a time.
   */
  flush(store: PluginStore): Promise<void> {
    this.flushing = (this.flushing ?? Promise.resolve()).then(async () => {
      if (this.pending.size === 0) return;
      const pending = this.pending;
      this.pending = new Map();
      try {
        for (const [key, delta] of pending) {
          const bucket = ((await store.get<Bucket>(key)) ?? {}) as Bucket;
          mergeBucket(bucket, delta);
          await store.set(key, bucket, key === TOTAL_KEY ? undefined : BUCKET_TTL);
          this.stored.set(key, bucket);
        }
      } catch (err) {
        // Nothing is lost: the deltas go back and the next flush tries again.
        for (const [key, delta] of pending) {
          const bucket = this.pending.get(key) ?? {};
          mergeBucket(bucket, delta);
          this.pending.set(key, bucket);
        }
        throw err;
      }
    });
    return this.flushing;
  }

  /** Sums per window: overall, per mapping, per mapping and endpoint. */
  snapshot(now = Date.now()): Record<WindowName, WindowSummary> {
    const current = Math.floor(now / HOUR);
    const read = (key: string): Bucket => {
      const sum: Bucket = {};
      const stored = this.stored.get(key);
      if (stored) mergeBucket(sum, stored);
      const pending = this.pending.get(key);
      if (pending) mergeBucket(sum, pending);
      return sum;
    };
    const result = {} as Record<WindowName, WindowSummary>;
    for (const [name, hours] of Object.entries(WINDOWS) as [keyof typeof WINDOWS, number][]) {
      const sum: Bucket = {};
      for (let h = current - hours + 1; h <= current; h++) mergeBucket(sum, read(hourKey(h)));
      result[name] = summarize(sum);
    }
    result.total = summarize(read(TOTAL_KEY));
    return result;
  }
}

export interface Summary extends Counters {
  latencyMsAvg: number;
}

export interface WindowSummary extends Summary {
  mappings: Record<string, Summary & { endpoints: Record<string, Summary> }>;
}

function withAverage(counters: Counters): Summary {
  return { ...counters, latencyMsAvg: counters.calls ? Math.round((counters.latencyMsSum / counters.calls) * 10) / 10 : 0 };
}

function summarize(bucket: Bucket): WindowSummary {
  const overall = emptyCounters();
  const mappings: WindowSummary['mappings'] = {};
  for (const [mapping, endpoints] of Object.entries(bucket)) {
    const perMapping = emptyCounters();
    const perEndpoint: Record<string, Summary> = {};
    for (const [endpoint, counters] of Object.entries(endpoints)) {
      addCounters(perMapping, counters);
      perEndpoint[endpoint] = withAverage(counters);
    }
    addCounters(overall, perMapping);
    mappings[mapping] = { ...withAverage(perMapping), endpoints: perEndpoint };
  }
  return { ...withAverage(overall), mappings };
}
