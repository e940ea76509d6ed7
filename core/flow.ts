// One request through the stages, in lifecycle order (README, "The stages"):
//   route → access → cacheLookup → selectUpstream → preRequest → forward → postResponse
//   → beforeSend → (response sent) → cacheStore, with `error` on failures and `done` at the end.
// A request no route matches runs the global `access`, `beforeSend` and `done` around its 404.
// Each step asks its plan (core/plan.ts) whether the stage has taps; a step whose taps all
// answered at once goes on synchronously, so a cache hit costs no promise at all.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AccessLine } from './access-log.js';
import { RequestContext, type OutgoingRequest } from './context.js';
import type { ForwardEngine, UpstreamResponse } from './engine.js';
import { SwitchyardError } from './errors.js';
import { forwardableHeaders, setForwardedHeaders } from './headers.js';
import type { Pipeline, Runtime } from './pipeline.js';
import { runBail, runSeries, then, type Plan } from './plan.js';
import { redactString } from './config/load.js';
import { refusedRequestHead } from './request-head.js';
import { requestIdOf } from './request-id.js';
import { stripPathPrefix } from './router.js';
import { answerError, sendReply, sendUpstream } from './send.js';
import { RETRY } from './stages.js';
import type { Reply, Route, Upstream } from './types.js';

export function handleRequest(pipeline: Pipeline, rt: Runtime, req: IncomingMessage, res: ServerResponse, injected = false): void {
  const refused = refusedRequestHead(req);
  const ctx = new RequestContext(req, res, requestIdOf(req), pipeline.contextSettings);
  ctx.injected = injected;
  pipeline.acquire();
  // The socket, not req.socket: Node detaches it from the request once a response closes it.
  const socket = req.socket;
  const bytesBefore = socket.bytesWritten;
  // `on`, not `once`: a response closes once, and once() adds a bound wrapper that removes itself.
  res.on('close', () => finish(pipeline, rt, ctx, socket.bytesWritten - bytesBefore));
  if (refused !== undefined) {
    answerError(ctx, pipeline.plan, refused);
    return;
  }
  const { maxBodySize } = pipeline.contextSettings;
  if (maxBodySize > 0 && Number(req.headers['content-length'] ?? 0) > maxBodySize) {
    answerError(ctx, pipeline.plan, new SwitchyardError('SY_ERR_BODY_TOO_LARGE', undefined, { details: { limit: maxBodySize } }));
    return;
  }
  let running: Promise<void> | void;
  try {
    running = ctx.hasBody && req.headers['transfer-encoding'] !== undefined ? runOnceParsed(pipeline, rt, ctx) : run(pipeline, rt, ctx);
  } catch (err) {
    answerError(ctx, planOf(pipeline, ctx), err);
    return;
  }
  running?.catch((err: unknown) => answerError(ctx, planOf(pipeline, ctx), err));
}

/**
 * A chunked body's first chunks often come in the same read as the head, and Node's parser goes
 * on with them after handing this request over (microtasks run in between). Waiting until that
 * read is done (setImmediate) lets a malformed chunk be answered 400 (core/listener.ts) before
 * anything is forwarded: no upstream connection is opened for it.
 */
async function runOnceParsed(pipeline: Pipeline, rt: Runtime, ctx: RequestContext): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (ctx.res.writableEnded || ctx.res.destroyed) return;
  return run(pipeline, rt, ctx);
}

/** Serves a request arriving on the separate admin port. */
export function handleAdminRequest(pipeline: Pipeline, req: IncomingMessage, res: ServerResponse): void {
  const ctx = new RequestContext(req, res, requestIdOf(req), pipeline.contextSettings);
  answerAdmin(pipeline, ctx).catch((err: unknown) => answerError(ctx, pipeline.plan, err));
}

/** The plan of the request's route, else the global one (an unmatched or admin request). */
function planOf(pipeline: Pipeline, ctx: RequestContext): Plan {
  return ctx.route?.plan ?? pipeline.plan;
}

function run(pipeline: Pipeline, rt: Runtime, ctx: RequestContext): Promise<void> | void {
  if (pipeline.admin.owns(ctx.pathname) && !rt.adminOnOwnPort) return answerAdmin(pipeline, ctx);
  if (pipeline.routesOnlyFromConfig) return routed(pipeline, rt, ctx, pipeline.router.match(ctx.req, ctx.pathname));
  const { route } = pipeline.plan;
  return then(runBail<Route>(route!, ctx), (found) => routed(pipeline, rt, ctx, found));
}

function routed(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, route: Route | undefined): Promise<void> | void {
  if (route === undefined) return unmatched(pipeline, ctx);
  ctx.route = route;
  ctx.timings.routed = ctx.elapsed();
  ctx.prepareOutgoing(prepareOutgoing, route);
  const plan = route.plan ?? pipeline.plan;
  if (plan.access === null) return lookUpCache(pipeline, rt, ctx, route, plan);
  // Taps that decided synchronously (most) go on at once: no closure is made for the next step.
  const reply = runBail<Reply>(plan.access, ctx);
  if (reply instanceof Promise) return reply.then((decided) => accessed(pipeline, rt, ctx, route, plan, decided));
  return accessed(pipeline, rt, ctx, route, plan, reply);
}

function accessed(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, route: Route, plan: Plan, reply: Reply | undefined): Promise<void> | void {
  return reply ? sendReply(ctx, plan, reply, 'access') : lookUpCache(pipeline, rt, ctx, route, plan);
}

/** No route: the global access taps may still answer (a preflight, /robots.txt, a refusal); else 404. */
function unmatched(pipeline: Pipeline, ctx: RequestContext): Promise<void> | void {
  const { plan } = pipeline;
  const noRoute = () => new SwitchyardError('SY_ERR_NO_ROUTE', `no route matches ${ctx.req.method} ${ctx.pathname}`);
  if (plan.access === null) throw noRoute();
  return then(runBail<Reply>(plan.access, ctx), (reply) => {
    if (reply) return sendReply(ctx, plan, reply, 'access');
    throw noRoute();
  });
}

function lookUpCache(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, route: Route, plan: Plan): Promise<void> | void {
  if (plan.cacheLookup === null) return forward(pipeline, rt, ctx, route, plan);
  const reply = runBail<Reply>(plan.cacheLookup, ctx);
  if (reply instanceof Promise) return reply.then((found) => lookedUp(pipeline, rt, ctx, route, plan, found));
  return lookedUp(pipeline, rt, ctx, route, plan, reply);
}

function lookedUp(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, route: Route, plan: Plan, reply: Reply | undefined): Promise<void> | void {
  return reply ? sendReply(ctx, plan, reply, 'cacheLookup') : forward(pipeline, rt, ctx, route, plan);
}

/**
 * Path, hop-by-hop and X-Forwarded handling every request gets before plugins see `outgoing`. An
 * upgrade keeps Upgrade and Connection: they are what asks the upstream to switch protocols.
 */
export function prepareOutgoing(ctx: RequestContext, outgoing: OutgoingRequest, route: Route, keepUpgrade = false): void {
  if (route.stripPrefix && route.match.pathPrefix) outgoing.path = stripPathPrefix(outgoing.path, route.match.pathPrefix);
  const trusted = ctx.fromTrustedProxy;
  outgoing.headers = forwardableHeaders(ctx.req.headers, keepUpgrade, trusted);
  setForwardedHeaders(ctx.req, outgoing.headers, trusted);
  outgoing.headers['x-request-id'] = ctx.id;
}

/** A plugin asking for RETRY over and over must not spin forever. */
const MAX_ATTEMPTS = 16;

async function forward(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, route: Route, plan: Plan): Promise<void> {
  const engine = engineFor(pipeline, rt, route);
  for (;;) {
    const selected = selectUpstream(rt, ctx, route, plan);
    // Balancers choose synchronously; awaiting only a real promise saves a microtask per request.
    ctx.upstream = selected instanceof Promise ? await selected : selected;
    ctx.tried.push(ctx.upstream);
    if (ctx.tried.length === 1 && plan.preRequest !== null) {
      const pending = runBail<Reply>(plan.preRequest, ctx);
      const reply = pending instanceof Promise ? await pending : pending;
      if (reply) return sendReply(ctx, plan, reply, 'preRequest');
    }
    ctx.timings.upstreamStart = ctx.elapsed();
    if (plan.attempt !== null) runSeries(plan.attempt, ctx);
    let upstreamRes: UpstreamResponse;
    try {
      upstreamRes = await engine.request(ctx);
    } catch (err) {
      const error = err as SwitchyardError;
      ctx.error = error;
      if (ctx.res.destroyed || error.code === 'SY_ERR_CLIENT_ABORTED') return;
      const decision = await askErrorStage(ctx, plan, error);
      if (decision === RETRY) continue;
      if (decision) return sendReply(ctx, plan, decision, 'error');
      throw error;
    }
    ctx.timings.firstByte = ctx.elapsed();
    const status = upstreamRes.status;
    // A 5xx is an upstream failure too: error taps may retry elsewhere or answer (stale-if-error).
    if (status >= 500 && plan.error !== null) {
      const error = new SwitchyardError('SY_ERR_UPSTREAM_ERROR_STATUS', `the upstream answered ${status}`, { details: { status } });
      ctx.response = { status, headers: upstreamRes.headers };
      const decision = await askErrorStage(ctx, plan, error);
      if (decision) {
        ctx.error = error;
        upstreamRes.body.resume(); // drain it, so the pooled connection can serve again
        if (decision === RETRY) continue;
        return sendReply(ctx, plan, decision, 'error');
      }
    }
    return deliver(ctx, plan, upstreamRes);
  }
}

/** The route's own engine, else the server's (server.engine). */
export function engineFor(pipeline: Pipeline, rt: Runtime, route: Route): ForwardEngine {
  return route.engine === undefined ? pipeline.engine : rt.engines[route.engine];
}

/** Runs the error stage; RETRY only stands when the request can be sent again. */
export async function askErrorStage(ctx: RequestContext, plan: Plan, error: SwitchyardError): Promise<Reply | typeof RETRY | undefined> {
  if (plan.error === null) return undefined;
  const decision = await runBail<Reply | typeof RETRY>(plan.error, ctx, error);
  if (decision !== RETRY) return decision;
  if (!canResend(ctx) || ctx.tried.length >= MAX_ATTEMPTS) return undefined;
  ctx.log.info({ upstream: ctx.upstream?.name, code: error.code, attempt: ctx.tried.length }, 'retrying');
  return RETRY;
}

function canResend(ctx: RequestContext): boolean {
  return !ctx.res.headersSent && (!ctx.hasBody || ctx.outgoing.body !== undefined);
}

/**
 * The upstream for this attempt: the `selectUpstream` taps' choice out of the healthy upstreams
 * not tried yet, else the first of those. On a retry with none of those left, the healthy ones
 * already tried are offered again, so a route with a single upstream can still retry it. With no
 * healthy upstream at all the taps still run, with no candidates: a balancer may pick from
 * `ctx.route.upstreams` anyway (panic mode).
 */
export function selectUpstream(rt: Runtime, ctx: RequestContext, route: Route, plan: Plan): Upstream | Promise<Upstream> {
  if (plan.selectUpstream === null) return firstHealthy(rt, ctx, route);
  const candidates = candidatesFor(rt, ctx, route);
  const selected = runBail<Upstream>(plan.selectUpstream, ctx, candidates);
  return selected instanceof Promise
    ? selected.then((upstream) => chosenOrFirst(upstream, candidates, route))
    : chosenOrFirst(selected, candidates, route);
}

function candidatesFor(rt: Runtime, ctx: RequestContext, route: Route): readonly Upstream[] {
  const { upstreams } = route;
  // The usual case, a first attempt with every upstream healthy: the route's own (frozen) list.
  if (ctx.tried.length === 0 && everyHealthy(rt, upstreams)) return upstreams;
  let candidates = upstreams.filter((u) => rt.health.isHealthy(u) && !ctx.tried.includes(u));
  if (candidates.length === 0 && ctx.tried.length > 0) candidates = upstreams.filter((u) => rt.health.isHealthy(u));
  return candidates;
}

// Indexed loops over a route's upstreams: the list is frozen, and V8 iterates a frozen array's
// for-of through the generic iterator, a builtin call per element.
function everyHealthy(rt: Runtime, upstreams: readonly Upstream[]): boolean {
  for (let i = 0; i < upstreams.length; i++) if (!rt.health.isHealthy(upstreams[i]!)) return false;
  return true;
}

function chosenOrFirst(upstream: Upstream | undefined, candidates: readonly Upstream[], route: Route): Upstream {
  const chosen = upstream ?? candidates[0];
  if (!chosen) throw noHealthyUpstream(route);
  return chosen;
}

/** Without a balancer: the first healthy upstream not tried yet, else the first healthy one. */
function firstHealthy(rt: Runtime, ctx: RequestContext, route: Route): Upstream {
  let fallback: Upstream | undefined;
  const { upstreams } = route;
  for (let i = 0; i < upstreams.length; i++) {
    const upstream = upstreams[i]!;
    if (!rt.health.isHealthy(upstream)) continue;
    if (!ctx.tried.includes(upstream)) return upstream;
    fallback ??= upstream;
  }
  if (fallback) return fallback;
  throw noHealthyUpstream(route);
}

function noHealthyUpstream(route: Route): SwitchyardError {
  return new SwitchyardError('SY_ERR_NO_HEALTHY_UPSTREAM', `no healthy upstream for route ${route.name}`);
}

/** The upstream's response: postResponse taps first, then out through beforeSend. */
function deliver(ctx: RequestContext, plan: Plan, upstreamRes: UpstreamResponse): Promise<void> | void {
  ctx.response = { status: upstreamRes.status, headers: upstreamRes.headers };
  upstreamRes.headers['x-request-id'] = ctx.id;
  if (plan.postResponse === null) return sendUpstream(ctx, plan, upstreamRes);
  let series: Promise<void> | void;
  try {
    series = runSeries(plan.postResponse, ctx);
  } catch (err) {
    upstreamRes.body.destroy();
    throw err;
  }
  if (!(series instanceof Promise)) return sendUpstream(ctx, plan, upstreamRes);
  return series.then(() => sendUpstream(ctx, plan, upstreamRes), (err: unknown) => {
    upstreamRes.body.destroy();
    throw err;
  });
}

async function answerAdmin(pipeline: Pipeline, ctx: RequestContext): Promise<void> {
  const query = ctx.url.indexOf('?');
  const reply = await pipeline.admin.handle(ctx.req, ctx.pathname, query === -1 ? '' : ctx.url.slice(query + 1), ctx.clientIp);
  return sendReply(ctx, pipeline.plan, reply, 'admin');
}

/** The response is over: run `done`, start `cacheStore`, write the access log line, let go of the pipeline. */
function finish(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, bytesSent: number): void {
  ctx.timings.end = ctx.elapsed();
  const completed = ctx.res.writableFinished;
  if (!completed) {
    ctx.error ??= new SwitchyardError('SY_ERR_CLIENT_ABORTED');
    ctx.inFlight?.abort(new SwitchyardError('SY_ERR_CLIENT_ABORTED'));
  }
  ctx.bytesSent = bytesSent;
  const plan = planOf(pipeline, ctx);
  if (plan.done !== null) {
    try {
      runSeries(plan.done, ctx);
    } catch (err) {
      ctx.log.error({ err }, 'a done tap failed');
    }
  }
  if (completed && ctx.route !== undefined && !ctx.answeredBy && plan.cacheStore !== null) {
    const failed = (err: unknown) => ctx.log.error({ err }, 'a cacheStore tap failed');
    try {
      const stored = runSeries(plan.cacheStore, ctx);
      if (stored instanceof Promise) stored.catch(failed);
    } catch (err) {
      failed(err);
    }
  }
  recordFinished(pipeline, rt, ctx, completed);
  pipeline.release();
}

/** A request or upgrade has ended: its access log line, and its row in the console's ring. */
export function recordFinished(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, completed: boolean): void {
  // Cut short by the upstream (idle timeout, reset mid-body) is the upstream's failure, not a client abort.
  const status = completed ? ctx.res.statusCode : ctx.error && ctx.error.code !== 'SY_ERR_CLIENT_ABORTED' ? ctx.error.status : 499;
  rt.console.record(ctx, status, pipeline.accessLog ? logRequest(pipeline, rt, ctx, status) : undefined);
}

/** Writes the access log line; hands it back for the console's ring (core/console-recorder.ts). */
function logRequest(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, status: number): AccessLine | undefined {
  const level = status >= 500 ? 'warn' : 'info';
  // LOG_LEVEL=warn and above: no line to build, no path to redact.
  if (!rt.logger.isLevelEnabled(level)) return undefined;
  const line: AccessLine = {
    requestId: ctx.id,
    traceId: ctx.traceId,
    method: ctx.req.method,
    path: redactString(ctx.url, pipeline.loaded.secrets),
    route: ctx.route?.name,
    upstream: ctx.upstream?.name,
    status,
    ms: Math.round(ctx.timings.end! * 100) / 100,
    bytes: ctx.bytesSent,
    attempts: ctx.tried.length,
    code: ctx.error?.code,
    consumer: ctx.consumer?.name ?? ctx.consumer?.id,
    clientIp: ctx.clientIp,
    userAgent: userAgentOf(ctx, pipeline),
  };
  rt.accessLog(level, line, ctx.logFields, 'request');
  return line;
}

/** Longest User-Agent kept on an access line: enough to tell clients apart, bounded against abuse. */
const USER_AGENT_LIMIT = 200;

function userAgentOf(ctx: RequestContext, pipeline: Pipeline): string | undefined {
  const given = ctx.req.headers['user-agent'];
  if (given === undefined) return undefined;
  return redactString(given.length > USER_AGENT_LIMIT ? given.slice(0, USER_AGENT_LIMIT) : given, pipeline.loaded.secrets);
}
