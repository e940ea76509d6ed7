// Every answer leaves through here: the upstream's response (sendUpstream), a Reply from a plugin,
// a cache or the admin router (sendReply), and failures (answerError). Each passes the plan's
// `beforeSend` taps just before its head is written, so a plugin that stamps, encodes or filters
// answers sees all of them. With no such taps, answers go out on the fast paths below.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Readable, Writable, type Transform } from 'node:stream';
import type { RequestContext } from './context.js';
import type { UpstreamResponse } from './engine.js';
import { PluginError, SwitchyardError } from './errors.js';
import { detachChain, pipeChain } from './pipe-chain.js';
import { runSeries, type Plan } from './plan.js';
import { STAGE_NAMES } from './stages.js';
import { endWithPreparedHead, PreparedResponse, writePreparedHead, type PreparedHead } from './response-head.js';
import type { Reply } from './types.js';

type Body = string | Buffer | Uint8Array | Readable | undefined;

/** Answers with a plugin's (or the admin router's) Reply; `by` names the stage that answered. */
export function sendReply(ctx: RequestContext, plan: Plan, reply: Reply, by: string): void | Promise<void> {
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
  let body: Body = reply.body;
  if (reply.json !== undefined) {
    body = JSON.stringify(reply.json);
    headers['content-type'] ??= 'application/json; charset=utf-8';
  }
  const taps = plan.beforeSend;
  if (taps !== null) {
    const all = reply.head === undefined ? headers : Object.assign({}, reply.head.headers, headers);
    if (body !== undefined && !(body instanceof Readable)) all['content-length'] = Buffer.byteLength(body);
    return passBeforeSend(ctx, taps, reply.status, all, () => writeAnswer(ctx, plan, body));
  }
  if (body instanceof Readable) {
    writeReplyHead(ctx, reply.status, headers, reply.head);
    pipeChain([body, res], (err) => {
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

/**
 * Sends the upstream's response: the head (after `beforeSend`), then the body as a stream,
 * through the transforms plugins added. `ctx.response` holds the head postResponse left.
 */
export function sendUpstream(ctx: RequestContext, plan: Plan, upstreamRes: UpstreamResponse): void | Promise<void> {
  const { proxyResponseHeaders } = ctx;
  const response = ctx.response!;
  if (proxyResponseHeaders !== undefined) Object.assign(response.headers, proxyResponseHeaders);
  const taps = plan.beforeSend;
  if (taps === null) return streamUpstream(ctx, plan, upstreamRes);
  try {
    return passBeforeSend(ctx, taps, response.status, response.headers, () => streamUpstream(ctx, plan, upstreamRes), () => upstreamRes.body.destroy());
  } catch (err) {
    upstreamRes.body.destroy();
    throw err;
  }
}

/** Every failure ends as JSON `{ error, code, requestId }` with the code's status. */
export function answerError(ctx: RequestContext, plan: Plan, err: unknown): void {
  const error = err instanceof SwitchyardError ? err : new SwitchyardError('SY_ERR_INTERNAL', undefined, { cause: err });
  ctx.error = error;
  if (error.status >= 500) ctx.log.error({ err: error, code: error.code, cause: error.cause }, error.message);
  // A plugin's own message may carry internals; clients get the stable text and the plugin's name.
  const message = error instanceof PluginError
    ? `plugin "${error.plugin}" failed in stage "${error.stage}"`
    : error.code === 'SY_ERR_INTERNAL' ? 'internal error' : error.message;
  // After a refused body the rest of it is still on the wire: close rather than read it all.
  const headers = error.code === 'SY_ERR_BODY_TOO_LARGE' ? { connection: 'close' } : undefined;
  // A beforeSend tap that failed on this answer's way out must not see the error answer too.
  const through = ctx.sendFailed ? NO_TAPS : plan;
  const sent = sendReply(ctx, through, { status: error.status, headers, json: { error: message, code: error.code, requestId: ctx.id } }, 'error');
  if (sent instanceof Promise) sent.catch((failure: unknown) => answerError(ctx, NO_TAPS, failure));
}

/** A plan with no taps: what an error answer uses once a beforeSend tap failed. */
const NO_TAPS = Object.freeze(Object.fromEntries(STAGE_NAMES.map((stage) => [stage, null]))) as Plan;

/** Runs beforeSend on `ctx.response`, then writes the answer; `abandon` lets go of a body not sent. */
function passBeforeSend(ctx: RequestContext, taps: NonNullable<Plan['beforeSend']>, status: number, headers: OutgoingHttpHeaders, write: () => void, abandon?: () => void): void | Promise<void> {
  headers['x-request-id'] = ctx.id;
  ctx.response = { status, headers };
  ctx.sendFailed = true;
  const passed = runSeries(taps, ctx);
  if (!(passed instanceof Promise)) {
    ctx.sendFailed = false;
    return write();
  }
  return passed.then(() => {
    ctx.sendFailed = false;
    write();
  }, (err: unknown) => {
    abandon?.();
    throw err;
  });
}

/** A Reply's answer after beforeSend: `ctx.response` as the taps left it, the body through their transforms. */
function writeAnswer(ctx: RequestContext, plan: Plan, body: Body): void {
  const { res } = ctx;
  if (res.headersSent || res.destroyed) {
    if (body instanceof Readable) body.destroy();
    res.destroy();
    return;
  }
  const { status, headers } = ctx.response!;
  const transforms = ctx.req.method === 'HEAD' ? undefined : withSentCopy(ctx);
  const source = () => body instanceof Readable ? body : Readable.from(body === undefined ? [] : [typeof body === 'string' ? Buffer.from(body) : body]);
  if (transforms !== undefined && ctx.headWithOutput) return streamWithHeldHead(ctx, plan, source(), transforms);
  res.writeHead(status, headers);
  if (ctx.req.method === 'HEAD') {
    if (body instanceof Readable) body.destroy();
    res.end();
    return;
  }
  if (transforms === undefined && !(body instanceof Readable)) {
    res.end(body);
    return;
  }
  pipeChain([source(), ...(transforms ?? []), res], (err) => {
    if (err) res.destroy();
  });
}

function streamUpstream(ctx: RequestContext, plan: Plan, upstreamRes: UpstreamResponse): void {
  const { res } = ctx;
  const { body } = upstreamRes;
  if (res.destroyed) {
    body.destroy();
    return;
  }
  const transforms = withSentCopy(ctx);
  if (transforms !== undefined && ctx.headWithOutput) return streamWithHeldHead(ctx, plan, body, transforms);
  res.writeHead(ctx.response!.status, ctx.response!.headers);
  // Node sends the head with the first body byte. When none is here yet (an event stream that
  // opens quietly, a long poll) the client must still see the head now.
  if (body.readableLength === 0 && !upstreamRes.complete) res.flushHeaders();
  if (!transforms) {
    // Trailers are only looked for when the upstream announced them (RFC 9110 §6.6.2), and go out
    // after the last chunk, before the chain ends the response (chunked responses only).
    if (upstreamRes.trailersAnnounced) body.once('end', () => res.addTrailers(upstreamRes.trailers));
    // Failures are handled below, on the body's close (the chain destroys the rest).
    pipeChain([body, res], ignoreSettled);
    const windingDown = followEventStream(ctx, body);
    body.once('close', () => {
      // The upstream vanished mid-body: the client must not take a cut-off body for a whole one.
      if (!upstreamRes.complete && !windingDown?.ended) {
        ctx.error ??= new SwitchyardError('SY_ERR_UPSTREAM_UNREACHABLE', 'the upstream closed the connection mid-response');
        res.destroy();
      }
    });
    return;
  }
  pipeChain([body, ...transforms, res], (err) => {
    if (err && !res.writableFinished) {
      ctx.error ??= new SwitchyardError('SY_ERR_UPSTREAM_UNREACHABLE', err.message, { cause: err });
      res.destroy();
    }
  });
}

/**
 * A body whose head waits for the transforms' first output byte (transformResponseBody's
 * `headWithOutput`). A failure before that byte is answered like any other, as JSON with its code
 * (a transform's own SwitchyardError, or the upstream's as SY_ERR_UPSTREAM_UNREACHABLE): nothing
 * was written yet. After it the connection is cut, so the client cannot take what it got for a
 * whole body, and the code goes to the log. `res` is not in the chain: on an error, pipeChain()
 * would destroy it before it could carry the error answer.
 */
function streamWithHeldHead(ctx: RequestContext, plan: Plan, source: Readable, transforms: Transform[]): void {
  const { res } = ctx;
  const output = new HeadWithOutput(res, () => res.writeHead(ctx.response!.status, ctx.response!.headers));
  res.once('close', () => {
    if (!res.writableFinished) output.destroy();
  });
  pipeChain([source, ...transforms, output], (err) => {
    // Closed by the client (or already cut): the core's close handling has recorded it.
    if (!err || res.writableFinished || res.destroyed) return;
    const failure = err instanceof SwitchyardError ? err : new SwitchyardError('SY_ERR_UPSTREAM_UNREACHABLE', err.message, { cause: err });
    if (res.headersSent) {
      ctx.error ??= failure;
      ctx.log.warn({ code: failure.code, err: failure.message }, 'response body failed after its head went out: connection cut');
      res.destroy();
      return;
    }
    // The error answer is a new answer: no transform of the failed body, no copy of it kept.
    ctx.responseTransforms = undefined;
    ctx.sentListener = undefined;
    ctx.headWithOutput = false;
    answerError(ctx, plan, failure);
  });
}

/** Writes to `res` what the transforms emit, the head first, with the first byte (or at the end of an empty body). */
class HeadWithOutput extends Writable {
  constructor(private readonly res: ServerResponse, private readonly writeHead: () => void) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    if (!this.res.headersSent) this.writeHead();
    if (this.res.write(chunk)) done();
    else this.res.once('drain', () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    if (!this.res.headersSent) this.writeHead();
    this.res.end();
    done();
  }
}

/** The body transforms, and last the copy keepSentResponse() asked for: it sees the bytes as sent. */
function withSentCopy(ctx: RequestContext): Transform[] | undefined {
  const transforms = ctx.responseTransforms;
  if (ctx.sentListener === undefined) return transforms;
  const copy = ctx.sentCopy();
  if (copy === undefined) return transforms;
  return transforms === undefined ? [copy] : [...transforms, copy];
}

/** Event streams being served, by server: a drain that times out ends them (endEventStreams). */
const eventStreams = new WeakMap<object, Set<() => Promise<void>>>();

/** How long endEventStreams waits for the streams' last chunks to go out. */
const END_STREAMS_WAIT_MS = 1000;

/**
 * An event stream has no end of its own, and an SSE client takes a stream that ends properly as
 * the cue to reconnect (to another process), but a cut-off one as an error. So a stream this
 * server is made to give up on is ended cleanly: the upstream request stops, the client gets the
 * last chunk.
 */
function followEventStream(ctx: RequestContext, body: Readable): { ended: boolean } | undefined {
  const type = ctx.response!.headers['content-type'];
  const server = (ctx.req.socket as { server?: object } | null)?.server;
  if (server === undefined || typeof type !== 'string' || !type.startsWith('text/event-stream')) return undefined;
  const state = { ended: false };
  const { res } = ctx;
  const end = () => new Promise<void>((resolve) => {
    res.once('finish', resolve);
    res.once('close', resolve);
    state.ended = true;
    // Detached first: the chain would destroy the client's answer with the body, and a slow
    // client would lose the events still queued for it.
    detachChain(body);
    body.destroy();
    res.end();
  });
  let open = eventStreams.get(server);
  if (!open) eventStreams.set(server, (open = new Set()));
  open.add(end);
  res.once('close', () => open.delete(end));
  return state;
}

/** Ends every event stream `server` serves, cleanly; resolves once their last chunks went out (or a second passed). */
export async function endEventStreams(server: object): Promise<void> {
  const open = [...(eventStreams.get(server) ?? [])];
  if (open.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(open.map((end) => end())), new Promise<void>((resolve) => { timer = setTimeout(resolve, END_STREAMS_WAIT_MS); })]);
  clearTimeout(timer);
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

/** pipeChain()'s callback where the streams' own 'close' handling does the work. */
function ignoreSettled(): void {}
