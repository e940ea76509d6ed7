// Usage counters per mapping and endpoint in hourly buckets (so 24 h, 7 d and 30 d windows are sums)
// plus an all-time total. Requests only add to memory; a periodic sync adds the deltas to the store
// (an atomic increment, see shared-counters.ts) and reads back the sums, which then include what
// every other instance sharing the store added. Nothing on the request path waits for the store.
// Reusable by a metrics exporter.
import type { PluginStore } from '../../core/index.js';
import { sharedCounters, type FieldChange, type SharedCounters } from './shared-counters.js';

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
/** Endpoints per mapping and bucket before the rest is counted under OTHER. */
const MAX_ENDPOINTS = 200;
const OTHER = '(other)';

export function emptyCounters(): Counters {
  return { calls: 0, s2xx: 0, s3xx: 0, s4xx: 0, s5xx: 0, aborted: 0, latencyMsSum: 0, latencyMsMax: 0, firstByteMsSum: 0, inputTokens: 0, outputTokens: 0 };
}

const COUNTER_NAMES = new Set(Object.keys(emptyCounters()));

function addCounters(into: Counters, from: Partial<Counters>): void {
  for (const [key, value] of Object.entries(from) as [keyof Counters, number][]) {
    if (typeof value !== 'number' || !Number.isFinite(value)) continue;
    if (key === 'latencyMsMax') into.latencyMsMax = Math.max(into.latencyMsMax, value);
    else into[key] = (into[key] ?? 0) + value;
  }
}

/** Adds to the endpoint's counters; past MAX_ENDPOINTS endpoints in the mapping, to OTHER's. */
function addToBucket(bucket: Bucket, mapping: string, endpoint: string, delta: Partial<Counters>): void {
  const endpoints = (bucket[mapping] ??= {});
  let counters = endpoints[endpoint];
  if (!counters) {
    if (Object.keys(endpoints).length >= MAX_ENDPOINTS) endpoint = OTHER;
    counters = endpoints[endpoint] ??= emptyCounters();
  }
  addCounters(counters, delta);
}

function mergeBucket(into: Bucket, from: Bucket): void {
  for (const [mapping, endpoints] of Object.entries(from)) {
    for (const [endpoint, counters] of Object.entries(endpoints)) addToBucket(into, mapping, endpoint, counters);
  }
}

function mergeBuckets(into: Map<string, Bucket>, from: Map<string, Bucket>): void {
  for (const [key, delta] of from) {
    let bucket = into.get(key);
    if (!bucket) into.set(key, (bucket = {}));
    mergeBucket(bucket, delta);
  }
}

// In the store a bucket is flat: one field per mapping, endpoint and counter.
const fieldName = (mapping: string, endpoint: string, counter: string) => JSON.stringify([mapping, endpoint, counter]);

function toChange(key: string, bucket: Bucket): FieldChange {
  const change: FieldChange = { key, add: {}, max: {}, ttlMs: key === TOTAL_KEY ? undefined : BUCKET_TTL };
  for (const [mapping, endpoints] of Object.entries(bucket)) {
    for (const [endpoint, counters] of Object.entries(endpoints)) {
      for (const [counter, value] of Object.entries(counters)) {
        if (value === 0) continue;
        // The largest latency is the only figure that is not a sum.
        if (counter === 'latencyMsMax') change.max[fieldName(mapping, endpoint, counter)] = value;
        else change.add[fieldName(mapping, endpoint, counter)] = value;
      }
    }
  }
  return change;
}

function fromFields(fields: Record<string, number>): Bucket {
  const bucket: Bucket = {};
  for (const [field, value] of Object.entries(fields)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(field);
    } catch {
      continue; // not one of ours
    }
    if (!Array.isArray(parsed) || parsed.length !== 3 || !parsed.every((part) => typeof part === 'string')) continue;
    const [mapping, endpoint, counter] = parsed as [string, string, keyof Counters];
    if (!COUNTER_NAMES.has(counter) || !Number.isFinite(value)) continue;
    const counters = ((bucket[mapping] ??= {})[endpoint] ??= emptyCounters());
    counters[counter] = value;
  }
  return bucket;
}

const hourKey = (hour: number) => `h:${hour}`;

export class UsageStats {
  /** The sums in the store as last read back: every instance's flushed counts, by key. */
  private readonly stored = new Map<string, Bucket>();
  /** This process's deltas not written yet, by key. */
  private pending = new Map<string, Bucket>();
  /** Deltas being written: counted here until the read-back that already includes them. */
  private writing = new Map<string, Bucket>();
  /** The hour of the last read of every bucket in the longest window; undefined before the first sync. */
  private fullReadHour: number | undefined;
  private syncing: Promise<void> | undefined;
  private shared: { store: PluginStore; counters: SharedCounters } | undefined;

  /** True once a sync has read the figures from the store. */
  get loaded(): boolean {
    return this.fullReadHour !== undefined;
  }

  /** Adds to the current hour and the total; synchronous and in memory only. */
  record(mapping: string, endpoint: string, delta: Partial<Counters>, at = Date.now()): void {
    for (const key of [hourKey(Math.floor(at / HOUR)), TOTAL_KEY]) {
      let bucket = this.pending.get(key);
      if (!bucket) this.pending.set(key, (bucket = {}));
      const counters = ((bucket[mapping] ??= {})[this.endpointFor(key, mapping, endpoint)] ??= emptyCounters());
      addCounters(counters, delta);
    }
  }

  /**
   * The endpoint to count under: a new one only while the mapping has fewer than MAX_ENDPOINTS in
   * what the store holds and what is on its way there, so the store's buckets stay bounded too
   * (instances adding new endpoints at the same moment may each add a few before they see the others').
   */
  private endpointFor(key: string, mapping: string, endpoint: string): string {
    const sources = [this.pending, this.writing, this.stored].map((buckets) => buckets.get(key)?.[mapping]);
    if (sources.some((endpoints) => endpoints?.[endpoint])) return endpoint;
    const known = new Set(sources.flatMap((endpoints) => Object.keys(endpoints ?? {})));
    return known.size >= MAX_ENDPOINTS ? OTHER : endpoint;
  }

  /**
   * Adds the pending deltas to the store, then reads the sums back: the total, the current and
   * previous hour (another instance may still be flushing the hour that just ended) and whatever
   * was just written; every bucket of the 30-day window on the first sync and once an hour after,
   * which also catches late flushes into older hours. One sync at a time; a failed write keeps the
   * deltas for the next one.
   */
  sync(store: PluginStore, now = Date.now()): Promise<void> {
    const run = async () => {
      const counters = this.countersFor(store);
      if (this.pending.size > 0) {
        this.writing = this.pending;
        this.pending = new Map();
        try {
          await counters.apply([...this.writing].map(([key, bucket]) => toChange(key, bucket)));
        } catch (err) {
          // Nothing was added (the write is all or nothing): the deltas wait for the next sync.
          mergeBuckets(this.pending, this.writing);
          this.writing = new Map();
          throw err;
        }
      }
      try {
        await this.readBack(counters, Math.floor(now / HOUR), [...this.writing.keys()]);
      } catch (err) {
        // The deltas are in the store; until a read succeeds, count them on top of the last one.
        mergeBuckets(this.stored, this.writing);
        throw err;
      } finally {
        this.writing = new Map();
      }
    };
    // A failed sync must not stop the next one from trying.
    const next = (this.syncing ?? Promise.resolve()).catch(() => {}).then(run);
    this.syncing = next;
    return next;
  }

  private async readBack(counters: SharedCounters, hour: number, written: string[]): Promise<void> {
    const full = this.fullReadHour !== hour;
    const keys = new Set([TOTAL_KEY, hourKey(hour), hourKey(hour - 1), ...written]);
    if (full) for (let h = hour - WINDOWS['30d'] + 1; h <= hour; h++) keys.add(hourKey(h));
    const read = await counters.read([...keys]);
    for (const key of keys) {
      const fields = read.get(key);
      if (fields) this.stored.set(key, fromFields(fields));
      else this.stored.delete(key);
    }
    if (full) {
      // Buckets that left the longest window are never read again.
      for (const key of this.stored.keys()) if (!keys.has(key)) this.stored.delete(key);
      this.fullReadHour = hour;
    }
  }

  private countersFor(store: PluginStore): SharedCounters {
    if (this.shared?.store !== store) this.shared = { store, counters: sharedCounters(store, 'usage') };
    return this.shared.counters;
  }

  /** Sums per window: overall, per mapping, per mapping and endpoint. */
  snapshot(now = Date.now()): Record<WindowName, WindowSummary> {
    const current = Math.floor(now / HOUR);
    const read = (key: string): Bucket => {
      const sum: Bucket = {};
      for (const buckets of [this.stored, this.writing, this.pending]) {
        const bucket = buckets.get(key);
        if (bucket) mergeBucket(sum, bucket);
      }
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
