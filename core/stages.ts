// The request pipeline's stages, declared once. Each stage is a tapable hook; the hook type says
// what a tap may do: a *bail* hook lets a tap answer (the first non-undefined result wins), a
// *series* hook lets taps change the context in turn, a *sync* hook is for observers.
import { AsyncSeriesBailHook, AsyncSeriesHook, SyncHook } from 'tapable';
import type { RequestContext } from './context.js';
import type { SwitchyardError } from './errors.js';
import type { Reply, Route, Upstream } from './types.js';

/** What an `error` tap returns to ask the core to try the request again on another upstream. */
export const RETRY = Symbol.for('switchyard.retry');
export type Retry = typeof RETRY;

export interface Stages {
  /** Picks the route for a request. The config's own routes are matched first; a tap may
   *  return a route of its own (for example one read from the store). Global plugins only. */
  route: AsyncSeriesBailHook<[RequestContext], Route | undefined>;
  /** May refuse the request before anything else looks at it (auth, rate limits): return a Reply. */
  access: AsyncSeriesBailHook<[RequestContext], Reply | undefined>;
  /** May answer from a cache: return a Reply and no upstream is asked. */
  cacheLookup: AsyncSeriesBailHook<[RequestContext], Reply | undefined>;
  /** Picks one upstream out of the healthy ones not tried yet (a balancer). Default: the first. */
  selectUpstream: AsyncSeriesBailHook<[RequestContext, readonly Upstream[]], Upstream | undefined>;
  /** May change `ctx.outgoing` (method, path, headers, buffered body) or answer with a Reply. */
  preRequest: AsyncSeriesBailHook<[RequestContext], Reply | undefined>;
  /** Sees the upstream's status and headers in `ctx.response`; may change them and may add
   *  body transforms with `ctx.transformResponseBody()`. */
  postResponse: AsyncSeriesHook<[RequestContext]>;
  /** Runs after the response was sent completely; never holds up the client. */
  cacheStore: AsyncSeriesHook<[RequestContext]>;
  /** A stage or the upstream failed before the response started. Return a Reply to answer,
   *  RETRY to try another upstream (when the request body can be sent again), or nothing. */
  error: AsyncSeriesBailHook<[RequestContext, SwitchyardError], Reply | Retry | undefined>;
  /** The response is over (finished or aborted): timings, status, bytes. For logs and stats. */
  done: SyncHook<[RequestContext]>;
}

export type StageName = keyof Stages;

export const STAGE_NAMES: readonly StageName[] = [
  'route', 'access', 'cacheLookup', 'selectUpstream', 'preRequest', 'postResponse', 'cacheStore', 'error', 'done',
];

/**
 * Named positions inside a stage, for `tap({ name, stage }, fn)`. Taps run by ascending stage,
 * then in the order plugins are declared in the config (global plugins before route plugins).
 */
export const Stage = {
  /** Authentication: nothing else should spend work on a request that will be refused. */
  AUTH: -200,
  /** Rate and concurrency limits: after we know who is asking. */
  LIMIT: -100,
  /** Where a plugin lands when it says nothing. */
  DEFAULT: 0,
  /** Observers that want to see what the others decided. */
  OBSERVE: 100,
} as const;

/** A bit per stage, for the core's test of whether a request has taps to run in a stage. */
export const STAGE_BIT: Readonly<Record<StageName, number>> = {
  route: 1, access: 2, cacheLookup: 4, selectUpstream: 8, preRequest: 16, postResponse: 32, cacheStore: 64, error: 128, done: 256,
};

const kTapMask = Symbol('switchyard.tapMask');
type StagesWithMask = Stages & { [kTapMask]: number };

/**
 * Which stages of the set have taps, as STAGE_BIT bits. Asked several times per request; worked
 * out again only after a tap was added (tapsChanged). A symbol property, so every stage set has
 * the same shape and `Object.keys` still lists only the stages.
 */
export function tapMaskOf(stages: Stages): number {
  const known = (stages as StagesWithMask)[kTapMask];
  if (known >= 0) return known;
  let mask = 0;
  for (const stage of STAGE_NAMES) if (stages[stage].taps.length > 0) mask |= STAGE_BIT[stage];
  (stages as StagesWithMask)[kTapMask] = mask;
  return mask;
}

/** Called whenever a tap is added to the set. */
export function tapsChanged(stages: Stages): void {
  (stages as StagesWithMask)[kTapMask] = -1;
}

export function createStages(): Stages {
  const stages: StagesWithMask = {
    route: new AsyncSeriesBailHook(['ctx'], 'route'),
    access: new AsyncSeriesBailHook(['ctx'], 'access'),
    cacheLookup: new AsyncSeriesBailHook(['ctx'], 'cacheLookup'),
    selectUpstream: new AsyncSeriesBailHook(['ctx', 'candidates'], 'selectUpstream'),
    preRequest: new AsyncSeriesBailHook(['ctx'], 'preRequest'),
    postResponse: new AsyncSeriesHook(['ctx'], 'postResponse'),
    cacheStore: new AsyncSeriesHook(['ctx'], 'cacheStore'),
    error: new AsyncSeriesBailHook(['ctx', 'error'], 'error'),
    done: new SyncHook(['ctx'], 'done'),
    [kTapMask]: -1,
  };
  return stages;
}
