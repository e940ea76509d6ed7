// This process's load over the last minute, for the `performance` block of /stats: requests per
// second, average latency and error rate from one-second slots, and the process's memory. Unlike
// the usage windows these are not shared through the store: they describe the instance answering.

const SLOTS = 60;
const SLOT_MS = 1000;

export interface Performance {
  /** Requests finished per second, averaged over the last minute (or since start, if shorter). */
  requestsPerSecond: number;
  averageLatencyMs: number;
  /** Share of the last minute's requests answered 5xx or abandoned mid-response, in percent. */
  errorRatePercent: number;
  /** Resident set size of this process. */
  memoryMB: number;
  heapUsedMB: number;
  windowSeconds: number;
}

export class RecentLoad {
  private readonly slotOf = new Float64Array(SLOTS).fill(-1);
  private readonly requests = new Float64Array(SLOTS);
  private readonly errors = new Float64Array(SLOTS);
  private readonly latencyMs = new Float64Array(SLOTS);
  private readonly startedAt = Date.now();

  record(latencyMs: number, failed: boolean, now = Date.now()): void {
    const slot = Math.floor(now / SLOT_MS);
    const i = slot % SLOTS;
    if (this.slotOf[i] !== slot) {
      this.slotOf[i] = slot;
      this.requests[i] = 0;
      this.errors[i] = 0;
      this.latencyMs[i] = 0;
    }
    this.requests[i]!++;
    if (failed) this.errors[i]!++;
    this.latencyMs[i]! += latencyMs;
  }

  snapshot(now = Date.now()): Performance {
    const current = Math.floor(now / SLOT_MS);
    let requests = 0;
    let errors = 0;
    let latency = 0;
    for (let i = 0; i < SLOTS; i++) {
      if (this.slotOf[i]! <= current - SLOTS) continue;
      requests += this.requests[i]!;
      errors += this.errors[i]!;
      latency += this.latencyMs[i]!;
    }
    // A process up for 10 s has 10 s of figures: dividing by 60 would understate its rate.
    const windowSeconds = Math.max(1, Math.min(SLOTS, Math.ceil((now - this.startedAt) / SLOT_MS)));
    const memory = process.memoryUsage();
    return {
      requestsPerSecond: round(requests / windowSeconds),
      averageLatencyMs: requests === 0 ? 0 : round(latency / requests),
      errorRatePercent: requests === 0 ? 0 : round((errors / requests) * 100),
      memoryMB: round(memory.rss / 1048576),
      heapUsedMB: round(memory.heapUsed / 1048576),
      windowSeconds,
    };
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
