// WebSocket (and other) upgrades, through the same plan as a request: route, access,
// selectUpstream, preRequest, then the upstream; a failed attempt goes to the `error` stage (which
// may retry on another upstream, since nothing was written to the client yet, or answer), and
// `done` and the access log run when the connection closes. There is no ServerResponse to answer
// on, so answers are written to the socket by hand.
import { STATUS_CODES, ServerResponse, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { RequestContext } from './context.js';
import { SwitchyardError } from './errors.js';
import { askErrorStage, engineFor, prepareOutgoing, recordFinished, selectUpstream } from './flow.js';
import type { Pipeline, Runtime } from './pipeline.js';
import { runBail, runSeries, type Plan } from './plan.js';
import { refusedRequestHead } from './request-head.js';
import { requestIdOf } from './request-id.js';
import { RETRY } from './stages.js';
import type { Reply, Route } from './types.js';

/**
 * The upgrade's stand-in response: nothing is written through it. It carries the status the
 * client got, and counts as finished once the client had its whole answer (the 101, a relayed
 * refusal, an error), so `done` taps judge an upgrade as they judge a request.
 */
class UpgradeResponse extends ServerResponse {
  answered = false;

  constructor(req: IncomingMessage) {
    super(req);
    Object.defineProperty(this, 'writableFinished', { get: () => this.answered });
  }
}

export function handleUpgrade(pipeline: Pipeline, rt: Runtime, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const refused = refusedRequestHead(req);
  const res = new UpgradeResponse(req);
  const ctx = new RequestContext(req, res, requestIdOf(req), pipeline.contextSettings);
  pipeline.acquire();
  const bytesBefore = (socket as Socket).bytesWritten ?? 0;
  socket.once('close', () => finish(pipeline, rt, ctx, ((socket as Socket).bytesWritten ?? 0) - bytesBefore));
  // A socket error must never crash the process; closing is all there is to do.
  socket.on('error', () => socket.destroy());
  if (refused !== undefined) return answerError(ctx, socket, refused);
  upgrade(pipeline, rt, ctx, socket, head).catch((err: unknown) => answerError(ctx, socket, err));
}

async function upgrade(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, socket: Duplex, head: Buffer): Promise<void> {
  const route = pipeline.routesOnlyFromConfig ? pipeline.router.match(ctx.req, ctx.pathname) : await runBail<Route>(pipeline.plan.route!, ctx);
  if (!route || !route.websocket) throw new SwitchyardError('SY_ERR_NO_ROUTE', `no route takes WebSocket upgrades at ${ctx.pathname}`);
  ctx.route = route;
  ctx.timings.routed = ctx.elapsed();
  prepareOutgoing(ctx, ctx.outgoing, route, true);
  const plan = route.plan ?? pipeline.plan;
  if (plan.access !== null) {
    const reply = await runBail<Reply>(plan.access, ctx);
    if (reply) return answer(ctx, socket, reply, 'access');
  }
  const engine = engineFor(pipeline, rt, route);
  for (;;) {
    ctx.upstream = await selectUpstream(rt, ctx, route, plan);
    ctx.tried.push(ctx.upstream);
    if (ctx.tried.length === 1 && plan.preRequest !== null) {
      const reply = await runBail<Reply>(plan.preRequest, ctx);
      if (reply) return answer(ctx, socket, reply, 'preRequest');
    }
    ctx.timings.upstreamStart = ctx.elapsed();
    let status: number;
    try {
      status = await engine.upgrade(ctx, socket, head);
    } catch (err) {
      const error = err as SwitchyardError;
      ctx.error = error;
      if (socket.destroyed || error.code === 'SY_ERR_CLIENT_ABORTED') return;
      const decision = await askErrorStage(ctx, plan, error);
      if (decision === RETRY) continue;
      if (decision) return answer(ctx, socket, decision, 'error');
      throw error;
    }
    ctx.timings.firstByte = ctx.elapsed();
    ctx.response = { status, headers: {} };
    answered(ctx, status);
    if (status === 101 && !socket.destroyed) {
      rt.tunnels.add(socket);
      socket.once('close', () => rt.tunnels.delete(socket));
    }
    return;
  }
}

function answered(ctx: RequestContext, status: number): void {
  const res = ctx.res as UpgradeResponse;
  res.statusCode = status;
  res.answered = true;
}

function answerError(ctx: RequestContext, socket: Duplex, err: unknown): void {
  const error = err instanceof SwitchyardError ? err : new SwitchyardError('SY_ERR_INTERNAL', undefined, { cause: err });
  ctx.error = error;
  answer(ctx, socket, { status: error.status, json: { error: error.message, code: error.code, requestId: ctx.id } });
}

/** Writes a refusal as a whole HTTP/1.1 answer, then closes the socket. */
function answer(ctx: RequestContext, socket: Duplex, reply: Reply, by?: string): void {
  if (by !== undefined) ctx.answeredBy = by;
  if (socket.destroyed) return;
  const body = reply.json !== undefined ? JSON.stringify(reply.json) : typeof reply.body === 'string' || Buffer.isBuffer(reply.body) ? reply.body : '';
  const headers: OutgoingHttpHeaders = { 'content-type': 'application/json; charset=utf-8', ...reply.headers, 'x-request-id': ctx.id, 'content-length': Buffer.byteLength(body), connection: 'close' };
  const head = Object.entries(headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`).join('\r\n');
  socket.end(`HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? ''}\r\n${head}\r\n\r\n${body}`);
  answered(ctx, reply.status);
}

/** The connection closed: run `done`, write the access log line, let go of the pipeline. */
function finish(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, bytesSent: number): void {
  ctx.timings.end = ctx.elapsed();
  if (!ctx.res.writableFinished) ctx.error ??= new SwitchyardError('SY_ERR_CLIENT_ABORTED');
  ctx.bytesSent = bytesSent;
  const plan: Plan = ctx.route?.plan ?? pipeline.plan;
  if (plan.done !== null) {
    try {
      runSeries(plan.done, ctx);
    } catch (err) {
      ctx.log.error({ err }, 'a done tap failed');
    }
  }
  recordFinished(pipeline, rt, ctx, ctx.res.writableFinished);
  pipeline.release();
}
