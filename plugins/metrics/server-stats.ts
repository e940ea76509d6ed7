// The figures of GET /stats/server: requests, latency and errors over the last minute in
// one-second slots (a log-scale latency histogram per slot gives the p95), plus memory,
// event-loop lag and open connections read when asked.
import type { Server } from 'node:net';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

const SLOTS = 60;
/** Histogram buckets per doubling: a p95 read from them is within 9% of the true value. */
const PER_OCTAVE = 8;
const SMALLEST_MS = 0.1;
/** 0.1 ms · 2^(200/8) ≈ 55 minutes: anything longer shares the last bucket. */
const BUCKETS = 200;

/** Requests over a sliding minute; kept in plugin state, so a reload does not reset it. */
export class RollingMinute {
  private readonly second = new Float64Array(SLOTS).fill(-1);
  private readonly count = new Uint32Array(SLOTS);
  private readonly errors = new Uint32Array(SLOTS);
  private readonly totalMs = new Float64Array(SLOTS);
  private readonly latency = new Uint32Array(SLOTS * BUCKETS);
  private readonly since = Date.now();

  record(ms: number, error: boolean, now = Date.now()): void {
    const second = Math.floor(now / 1000);
    const slot = second % SLOTS;
    if (this.second[slot] !== second) {
      this.second[slot] = second;
      this.count[slot] = 0;
      this.errors[slot] = 0;
      this.totalMs[slot] = 0;
      this.latency.fill(0, slot * BUCKETS, (slot + 1) * BUCKETS);
    }
    this.count[slot]!++;
    if (error) this.errors[slot]!++;
    this.totalMs[slot]! += ms;
    this.latency[slot * BUCKETS + bucketOf(ms)]!++;
  }

  summary(now = Date.now()): { requests: number; requestsPerSecond: number; avgMs: number; p95Ms: number; errorRate: number } {
    const current = Math.floor(now / 1000);
    let requests = 0;
    let errors = 0;
    let totalMs = 0;
    const merged = new Uint32Array(BUCKETS);
    for (let slot = 0; slot < SLOTS; slot++) {
      if (this.second[slot]! <= current - SLOTS) continue;
      requests += this.count[slot]!;
      errors += this.errors[slot]!;
      totalMs += this.totalMs[slot]!;
      for (let b = 0; b < BUCKETS; b++) merged[b]! += this.latency[slot * BUCKETS + b]!;
    }
    // Until a minute has passed, the rate is over the time there was.
    const seconds = Math.min(SLOTS, Math.max(1, (now - this.since) / 1000));
    return {
      requests,
      requestsPerSecond: round(requests / seconds),
      avgMs: requests === 0 ? 0 : round(totalMs / requests),
      p95Ms: requests === 0 ? 0 : round(percentile(merged, requests, 0.95)),
      errorRate: requests === 0 ? 0 : round(errors / requests, 4),
    };
  }
}

function bucketOf(ms: number): number {
  if (!(ms > SMALLEST_MS)) return 0;
  return Math.min(BUCKETS - 1, Math.ceil(Math.log2(ms / SMALLEST_MS) * PER_OCTAVE));
}

/** The upper bound of the bucket holding the q-th request. */
function percentile(buckets: Uint32Array, total: number, q: number): number {
  const rank = Math.ceil(total * q);
  let seen = 0;
  for (let b = 0; b < BUCKETS; b++) {
    seen += buckets[b]!;
    if (seen >= rank) return SMALLEST_MS * 2 ** (b / PER_OCTAVE);
  }
  return SMALLEST_MS * 2 ** ((BUCKETS - 1) / PER_OCTAVE);
}

function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

// One monitor per process (lag is a property of the process); it measures from first use on.
let lagMonitor: IntervalHistogram | undefined;
let lagSince = 0;
const LAG_WINDOW_MS = 60_000;

/** Event-loop delay since the monitor last started over (at most about a minute ago). */
export function eventLoopLag(now = Date.now()): { meanMs: number; p99Ms: number; maxMs: number } {
  if (!lagMonitor) {
    lagMonitor = monitorEventLoopDelay({ resolution: 10 });
    lagMonitor.enable();
    lagSince = now;
  }
  const ns = (value: number) => (Number.isFinite(value) ? round(value / 1e6) : 0);
  const lag = { meanMs: ns(lagMonitor.mean), p99Ms: ns(lagMonitor.percentile(99)), maxMs: ns(lagMonitor.max) };
  if (now - lagSince >= LAG_WINDOW_MS) {
    lagMonitor.reset();
    lagSince = now;
  }
  return lag;
}

/** Starts the lag monitor, so the first /stats/server already has figures. */
export function startLagMonitor(): void {
  eventLoopLag();
}

export function memoryMB(): { rss: number; heapUsed: number; heapTotal: number; external: number } {
  const mem = process.memoryUsage();
  const mb = (bytes: number) => round(bytes / (1024 * 1024));
  return { rss: mb(mem.rss), heapUsed: mb(mem.heapUsed), heapTotal: mb(mem.heapTotal), external: mb(mem.external) };
}

/** Open client connections of the proxy's server; null until a request told us which server that is. */
export function openConnections(server: Server | undefined): Promise<number | null> {
  if (!server) return Promise.resolve(null);
  return new Promise((resolve) => server.getConnections((err, count) => resolve(err ? null : count)));
}
