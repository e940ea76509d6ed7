// The request pipeline's stages, declared once. Each stage is a tapable hook, used as an ordered
// registry only: tapable sorts the taps (`stage`, `before`) and names them; the request path runs
// the plan built from them (core/plan.ts) and never calls tapable. The hook type still says what
// a tap may do: a *bail* hook lets a tap answer (the first non-undefined result wins), a *series*
// hook lets taps change the context in turn, a *sync* hook is for observers.
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
  /** May refuse the request before anything else looks at it (auth, rate limits): return a Reply.
   *  Global taps run for requests no route matches too (`ctx.route` is then undefined). */
  access: AsyncSeriesBailHook<[RequestContext], Reply | undefined>;
  /** May answer from a cache: return a Reply and no upstream is asked. */
  cacheLookup: AsyncSeriesBailHook<[RequestContext], Reply | undefined>;
  /** Picks one upstream out of the healthy ones not tried yet (a balancer). Default: the first. */
  selectUpstream: AsyncSeriesBailHook<[RequestContext, readonly Upstream[]], Upstream | undefined>;
  /** May change `ctx.outgoing` (method, path, headers, buffered body) or answer with a Reply. */
  preRequest: AsyncSeriesBailHook<[RequestContext], Reply | undefined>;
  /** Each attempt at an upstream (retries too), just before it is sent: `ctx.upstream` is the
   *  attempt's, `ctx.outgoing` is final. For observers (tracing stamps its trace context on
   *  `ctx.outgoing.headers`); an attempt's end is seen in `error` (failed) or `done` (the last). */
  attempt: SyncHook<[RequestContext]>;
  /** Sees the upstream's status and headers in `ctx.response`; may change them and may add
   *  body transforms with `ctx.transformResponseBody()`. Upstream responses only. */
  postResponse: AsyncSeriesHook<[RequestContext]>;
  /** Every answer passes here just before its head is written: the upstream's response, a
   *  plugin's Reply, a cache hit, an error, an admin answer, a 404. `ctx.response` holds the
   *  status and headers to change; `ctx.transformResponseBody()` wraps the body. */
  beforeSend: AsyncSeriesHook<[RequestContext]>;
  /** Runs after the response was sent completely; never holds up the client. */
  cacheStore: AsyncSeriesHook<[RequestContext]>;
  /** A stage or the upstream failed before the response started. Return a Reply to answer,
   *  RETRY to try another upstream (when the request body can be sent again), or nothing. */
  error: AsyncSeriesBailHook<[RequestContext, SwitchyardError], Reply | Retry | undefined>;
  /** The response is over (finished or aborted): timings, status, bytes. For logs and stats. */
  done: SyncHook<[RequestContext]>;
}

export type StageName = keyof Stages;

/** The stages in the order a request meets them. */
export const STAGE_NAMES: readonly StageName[] = [
  'route', 'access', 'cacheLookup', 'selectUpstream', 'preRequest', 'attempt', 'postResponse', 'beforeSend', 'cacheStore', 'error', 'done',
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

export function createStages(): Stages {
  return {
    route: new AsyncSeriesBailHook(['ctx'], 'route'),
    access: new AsyncSeriesBailHook(['ctx'], 'access'),
    cacheLookup: new AsyncSeriesBailHook(['ctx'], 'cacheLookup'),
    selectUpstream: new AsyncSeriesBailHook(['ctx', 'candidates'], 'selectUpstream'),
    preRequest: new AsyncSeriesBailHook(['ctx'], 'preRequest'),
    attempt: new SyncHook(['ctx'], 'attempt'),
    postResponse: new AsyncSeriesHook(['ctx'], 'postResponse'),
    beforeSend: new AsyncSeriesHook(['ctx'], 'beforeSend'),
    cacheStore: new AsyncSeriesHook(['ctx'], 'cacheStore'),
    error: new AsyncSeriesBailHook(['ctx', 'error'], 'error'),
    done: new SyncHook(['ctx'], 'done'),
  };
}
