// Request coalescing: while one request for a key is at the upstream, the others for the same key
// wait for its response (up to a bound) instead of sending their own.
import type { CachedEntry } from './entry.js';

export interface Flight {
  readonly promise: Promise<CachedEntry | undefined>;
  /** Ends the flight: with the entry it produced, or undefined (not cacheable, failed). */
  settle(entry?: CachedEntry): void;
}

export class Flights {
  private readonly inflight = new Map<string, Flight>();
  /** Requests waiting on another's flight right now (shown by /cache/info). */
  waiting = 0;

  get(id: string): Flight | undefined {
    return this.inflight.get(id);
  }

  /** Registers the caller as the one request that goes to the upstream for `id`. */
  start(id: string): Flight {
    let resolve!: (entry: CachedEntry | undefined) => void;
    const promise = new Promise<CachedEntry | undefined>((r) => {
      resolve = r;
    });
    let settled = false;
    const flight: Flight = {
      promise,
      settle: (entry) => {
        if (settled) return;
        settled = true;
        if (this.inflight.get(id) === flight) this.inflight.delete(id);
        resolve(entry);
      },
    };
    this.inflight.set(id, flight);
    return flight;
  }

  /** Waits for a flight's entry; undefined when it produced none or took longer than `ms`. */
  async wait(flight: Flight, ms: number): Promise<CachedEntry | undefined> {
    this.waiting++;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        flight.promise,
        new Promise<undefined>((resolve) => {
          timer = setTimeout(resolve, ms, undefined);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.waiting--;
    }
  }
}
