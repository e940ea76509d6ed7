// What the operator console (core/console.ts) shows that nothing else keeps: the last access log
// lines, a rolling 15-minute series of requests, status classes and latency, per-upstream counts,
// the process's memory and event-loop delay (while a console is open), and the last reloads.
//
// `record()` runs once per finished request whether or not a console is open, so it does a fixed
// amount of work into preallocated typed arrays: no allocation, no loop over anything that grows
// (bench/callgrind: see docs/console.md for the figure). Everything else (percentiles, the
// series, filtering the ring) is computed when a console asks.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { AccessLine } from './access-log.js';
import type { RequestContext, Timings } from './context.js';
import type { ReloadStatus } from './pipeline.js';

/** Seconds per slot of the series, and slots kept: 90 × 10 s = the last 15 minutes. */
export const SLOT_SECONDS = 10;
export const SLOTS = 90;
/** Access log lines kept for the console's Recent requests. */
export const RING_SIZE = 500;
/** Reloads kept for the Overview. */
const RELOADS_KEPT = 10;
/** Per upstream, latency is kept over two windows of this length (the current and the last). */
const UPSTREAM_WINDOW_MS = 60_000;

/**
 * Latency buckets: four per power of two of microseconds (so a percentile is within 19 % of the
 * true value), found with one clz32 instead of a search over bounds.
 */
const BUCKETS = 128;

/** performance.timeOrigin is a getter into the runtime; it never changes within a process. */
const TIME_ORIGIN = performance.timeOrigin;

export function bucketOf(ms: number): number {
  const us = ms > 0 ? Math.min(ms * 1000, 0x7fffffff) | 0 : 0;
  if (us < 8) return us;
  const top = 31 - Math.clz32(us);
  return top * 4 + ((us >>> (top - 2)) & 3) - 4;
}

/** The upper bound (ms) of a bucket: what a percentile falling in it reports. */
export function bucketLimit(bucket: number): number {
  if (bucket < 8) return (bucket + 1) / 1000;
  const top = (bucket + 4) >> 2;
  const sub = (bucket + 4) & 3;
  return ((4 + sub + 1) * 2 ** (top - 2)) / 1000;
}

/** p50/p95/p99 (ms) of one or more bucket arrays (added together); null with no samples. */
export function percentiles(...histograms: Uint32Array[]): { p50: number | null; p95: number | null; p99: number | null } {
  let total = 0;
  for (const h of histograms) for (let i = 0; i < BUCKETS; i++) total += h[i]!;
  if (total === 0) return { p50: null, p95: null, p99: null };
  const at = (q: number) => {
    const rank = Math.ceil(q * total);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      for (const h of histograms) seen += h[i]!;
      if (seen >= rank) return round(bucketLimit(i));
    }
    return round(bucketLimit(BUCKETS - 1));
  };
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

/** One point of the series: a slot's requests, status classes and latency, and the process then. */
export interface SeriesPoint {
  /** Epoch ms the slot starts at. */
  at: number;
  requests: number;
  /** Requests by status class; `other` holds 1xx and aborted (499) ones. */
  status: { '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  latencyMs: { p50: number | null; p95: number | null; p99: number | null };
  /** Sampled at the end of the slot (null until then, or for slots before the process started). */
  inFlight: number | null;
  rssBytes: number | null;
  heapUsedBytes: number | null;
  eventLoopDelayMs: { p99: number; max: number } | null;
}

/** A line of the ring as the console shows it: the access log line, its sequence number and timings. */
export interface RecentRequest extends AccessLine {
  seq: number;
  /** Epoch ms the request finished. */
  at: number;
  /** ms since arrival: routed, upstreamStart, connected, firstByte, end. */
  timings: Timings;
}

export interface UpstreamTallyView {
  requests: number;
  failures: number;
  /** Over the last one to two minutes. */
  latencyMs: { p50: number | null; p95: number | null; p99: number | null };
}

class UpstreamTally {
  requests = 0;
  failures = 0;
  current = new Uint32Array(BUCKETS);
  previous = new Uint32Array(BUCKETS);
  windowStart = 0;

  add(bucket: number, failed: boolean, now: number): void {
    this.requests++;
    if (failed) this.failures++;
    if (now - this.windowStart >= UPSTREAM_WINDOW_MS) this.turn(now);
    this.current[bucket]!++;
  }

  turn(now: number): void {
    // Two windows ago or more: nothing recent to keep.
    const previous = now - this.windowStart >= 2 * UPSTREAM_WINDOW_MS ? this.current.fill(0) : this.current;
    this.current = this.previous.fill(0);
    this.previous = previous;
    this.windowStart = now;
  }

  view(now: number): UpstreamTallyView {
    if (now - this.windowStart >= UPSTREAM_WINDOW_MS) this.turn(now);
    return { requests: this.requests, failures: this.failures, latencyMs: percentiles(this.current, this.previous) };
  }
}

/** How often an open console's stream hears from the recorder (its heartbeat too). */
export const TICK_MS = 2000;

/** A subscriber (a console's event stream): `tick` every TICK_MS, `end` when it must close (a reload, a stop). */
export type ConsoleListener = (event: 'tick' | 'end') => void;

export class ConsoleRecorder {
  // The series: slot i of the ring holds the 10 s starting at slotStart[i] (0: unused).
  private readonly slotStart = new Float64Array(SLOTS);
  private readonly counts = new Uint32Array(SLOTS * 5);
  private readonly latency = new Uint32Array(SLOTS * BUCKETS);
  private readonly gauges = new Float64Array(SLOTS * 5).fill(Number.NaN);
  private currentSlot = -1;
  // The ring of lines.
  private readonly lines: (AccessLine | undefined)[] = new Array(RING_SIZE).fill(undefined);
  private readonly lineTimings: (Timings | undefined)[] = new Array(RING_SIZE).fill(undefined);
  private readonly lineAt = new Float64Array(RING_SIZE);
  /** Sequence number of the next line; line n sits at n % RING_SIZE. */
  private nextSeq = 1;
  private readonly upstreams = new Map<string, UpstreamTally>();
  private readonly reloadHistory: ReloadStatus[] = [];
  private readonly eventLoop: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 });
  private sampler: NodeJS.Timeout | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<ConsoleListener>();

  /** Starts the 10 s sampling of memory, event-loop delay and `inFlight()`; an unref'd timer. */
  start(inFlight: () => number, firstReload: ReloadStatus): void {
    this.reloadHistory.push(firstReload);
    const sample = () => this.sample(inFlight());
    this.sampler = setInterval(sample, SLOT_SECONDS * 1000).unref();
  }

  close(): void {
    clearInterval(this.sampler);
    this.endStreams();
  }

  /** Ends every open console stream (they reconnect, on the config serving then). */
  endStreams(): void {
    for (const listener of [...this.listeners]) listener('end');
    this.listeners.clear();
    this.stopTicking();
  }

  private stopTicking(): void {
    clearInterval(this.ticker);
    this.ticker = undefined;
    this.eventLoop.disable();
    this.eventLoop.reset();
  }

  /**
   * One finished request. `line` is the access log line when the log wrote one (the ring keeps only
   * those, so it holds exactly what the log shows, with the same redaction).
   */
  record(ctx: RequestContext, status: number, line: AccessLine | undefined): void {
    const ms = ctx.timings.end ?? 0;
    // The request's own clock instead of a call into the runtime: see clock().
    const now = TIME_ORIGIN + ctx.startedAt + ms;
    const slot = Math.floor(now / (SLOT_SECONDS * 1000));
    if (slot > this.currentSlot) this.roll(slot);
    const at = slot % SLOTS;
    const cls = status >= 200 && status < 600 ? ((status / 100) | 0) - 1 : 0;
    this.counts[at * 5]!++;
    // Index 1..4: 2xx..5xx; 1xx falls in index 0 with the total only.
    if (cls > 0) this.counts[at * 5 + cls]!++;
    const bucket = bucketOf(ms);
    this.latency[at * BUCKETS + bucket]!++;
    const upstream = ctx.upstream;
    if (upstream !== undefined) {
      let tally = this.upstreams.get(upstream.id);
      if (tally === undefined) this.upstreams.set(upstream.id, (tally = new UpstreamTally()));
      tally.add(bucket, status >= 500, now);
    }
    if (line !== undefined) {
      const pos = this.nextSeq++ % RING_SIZE;
      this.lines[pos] = line;
      this.lineTimings[pos] = ctx.timings;
      this.lineAt[pos] = now;
    }
  }

  /** A reload was tried; an applied one ends the open streams, which hold the old config in use. */
  noteReload(status: ReloadStatus): void {
    this.reloadHistory.unshift(status);
    if (this.reloadHistory.length > RELOADS_KEPT) this.reloadHistory.length = RELOADS_KEPT;
    if (status.ok) this.endStreams();
  }

  /** The last reloads, newest first (the start counts as the first). */
  reloads(): readonly ReloadStatus[] {
    return this.reloadHistory;
  }

  /** The sequence number of the newest line (0: none yet). */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** Lines after `afterSeq` still in the ring, oldest first. */
  recent(afterSeq = 0): RecentRequest[] {
    const from = Math.max(afterSeq + 1, this.nextSeq - RING_SIZE, 1);
    const out: RecentRequest[] = [];
    for (let seq = from; seq < this.nextSeq; seq++) {
      const pos = seq % RING_SIZE;
      out.push({ ...this.lines[pos]!, seq, at: this.lineAt[pos]!, timings: { ...this.lineTimings[pos] } });
    }
    return out;
  }

  /** Counts and latency of `upstreamId`'s requests, or undefined before its first. */
  upstream(upstreamId: string, now = clock()): UpstreamTallyView | undefined {
    return this.upstreams.get(upstreamId)?.view(now);
  }

  /** The last 15 minutes, oldest first, one point per 10 s slot (slots with no data included). */
  series(now = clock()): SeriesPoint[] {
    const slot = Math.floor(now / (SLOT_SECONDS * 1000));
    if (slot > this.currentSlot) this.roll(slot);
    const points: SeriesPoint[] = [];
    for (let s = slot - SLOTS + 1; s <= slot; s++) {
      const at = ((s % SLOTS) + SLOTS) % SLOTS;
      const start = s * SLOT_SECONDS * 1000;
      const live = this.slotStart[at] === start;
      const c = (i: number) => (live ? this.counts[at * 5 + i]! : 0);
      const g = (i: number) => {
        const value = live ? this.gauges[at * 5 + i]! : Number.NaN;
        return Number.isNaN(value) ? null : value;
      };
      const eld = g(3);
      points.push({
        at: start,
        requests: c(0),
        status: { '2xx': c(1), '3xx': c(2), '4xx': c(3), '5xx': c(4) },
        latencyMs: live ? percentiles(this.latency.subarray(at * BUCKETS, (at + 1) * BUCKETS)) : { p50: null, p95: null, p99: null },
        inFlight: g(0),
        rssBytes: g(1),
        heapUsedBytes: g(2),
        eventLoopDelayMs: eld === null ? null : { p99: eld, max: g(4)! },
      });
    }
    return points;
  }

  /** Memory and event-loop delay now (the delay since the last sample). */
  process(): { rssBytes: number; heapUsedBytes: number; eventLoopDelayMs: { p99: number; max: number } } {
    const memory = process.memoryUsage();
    return { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, eventLoopDelayMs: this.delay() };
  }

  /** A console's event stream subscribes while it is open; the sampler and lines call nothing otherwise. */
  subscribe(listener: ConsoleListener): () => void {
    this.listeners.add(listener);
    // The delay monitor's 20 ms timer wakes the process 50 times a second: only for a watcher.
    if (this.ticker === undefined) this.eventLoop.enable();
    this.ticker ??= setInterval(() => {
      for (const each of [...this.listeners]) each('tick');
    }, TICK_MS).unref();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size > 0) return;
      this.stopTicking();
    };
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  private sample(inFlight: number): void {
    const slot = Math.floor(clock() / (SLOT_SECONDS * 1000));
    if (slot > this.currentSlot) this.roll(slot);
    // The sample closes the slot it falls in: it describes the 10 s that just passed.
    const at = slot % SLOTS;
    const memory = process.memoryUsage();
    // The delay is only measured while a console is open (see subscribe()).
    const delay = this.ticker === undefined ? { p99: Number.NaN, max: Number.NaN } : this.delay();
    this.eventLoop.reset();
    this.gauges.set([inFlight, memory.rss, memory.heapUsed, delay.p99, delay.max], at * 5);
  }

  private delay(): { p99: number; max: number } {
    // The histogram is in ns; with no sample yet its max reads 0.
    const p99 = this.eventLoop.count > 0 ? this.eventLoop.percentile(99) : 0;
    return { p99: round(p99 / 1e6), max: round((this.eventLoop.count > 0 ? this.eventLoop.max : 0) / 1e6) };
  }

  /**
   * Moves forward to `slot`, emptying the slots skipped since the last request. Never backwards: a
   * request that ended just before a newer slot began still counts in its own one.
   */
  private roll(slot: number): void {
    // The first request's slot is the first one used: slots before the start stay unused.
    const gap = this.currentSlot < 0 ? 1 : Math.min(slot - this.currentSlot, SLOTS);
    for (let i = 1; i <= gap; i++) {
      const s = this.currentSlot < 0 ? slot : slot - gap + i;
      const at = ((s % SLOTS) + SLOTS) % SLOTS;
      this.slotStart[at] = s * SLOT_SECONDS * 1000;
      this.counts.fill(0, at * 5, at * 5 + 5);
      this.latency.fill(0, at * BUCKETS, (at + 1) * BUCKETS);
      this.gauges.fill(Number.NaN, at * 5, at * 5 + 5);
    }
    this.currentSlot = slot;
  }
}

/**
 * Epoch ms on the monotonic clock that timestamps requests (ctx.startedAt). Every slot is placed
 * by it, so a wall clock stepped by NTP cannot move the series backwards and clear slots; the
 * cost is that after weeks up the times shown may drift a few seconds from the wall clock.
 */
function clock(): number {
  return TIME_ORIGIN + performance.now();
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
