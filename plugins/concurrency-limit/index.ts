// Caps the requests a route has in flight at once; a few more may wait in a bounded queue, and the
// rest are refused with a 503 so an overloaded upstream is protected instead of buried.
import { definePlugin, Stage, type RequestContext } from '../../core/index.js';

export const name = 'concurrency-limit';

export const schema = {
  type: 'object',
  properties: {
    max: { type: 'integer', minimum: 1, description: 'requests in flight at once, per route' },
    queue: { type: 'integer', minimum: 0, default: 0, description: 'requests that may wait for a slot' },
    queueTimeout: { type: 'integer', minimum: 1, default: 30000, description: 'ms a request may wait before it is refused' },
    rejectedCode: { type: 'integer', minimum: 400, maximum: 599, default: 503 },
    rejectedMsg: { type: 'string', default: 'too many requests in flight' },
  },
  required: ['max'],
  additionalProperties: false,
} as const;

interface Slot {
  /** Granted a slot, which `done` gives back. */
  held: boolean;
  /** Set while waiting in the queue: grants the slot (true) or gives up (false). */
  wake?: (granted: boolean) => void;
}

export const errors = {
  SY_ERR_CONCURRENCY_LIMIT: { status: 503, message: 'too many requests in flight on this route (concurrency-limit plugin)' },
} as const;

export default definePlugin<typeof schema>({
  name,
  schema,
  errors,
  setup(api, options) {
    // Kept in api.state: requests still in flight on the old config give their slots back to the
    // same semaphores after a reload. A global instance keeps one per route.
    const semaphores = api.state(() => new Map<string, Semaphore>());
    const semaphoreFor = (ctx: RequestContext) => {
      const route = ctx.route?.name ?? '';
      let semaphore = semaphores.get(route);
      if (!semaphore) semaphores.set(route, (semaphore = new Semaphore()));
      semaphore.resize(options.max);
      return semaphore;
    };

    api.hooks.access.tapPromise({ name, stage: Stage.LIMIT }, async (ctx) => {
      const semaphore = semaphoreFor(ctx);
      const slot = ctx.scratch<Slot>(name, () => ({ held: false }));
      const granted = semaphore.tryAcquire() || (semaphore.waiting < options.queue && (await semaphore.wait(slot, options.queueTimeout)));
      if (granted) {
        slot.held = true;
        return undefined;
      }
      return ctx.refuse('SY_ERR_CONCURRENCY_LIMIT', { status: options.rejectedCode, message: options.rejectedMsg });
    });

    // `done` runs for every request, answered, failed or aborted: the one place a slot is sure to return.
    api.hooks.done.tap(name, (ctx) => {
      const slot = ctx.scratch<Slot | undefined>(name, () => undefined);
      if (!slot) return;
      const semaphore = semaphoreFor(ctx);
      if (slot.held) {
        slot.held = false;
        semaphore.release();
      } else if (slot.wake) {
        // The client left while queued: leave the queue; the refusal goes to a closed socket.
        semaphore.forget(slot);
        slot.wake(false);
      }
    });
  },
});

/** Counts slots in use and hands freed ones to waiters first come, first served. */
class Semaphore {
  private max = 1;
  private active = 0;
  private readonly queue: Slot[] = [];

  resize(max: number): void {
    if (max === this.max) return;
    this.max = max;
    this.drain();
  }

  get waiting(): number {
    return this.queue.length;
  }

  tryAcquire(): boolean {
    if (this.active >= this.max || this.queue.length > 0) return false;
    this.active++;
    return true;
  }

  wait(slot: Slot, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.forget(slot);
        settle(false);
      }, timeoutMs);
      const settle = (granted: boolean) => {
        clearTimeout(timer);
        slot.wake = undefined;
        slot.held = granted;
        resolve(granted);
      };
      slot.wake = settle;
      this.queue.push(slot);
    });
  }

  release(): void {
    this.active--;
    this.drain();
  }

  forget(slot: Slot): void {
    const index = this.queue.indexOf(slot);
    if (index !== -1) this.queue.splice(index, 1);
  }

  /** Grants freed slots to the oldest waiters (also when `max` grew on a reload). */
  private drain(): void {
    while (this.active < this.max && this.queue.length > 0) {
      this.active++;
      this.queue.shift()!.wake!(true);
    }
  }
}
