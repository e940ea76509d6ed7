// Runs one request through the stages: route → access → cacheLookup → selectUpstream →
// preRequest → forward → postResponse → (response sent) → cacheStore, with `error` on failures and
// `done` at the very end. A stage nobody tapped is skipped without an await.
import { randomFillSync } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { pipeline as pipeStreams, Readable } from 'node:stream';
import type { AccessLine } from './access-log.js';
import { RequestContext, type OutgoingRequest } from './context.js';
import type { ForwardEngine, UpstreamResponse } from './engine.js';
import { SwitchyardError, PluginError } from './errors.js';
import { forwardableHeaders, setForwardedHeaders } from './headers.js';
import type { Pipeline, Runtime } from './pipeline.js';
import { redactString } from './config/load.js';
import { endWithPreparedHead, PreparedResponse, writePreparedHead, type PreparedHead } from './response-head.js';
import { stripPathPrefix } from './router.js';
import { RETRY, STAGE_BIT, tapMaskOf, type Stages } from './stages.js';
import type { Reply, Route, Upstream } from './types.js';

type BailStage = 'route' | 'access' | 'cacheLookup' | 'selectUpstream' | 'preRequest' | 'error';

export function handleRequest(pipeline: Pipeline, rt: Runtime, req: IncomingMessage, res: ServerResponse): void {
  const ctx = new RequestContext(req, res, requestIdOf(req), pipeline.contextSettings);
  pipeline.acquire();
  // The socket, not req.socket: Node detaches it from the request once a response closes it.
  const socket = req.socket;
  const bytesBefore = socket.bytesWritten;
  // `on`, not `once`: a response closes once, and once() adds a bound wrapper that removes itself.
  res.on('close', () => finish(pipeline, rt, ctx, socket.bytesWritten - bytesBefore));
  const { maxBodySize } = pipeline.contextSettings;
  if (maxBodySize > 0 && Number(req.headers['content-length'] ?? 0) > maxBodySize) {
    answerError(rt, ctx, new SwitchyardError('SY_ERR_BODY_TOO_LARGE', undefined, { details: { limit: maxBodySize } }));
    return;
  }
  let running: Promise<void> | void;
  try {
    running = run(pipeline, rt, ctx);
  } catch (err) {
    answerError(rt, ctx, err);
    return;
  }
  running?.catch((err: unknown) => answerError(rt, ctx, err));
}

/**
 * Route → access → cacheLookup, then forward. Written without `async`: a stage whose taps all
 * answered at once hands back a plain value, and a cache hit then costs no promise at all.
 */
function run(pipeline: Pipeline, rt: Runtime, ctx: RequestContext): Promise<void> | void {
  if (pipeline.admin.owns(ctx.pathname) && !rt.adminOnOwnPort) {
    return answerAdmin(pipeline, ctx);
  }
  if (pipeline.routesOnlyFromConfig) return routed(pipeline, rt, ctx, pipeline.router.match(ctx.req, ctx.pathname));
  return then(runBail(pipeline.global.route, undefined, ctx), (route) => routed(pipeline, rt, ctx, route));
}

function routed(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, route: Route | undefined): Promise<void> | void {
  if (!route) throw new SwitchyardError('SY_ERR_NO_ROUTE', `no route matches ${ctx.req.method} ${ctx.pathname}`);
  ctx.route = route;
  ctx.timings.routed = ctx.elapsed();
  ctx.prepareOutgoing(prepareOutgoing, route);
  if (!hasTaps(pipeline, route, STAGE_BIT.access)) return lookUpCache(pipeline, rt, ctx, route);
  return then(runBail(pipeline.global.access, route.stages?.access, ctx), (reply) => (reply ? sendReply(ctx, reply, 'access') : lookUpCache(pipeline, rt, ctx, route)));
}

function lookUpCache(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, route: Route): Promise<void> | void {
  if (!hasTaps(pipeline, route, STAGE_BIT.cacheLookup)) return forward(pipeline, rt, ctx, route);
  return then(runBail(pipeline.global.cacheLookup, route.stages?.cacheLookup, ctx), (reply) => (reply ? sendReply(ctx, reply, 'cacheLookup') : forward(pipeline, rt, ctx, route)));
}

/** Goes on with a value now, or once its promise settles. */
function then<T, R>(value: T | Promise<T>, next: (value: T) => R | Promise<R>): R | Promise<R> {
  return value instanceof Promise ? value.then(next) : next(value);
}

/**
 * Path, hop-by-hop and X-Forwarded handling every request gets before plugins see `outgoing`. An
 * upgrade keeps Upgrade and Connection: they are what asks the upstream to switch protocols.
 */
function prepareOutgoing(ctx: RequestContext, outgoing: OutgoingRequest, route: Route, keepUpgrade = false): void {
  if (route.stripPrefix && route.match.pathPrefix) outgoing.path = stripPathPrefix(outgoing.path, route.match.pathPrefix);
  outgoing.headers = forwardableHeaders(ctx.req.headers, keepUpgrade);
  setForwardedHeaders(ctx.req, outgoing.headers);
  outgoing.headers['x-request-id'] = ctx.id;
}

/** A plugin asking for RETRY over and over must not spin forever. */
const MAX_ATTEMPTS = 16;

async function forward(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, route: Route): Promise<void> {
  const engine = engineFor(pipeline, rt, route);
  for (;;) {
    if (hasTaps(pipeline, route, STAGE_BIT.selectUpstream)) {
      // Balancers choose synchronously; awaiting only a real promise saves a microtask per request.
      const selected = selectWithTaps(pipeline, rt, ctx, route);
      ctx.upstream = selected instanceof Promise ? await selected : selected;
    } else {
      ctx.upstream = firstHealthy(rt, ctx, route);
    }
    ctx.tried.push(ctx.upstream);
    if (ctx.tried.length === 1 && hasTaps(pipeline, route, STAGE_BIT.preRequest)) {
      const pending = runBail(pipeline.global.preRequest, route.stages?.preRequest, ctx);
      const reply = pending instanceof Promise ? await pending : pending;
      if (reply) return sendReply(ctx, reply, 'preRequest');
    }
    ctx.timings.upstreamStart = ctx.elapsed();
    let upstreamRes: UpstreamResponse;
    try {
      upstreamRes = await engine.request(ctx);
    } catch (err) {
      const error = err as SwitchyardError;
      ctx.error = error;
      if (ctx.res.destroyed || error.code === 'SY_ERR_CLIENT_ABORTED') return;
      const decision = await askErrorStage(pipeline, ctx, route, error);
      if (decision === RETRY) continue;
      if (decision) return sendReply(ctx, decision, 'error');
      throw error;
    }
    ctx.timings.firstByte = ctx.elapsed();
    const status = upstreamRes.status;
    // A 5xx is an upstream failure too: error taps may retry elsewhere or answer (stale-if-error).
    if (status >= 500 && hasTaps(pipeline, route, STAGE_BIT.error)) {
      const error = new SwitchyardError('SY_ERR_UPSTREAM_ERROR_STATUS', `the upstream answered ${status}`, { details: { status } });
      ctx.response = { status, headers: upstreamRes.headers };
      const decision = await askErrorStage(pipeline, ctx, route, error);
      if (decision) {
        ctx.error = error;
        upstreamRes.body.resume(); // drain it, so the pooled connection can serve again
        if (decision === RETRY) continue;
        return sendReply(ctx, decision, 'error');
      }
    }
    return deliver(pipeline, ctx, route, upstreamRes);
  }
}

/** The route's own engine, else the server's (server.engine). */
function engineFor(pipeline: Pipeline, rt: Runtime, route: Route): ForwardEngine {
  return route.engine === undefined ? pipeline.engine : rt.engines[route.engine];
}

/** Runs the error stage; RETRY only stands when the request can be sent again. */
async function askErrorStage(pipeline: Pipeline, ctx: RequestContext, route: Route, error: SwitchyardError): Promise<Reply | typeof RETRY | undefined> {
  if (!hasTaps(pipeline, route, STAGE_BIT.error)) return undefined;
  const decision = await runBail(pipeline.global.error, route.stages?.error, ctx, error);
  if (decision !== RETRY) return decision;
  if (!canResend(ctx) || ctx.tried.length >= MAX_ATTEMPTS) return undefined;
  ctx.log.info({ upstream: ctx.upstream?.name, code: error.code, attempt: ctx.tried.length }, 'retrying');
  return RETRY;
}

/**
 * The healthy upstreams not tried yet go to `selectUpstream`. On a retry with none of those left,
 * the healthy ones already tried are offered again, so a route with a single upstream can still
 * retry it. With no healthy upstream at all the taps still run, with no candidates: a balancer
 * may pick from `ctx.route.upstreams` anyway (panic mode).
 */
function selectWithTaps(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, route: Route): Upstream | Promise<Upstream> {
  const candidates = candidatesFor(rt, ctx, route);
  const selected = runBail(pipeline.global.selectUpstream, route.stages?.selectUpstream, ctx, candidates);
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

/** Sends the upstream's response: postResponse taps first, then the head, then the body as a stream. */
function deliver(pipeline: Pipeline, ctx: RequestContext, route: Route, upstreamRes: UpstreamResponse): Promise<void> | void {
  // Trailers are only looked for when the upstream announced them (RFC 9110 §6.6.2).
  const trailers = upstreamRes.trailersAnnounced;
  const headers: OutgoingHttpHeaders = upstreamRes.headers;
  headers['x-request-id'] = ctx.id;
  ctx.response = { status: upstreamRes.status, headers };
  if (!hasTaps(pipeline, route, STAGE_BIT.postResponse)) return stream(ctx, upstreamRes, trailers);
  let series: Promise<void> | void;
  try {
    series = runSeries(pipeline.global.postResponse, route.stages?.postResponse, ctx);
  } catch (err) {
    upstreamRes.body.destroy();
    throw err;
  }
  if (!(series instanceof Promise)) return stream(ctx, upstreamRes, trailers);
  return series.then(() => stream(ctx, upstreamRes, trailers), (err: unknown) => {
    upstreamRes.body.destroy();
    throw err;
  });
}

function stream(ctx: RequestContext, upstreamRes: UpstreamResponse, trailers: boolean): void {
  const { res } = ctx;
  const { body } = upstreamRes;
  if (res.destroyed) {
    body.destroy();
    return;
  }
  const { proxyResponseHeaders } = ctx;
  if (proxyResponseHeaders !== undefined) Object.assign(ctx.response!.headers, proxyResponseHeaders);
  res.writeHead(ctx.response!.status, ctx.response!.headers);
  // Node sends the head with the first body byte. When none is here yet (an event stream that
  // opens quietly, a long poll) the client must still see the head now.
  if (body.readableLength === 0 && !upstreamRes.complete) res.flushHeaders();
  const transforms = ctx.responseTransforms;
  if (!transforms) {
    // Before pipe() ends the response: trailers go out after the last chunk (chunked responses only).
    if (trailers) body.once('end', () => res.addTrailers(upstreamRes.trailers));
    body.pipe(res);
    body.once('close', () => {
      // The upstream vanished mid-body: the client must not take a cut-off body for a whole one.
      if (!upstreamRes.complete) {
        ctx.error ??= new SwitchyardError('SY_ERR_UPSTREAM_UNREACHABLE', 'the upstream closed the connection mid-response');
        res.destroy();
      }
    });
    return;
  }
  pipeStreams([body, ...transforms, res], (err) => {
    if (err && !res.writableFinished) {
      ctx.error ??= new SwitchyardError('SY_ERR_UPSTREAM_UNREACHABLE', err.message, { cause: err });
      res.destroy();
    }
  });
}

/** Whether a stage has taps to run for this route, global or its own: `bit` is a STAGE_BIT. */
function hasTaps(pipeline: Pipeline, route: Route, bit: number): boolean {
  const own = route.stages === undefined ? 0 : tapMaskOf(route.stages);
  return ((tapMaskOf(pipeline.global) | own) & bit) !== 0;
}

/** A stage's hook as the core calls it: tapable's registry of taps, in order. */
interface StageHook {
  callAsync(...args: unknown[]): void;
  taps: readonly { type: string; fn: DirectTap; direct?: DirectTap }[];
  interceptors: readonly unknown[];
  [kDirectTaps]?: { count: number; taps: DirectTap[] | undefined };
}

/** A tap the core may call itself: it returns its result, or a promise of it. */
type DirectTap = (first: unknown, second?: unknown) => unknown;

const kDirectTaps = Symbol('switchyard.directTaps');

/**
 * The hook's taps as plain functions, when every one is `tap()` or `tapMaybeAsync()` (nearly always)
 * and nothing intercepts the hook; undefined otherwise. Taps are only added while plugins set up,
 * so the list is worked out once per count of taps.
 */
function directTapsOf(hook: StageHook): DirectTap[] | undefined {
  const known = hook[kDirectTaps];
  if (known !== undefined && known.count === hook.taps.length) return known.taps;
  let taps: DirectTap[] | undefined = [];
  if (hook.interceptors.length > 0) taps = undefined;
  for (const tap of hook.taps) {
    const direct = tap.type === 'sync' ? tap.fn : tap.direct;
    if (direct === undefined) taps = undefined;
    else taps?.push(direct);
  }
  hook[kDirectTaps] = { count: hook.taps.length, taps };
  return taps;
}

/**
 * Calls a stage's hook with its one or two arguments: the taps in order, a bail hook stopping at
 * the first that answers. A synchronous chain returns a plain value, with no promise, closure or
 * callback on the way; a promise comes back only from a tap that really waited. Callback- and
 * promise-style taps, and intercepted hooks, go through tapable's own `callAsync`.
 */
function callHook<T>(hook: StageHook, arity: 1 | 2, first: unknown, second: unknown, bail: boolean): T | Promise<T> {
  const taps = directTapsOf(hook);
  return taps ? callDirect<T>(taps, first, second, bail, 0) : callThroughTapable<T>(hook, arity === 1 ? [first] : [first, second]);
}

function callDirect<T>(taps: DirectTap[], first: unknown, second: unknown, bail: boolean, from: number): T | Promise<T> {
  for (let i = from; i < taps.length; i++) {
    const result = taps[i]!(first, second);
    if (result instanceof Promise) {
      return result.then((value: unknown) => (bail && value !== undefined ? (value as T) : callDirect<T>(taps, first, second, bail, i + 1)));
    }
    if (bail && result !== undefined) return result as T;
  }
  return undefined as T;
}

function callThroughTapable<T>(hook: StageHook, args: unknown[]): T | Promise<T> {
  let done = false;
  let value: T | undefined;
  let failure: unknown;
  let resolve: ((value: T) => void) | undefined;
  let reject: ((err: unknown) => void) | undefined;
  // tapable's compiled callAsync takes exactly the hook's arguments, then the callback.
  hook.callAsync(...args, (err: unknown, result: T) => {
    if (resolve) {
      if (err) reject!(err);
      else resolve(result);
      return;
    }
    done = true;
    failure = err;
    value = result;
  });
  if (done) {
    if (failure) throw failure;
    return value as T;
  }
  return new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
}

/** A stage's hook when it has taps; the route's own hook is undefined for a route without plugins. */
function withTaps(hook: unknown): StageHook | undefined {
  return hook !== undefined && (hook as StageHook).taps.length > 0 ? (hook as StageHook) : undefined;
}

/** What a bail stage's taps answer with: a Route, a Reply, an Upstream, RETRY… */
type BailResult<H> = H extends { promise(...args: never[]): Promise<infer R> } ? R : never;

/**
 * Global taps first, then the route's; the first that answers wins. A plain value when every tap
 * was synchronous. Each caller names its stage's hooks itself (`pipeline.global.access`), a load
 * V8 resolves once per call site, rather than this function looking them up by the stage's name.
 * `arg` is the stage's second argument (selectUpstream's candidates, error's error).
 */
function runBail<H extends Stages[BailStage]>(globalHook: H, routeHook: H | undefined, ctx: RequestContext, arg?: unknown): BailResult<H> | Promise<BailResult<H>> {
  type Result = BailResult<H>;
  const arity = arg === undefined ? 1 : 2;
  const own = withTaps(routeHook);
  const global = globalHook as unknown as StageHook;
  if (global.taps.length === 0) return own ? callHook<Result>(own, arity, ctx, arg, true) : (undefined as Result);
  const result = callHook<Result>(global, arity, ctx, arg, true);
  if (!own) return result;
  if (result instanceof Promise) return result.then((value) => (value !== undefined ? value : callHook<Result>(own, arity, ctx, arg, true)));
  return result !== undefined ? result : callHook<Result>(own, arity, ctx, arg, true);
}

/** Global taps, then the route's, each in turn. Plain (no promise) when every tap was synchronous. */
function runSeries(globalHook: Stages['postResponse' | 'cacheStore'], routeHook: Stages['postResponse' | 'cacheStore'] | undefined, ctx: RequestContext): Promise<void> | void {
  const own = withTaps(routeHook);
  const global = globalHook as unknown as StageHook;
  if (global.taps.length === 0) return own ? callHook<void>(own, 1, ctx, undefined, false) : undefined;
  const result = callHook<void>(global, 1, ctx, undefined, false);
  if (!own) return result;
  return result instanceof Promise ? result.then(() => callHook<void>(own, 1, ctx, undefined, false)) : callHook<void>(own, 1, ctx, undefined, false);
}

function canResend(ctx: RequestContext): boolean {
  return !ctx.res.headersSent && (!ctx.hasBody || ctx.outgoing.body !== undefined);
}

/** Answers with a plugin's (or the admin router's) Reply. */
export function sendReply(ctx: RequestContext, reply: Reply, by: string): void {
  ctx.answeredBy = by;
  const { res } = ctx;
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  // Object.assign, not a spread with a property after it: V8 gives such an object a new hidden
  // class every time, several times the cost of the copy (cache hits answer through here).
  const headers: OutgoingHttpHeaders = Object.assign({}, reply.headers);
  if (ctx.proxyResponseHeaders !== undefined) Object.assign(headers, ctx.proxyResponseHeaders);
  let body = reply.body;
  if (reply.json !== undefined) {
    body = JSON.stringify(reply.json);
    headers['content-type'] ??= 'application/json; charset=utf-8';
  }
  if (body instanceof Readable) {
    writeReplyHead(ctx, reply.status, headers, reply.head);
    pipeStreams(body, res, (err) => {
      if (err) res.destroy();
    });
    return;
  }
  if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
  if (ctx.req.method === 'HEAD') body = undefined;
  if (reply.head === undefined) {
    writePlainHead(ctx, reply.status, headers);
    res.end(body);
    return;
  }
  endWithPreparedHead(res, reply.status, reply.head, headers, ctx.id, body);
  answeredWithPreparedHead(ctx, reply.status, reply.head, headers);
}

/** Writes a Reply's head, prepared or not, with this request's X-Request-Id; sets `ctx.response`. */
function writeReplyHead(ctx: RequestContext, status: number, headers: OutgoingHttpHeaders, head: PreparedHead | undefined): void {
  if (head === undefined) {
    writePlainHead(ctx, status, headers);
    return;
  }
  writePreparedHead(ctx.res, status, head, headers, ctx.id);
  answeredWithPreparedHead(ctx, status, head, headers);
}

function writePlainHead(ctx: RequestContext, status: number, headers: OutgoingHttpHeaders): void {
  headers['x-request-id'] = ctx.id;
  ctx.response = { status, headers };
  ctx.res.writeHead(status, headers);
}

/** `ctx.response` after a prepared head went out; the id was written with it, so it joins `headers` now. */
function answeredWithPreparedHead(ctx: RequestContext, status: number, head: PreparedHead, headers: OutgoingHttpHeaders): void {
  headers['x-request-id'] = ctx.id;
  ctx.response = new PreparedResponse(status, head, headers);
}

/** Every failure ends as JSON `{ error, code, requestId }` with the code's status. */
function answerError(rt: Runtime, ctx: RequestContext, err: unknown): void {
  const error = err instanceof SwitchyardError ? err : new SwitchyardError('SY_ERR_INTERNAL', undefined, { cause: err });
  ctx.error = error;
  if (error.status >= 500) ctx.log.error({ err: error, code: error.code, cause: error.cause }, error.message);
  // A plugin's own message may carry internals; clients get the stable text and the plugin's name.
  const message = error instanceof PluginError
    ? `plugin "${error.plugin}" failed in stage "${error.stage}"`
    : error.code === 'SY_ERR_INTERNAL' ? 'internal error' : error.message;
  // After a refused body the rest of it is still on the wire: close rather than read it all.
  const headers = error.code === 'SY_ERR_BODY_TOO_LARGE' ? { connection: 'close' } : undefined;
  sendReply(ctx, { status: error.status, headers, json: { error: message, code: error.code, requestId: ctx.id } }, 'error');
}

async function answerAdmin(pipeline: Pipeline, ctx: RequestContext): Promise<void> {
  const query = ctx.url.indexOf('?');
  const reply = await pipeline.admin.handle(ctx.req, ctx.pathname, query === -1 ? '' : ctx.url.slice(query + 1), ctx.clientIp);
  sendReply(ctx, reply, 'admin');
}

/** Serves a request arriving on the separate admin port. */
export function handleAdminRequest(pipeline: Pipeline, rt: Runtime, req: IncomingMessage, res: ServerResponse): void {
  const ctx = new RequestContext(req, res, requestIdOf(req), pipeline.contextSettings);
  answerAdmin(pipeline, ctx).catch((err: unknown) => answerError(rt, ctx, err));
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
  const route = ctx.route;
  try {
    if (pipeline.global.done.taps.length > 0) pipeline.global.done.call(ctx);
    if (route?.stages && route.stages.done.taps.length > 0) route.stages.done.call(ctx);
  } catch (err) {
    ctx.log.error({ err }, 'a done tap failed');
  }
  if (completed && route && !ctx.answeredBy && hasTaps(pipeline, route, STAGE_BIT.cacheStore)) {
    const failed = (err: unknown) => ctx.log.error({ err }, 'a cacheStore tap failed');
    try {
      const stored = runSeries(pipeline.global.cacheStore, route.stages?.cacheStore, ctx);
      if (stored instanceof Promise) stored.catch(failed);
    } catch (err) {
      failed(err);
    }
  }
  if (pipeline.accessLog) logRequest(pipeline, rt, ctx, completed);
  pipeline.release();
}

function logRequest(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, completed: boolean): void {
  // Cut short by the upstream (idle timeout, reset mid-body) is the upstream's failure, not a client abort.
  const status = completed ? ctx.res.statusCode : ctx.error && ctx.error.code !== 'SY_ERR_CLIENT_ABORTED' ? ctx.error.status : 499;
  const level = status >= 500 ? 'warn' : 'info';
  // LOG_LEVEL=warn and above: no line to build, no path to redact.
  if (!rt.logger.isLevelEnabled(level)) return;
  const line: AccessLine = {
    requestId: ctx.id,
    method: ctx.req.method,
    path: redactString(ctx.url, pipeline.loaded.secrets),
    route: ctx.route?.name,
    upstream: ctx.upstream?.name,
    status,
    ms: Math.round(ctx.timings.end! * 100) / 100,
    bytes: ctx.bytesSent,
    attempts: ctx.tried.length,
    code: ctx.error?.code,
  };
  rt.accessLog(level, line, ctx.logFields, 'request');
}

const REQUEST_ID = /^[\w.:@/+=-]{1,200}$/;

/** Keeps a sane incoming X-Request-Id so a trace spans hops; makes one otherwise. */
function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : newRequestId();
}

const UUID_BYTES = 16;
const UUID_LENGTH = 36;
const IDS_PER_BATCH = 256;
const randomBytes = Buffer.alloc(UUID_BYTES * IDS_PER_BATCH);
const batchText = Buffer.alloc(UUID_LENGTH * IDS_PER_BATCH);
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
let batch = '';
let nextInBatch = IDS_PER_BATCH;

/**
 * A random (version 4) UUID, as crypto.randomUUID makes. They are made 256 at a time into one
 * string, and each request takes a slice of it, which V8 makes without copying. randomUUID joins
 * its 36 characters from 20 pieces, which are then flattened again to be written out in both
 * directions; one string per id read back from a buffer still cost about 2,000 instructions.
 * @internal exported for tests
 */
export function newRequestId(): string {
  if (nextInBatch === IDS_PER_BATCH) {
    batch = newBatchOfIds();
    nextInBatch = 0;
  }
  const at = nextInBatch++ * UUID_LENGTH;
  return batch.slice(at, at + UUID_LENGTH);
}

function newBatchOfIds(): string {
  randomFillSync(randomBytes);
  let at = 0;
  for (let i = 0; i < randomBytes.length; i++) {
    const n = i % UUID_BYTES;
    let byte = randomBytes[i]!;
    if (n === 6) byte = (byte & 0x0f) | 0x40; // version 4
    else if (n === 8) byte = (byte & 0x3f) | 0x80; // RFC 4122 variant
    if (n === 4 || n === 6 || n === 8 || n === 10) batchText[at++] = 0x2d; // '-'
    batchText[at++] = HEX_DIGITS[byte >> 4]!;
    batchText[at++] = HEX_DIGITS[byte & 0x0f]!;
  }
  return batchText.toString('latin1');
}

// ---- WebSocket upgrades ----------------------------------------------------------------------

/** Routes an upgrade like a request (route, access, selectUpstream, preRequest), then splices the sockets. */
export function handleUpgrade(pipeline: Pipeline, rt: Runtime, req: IncomingMessage, socket: Duplex, head: Buffer, res: ServerResponse): void {
  const ctx = new RequestContext(req, res, requestIdOf(req), pipeline.contextSettings);
  pipeline.acquire();
  socket.once('close', () => {
    ctx.timings.end = ctx.elapsed();
    if (pipeline.accessLog) rt.logger.info({ requestId: ctx.id, method: 'GET', path: redactString(ctx.url, pipeline.loaded.secrets), route: ctx.route?.name, upstream: ctx.upstream?.name, status: 101, ms: Math.round(ctx.timings.end) , code: ctx.error?.code }, 'websocket closed');
    pipeline.release();
  });
  // A socket error must never crash the process; closing is all there is to do.
  socket.on('error', () => socket.destroy());
  upgrade(pipeline, rt, ctx, socket, head).catch((err: unknown) => refuseUpgrade(ctx, socket, err));
}

async function upgrade(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, socket: Duplex, head: Buffer): Promise<void> {
  const route = pipeline.routesOnlyFromConfig ? pipeline.router.match(ctx.req, ctx.pathname) : await runBail(pipeline.global.route, undefined, ctx);
  if (!route || !route.websocket) throw new SwitchyardError('SY_ERR_NO_ROUTE', `no route takes WebSocket upgrades at ${ctx.pathname}`);
  ctx.route = route;
  prepareOutgoing(ctx, ctx.outgoing, route, true);
  if (hasTaps(pipeline, route, STAGE_BIT.access)) {
    const reply = await runBail(pipeline.global.access, route.stages?.access, ctx);
    if (reply) return writeRawReply(socket, reply);
  }
  ctx.upstream = hasTaps(pipeline, route, STAGE_BIT.selectUpstream) ? await selectWithTaps(pipeline, rt, ctx, route) : firstHealthy(rt, ctx, route);
  ctx.tried.push(ctx.upstream);
  if (hasTaps(pipeline, route, STAGE_BIT.preRequest)) {
    const reply = await runBail(pipeline.global.preRequest, route.stages?.preRequest, ctx);
    if (reply) return writeRawReply(socket, reply);
  }
  engineFor(pipeline, rt, route).upgrade(ctx, socket, head, (err) => {
    ctx.error = err;
  });
}

function refuseUpgrade(ctx: RequestContext, socket: Duplex, err: unknown): void {
  const error = err instanceof SwitchyardError ? err : new SwitchyardError('SY_ERR_INTERNAL', undefined, { cause: err });
  ctx.error = error;
  writeRawReply(socket, { status: error.status, json: { error: error.message, code: error.code, requestId: ctx.id } });
}

/** An upgrade has no ServerResponse: refusals are written to the socket by hand, then it closes. */
function writeRawReply(socket: Duplex, reply: Reply): void {
  if (socket.destroyed) return;
  const body = reply.json !== undefined ? JSON.stringify(reply.json) : typeof reply.body === 'string' || Buffer.isBuffer(reply.body) ? reply.body : '';
  const headers: OutgoingHttpHeaders = { 'content-type': 'application/json; charset=utf-8', ...reply.headers, 'content-length': Buffer.byteLength(body), connection: 'close' };
  const head = Object.entries(headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`).join('\r\n');
  socket.end(`HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? ''}\r\n${head}\r\n\r\n${body}`);
}
