// Circuit breaking: an upstream that fails too often is cut off for a cool-down, then gets a few
// trial requests, and takes full traffic again only once they succeed.
import { definePlugin, observeAttempts, type RequestContext, type Upstream } from '../../core/index.js';

const NAME = 'circuit-breaker';

const schema = {
  type: 'object',
  properties: {
    failureRatio: { type: 'number', exclusiveMinimum: 0, maximum: 1, default: 0.5, description: 'Failed share of requests in the window that opens the breaker.' },
    minimumRequests: { type: 'integer', minimum: 1, default: 20, description: 'Requests in the window before the ratio counts.' },
    window: { type: 'integer', minimum: 10, default: 10000 },
    coolDown: { type: 'integer', minimum: 1, default: 30000, description: 'How long an open breaker stays open before trial requests.' },
    halfOpenRequests: { type: 'integer', minimum: 1, default: 3, description: 'Trial requests that must succeed to close it again.' },
    statuses: { type: 'array', items: { type: 'integer', minimum: 500, maximum: 599 }, uniqueItems: true, default: [500, 502, 503, 504] },
  },
  additionalProperties: false,
} as const;

type State = 'closed' | 'open' | 'half-open';

const BUCKETS = 10;

/** One upstream's breaker; kept in api.state, so a reload neither closes nor resets it. */
interface Breaker {
  upstream: Upstream;
  route: string;
  state: State;
  /** Closed: outcomes over the window, in buckets. */
  slots: number[];
  ok: number[];
  failed: number[];
  openedAt: number;
  reason: string | undefined;
  /** Half-open: trial requests sent and succeeded. */
  trialsSent: number;
  trialsPassed: number;
  timesOpened: number;
}

/** Before any preRequest tap that may answer, so every trial sent is counted. */
const OBSERVE_FIRST = -1000;


export default definePlugin({
  name: NAME,
  schema,
  setup(api, options) {
    const breakers = api.state(() => new Map<string, Breaker>(), 'breakers');
    // An open breaker marks its upstream unhealthy: that is what makes every balancer skip it.
    const timers = new Set<NodeJS.Timeout>();
    let stopped = false;
    const later = (ms: number, fn: () => void) => {
      if (stopped) return;
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!stopped) fn();
      }, ms);
      timer.unref();
      timers.add(timer);
    };

    const breakerOf = (upstream: Upstream, route: string): Breaker => {
      let breaker = breakers.get(upstream.id);
      if (!breaker) {
        breaker = { upstream, route, state: 'closed', slots: Array(BUCKETS).fill(-1), ok: Array(BUCKETS).fill(0), failed: Array(BUCKETS).fill(0), openedAt: 0, reason: undefined, trialsSent: 0, trialsPassed: 0, timesOpened: 0 };
        breakers.set(upstream.id, breaker);
      }
      breaker.upstream = upstream;
      return breaker;
    };

    const open = (breaker: Breaker, reason: string) => {
      breaker.state = 'open';
      breaker.openedAt = Date.now();
      breaker.reason = reason;
      breaker.timesOpened++;
      breaker.slots.fill(-1);
      api.log.warn({ upstream: breaker.upstream.name, route: breaker.route, reason, coolDown: options.coolDown }, 'circuit opened');
      api.health.set(breaker.upstream, false, `circuit open: ${reason}`);
      later(options.coolDown, () => halfOpen(breaker));
    };
    const halfOpen = (breaker: Breaker) => {
      if (breaker.state !== 'open') return;
      breaker.state = 'half-open';
      breaker.trialsSent = 0;
      breaker.trialsPassed = 0;
      api.log.info({ upstream: breaker.upstream.name, route: breaker.route }, 'circuit half-open: sending trial requests');
      api.health.set(breaker.upstream, true);
    };
    const close = (breaker: Breaker) => {
      breaker.state = 'closed';
      breaker.reason = undefined;
      breaker.slots.fill(-1);
      api.log.info({ upstream: breaker.upstream.name, route: breaker.route }, 'circuit closed');
      api.health.set(breaker.upstream, true);
    };

    const outcome = (ctx: RequestContext, ok: boolean) => {
      const breaker = breakerOf(ctx.upstream!, ctx.route!.name);
      if (breaker.state === 'half-open') {
        if (!ok) return open(breaker, 'a trial request failed');
        breaker.trialsPassed++;
        if (breaker.trialsPassed >= options.halfOpenRequests) close(breaker);
        return;
      }
      // Late answers to requests sent before the breaker opened change nothing.
      if (breaker.state === 'open') return;
      const { total, failed } = count(breaker, ok, options.window);
      if (total >= options.minimumRequests && failed / total >= options.failureRatio) {
        open(breaker, `${failed} of ${total} requests failed within ${options.window} ms`);
      }
    };

    // A reload keeps open breakers open; their cool-down is still running.
    for (const breaker of breakers.values()) {
      if (breaker.state === 'open') later(Math.max(0, breaker.openedAt + options.coolDown - Date.now()), () => halfOpen(breaker));
    }

    const trial = (ctx: RequestContext) => ctx.scratch(NAME, () => ({ trial: false }));

    // Half-open lets `halfOpenRequests` trials through, then holds the upstream until they answer.
    api.hooks.preRequest.tap({ name: NAME, stage: OBSERVE_FIRST }, (ctx) => {
      const breaker = ctx.upstream && breakers.get(ctx.upstream.id);
      if (breaker?.state !== 'half-open') return undefined;
      trial(ctx).trial = true;
      if (++breaker.trialsSent >= options.halfOpenRequests) api.health.set(breaker.upstream, false, 'circuit half-open: waiting for the trial requests');
      return undefined;
    });
    observeAttempts(api, { failureStatuses: options.statuses }, (ctx, result) => {
      if (result !== 'inconclusive') return outcome(ctx, result === 'success');
      // A trial whose client went away proves nothing: let another one through.
      const breaker = breakers.get(ctx.upstream!.id);
      if (trial(ctx).trial && breaker?.state === 'half-open' && --breaker.trialsSent < options.halfOpenRequests) api.health.set(breaker.upstream, true);
    });

    // One /circuit-breakers route lists the breakers of every instance of this config.
    const lists = api.shared('lists', () => {
      const all = new Set<() => Breaker[]>();
      api.admin({
        method: 'GET',
        path: '/circuit-breakers',
        public: true,
        handler: () => ({ status: 200, json: { breakers: [...all].flatMap((list) => list()).map(describe) } }),
      });
      return all;
    });
    lists.add(() => [...breakers.values()]);

    return () => {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    };
  },
});

/** Adds one outcome to the window and returns the window's totals. */
function count(breaker: Breaker, ok: boolean, window: number): { total: number; failed: number } {
  const slot = Math.floor(Date.now() / (window / BUCKETS));
  const i = slot % BUCKETS;
  if (breaker.slots[i] !== slot) {
    breaker.slots[i] = slot;
    breaker.ok[i] = 0;
    breaker.failed[i] = 0;
  }
  if (ok) breaker.ok[i]!++;
  else breaker.failed[i]!++;
  let total = 0;
  let failed = 0;
  for (let b = 0; b < BUCKETS; b++) {
    if (breaker.slots[b]! > slot - BUCKETS) {
      total += breaker.ok[b]! + breaker.failed[b]!;
      failed += breaker.failed[b]!;
    }
  }
  return { total, failed };
}

function describe(breaker: Breaker): Record<string, unknown> {
  return {
    route: breaker.route,
    id: breaker.upstream.id,
    name: breaker.upstream.name,
    state: breaker.state,
    reason: breaker.reason ?? null,
    openedAt: breaker.openedAt || null,
    timesOpened: breaker.timesOpened,
    trials: breaker.state === 'half-open' ? { sent: breaker.trialsSent, passed: breaker.trialsPassed } : null,
  };
}
