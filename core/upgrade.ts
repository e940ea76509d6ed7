// WebSocket (and other) upgrades: routed and checked by the same plan as a request (route,
// access, selectUpstream, preRequest), then the engine splices the two sockets. There is no
// ServerResponse to answer on, so refusals are written to the socket by hand.
import { STATUS_CODES, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { RequestContext } from './context.js';
import { SwitchyardError } from './errors.js';
import { engineFor, prepareOutgoing, selectUpstream } from './flow.js';
import type { Pipeline, Runtime } from './pipeline.js';
import { runBail } from './plan.js';
import { redactString } from './config/load.js';
import { refusedRequestHead } from './request-head.js';
import { requestIdOf } from './request-id.js';
import type { Reply, Route } from './types.js';

export function handleUpgrade(pipeline: Pipeline, rt: Runtime, req: IncomingMessage, socket: Duplex, head: Buffer, res: ServerResponse): void {
  const refused = refusedRequestHead(req);
  const ctx = new RequestContext(req, res, requestIdOf(req), pipeline.contextSettings);
  pipeline.acquire();
  socket.once('close', () => {
    ctx.timings.end = ctx.elapsed();
    if (pipeline.accessLog) {
      rt.logger.info({
        requestId: ctx.id, method: 'GET', path: redactString(ctx.url, pipeline.loaded.secrets), route: ctx.route?.name,
        upstream: ctx.upstream?.name, status: 101, ms: Math.round(ctx.timings.end), code: ctx.error?.code, consumer: ctx.consumer?.name ?? ctx.consumer?.id,
      }, 'websocket closed');
    }
    pipeline.release();
  });
  // A socket error must never crash the process; closing is all there is to do.
  socket.on('error', () => socket.destroy());
  if (refused !== undefined) return refuseUpgrade(ctx, socket, refused);
  upgrade(pipeline, rt, ctx, socket, head).catch((err: unknown) => refuseUpgrade(ctx, socket, err));
}

async function upgrade(pipeline: Pipeline, rt: Runtime, ctx: RequestContext, socket: Duplex, head: Buffer): Promise<void> {
  const route = pipeline.routesOnlyFromConfig ? pipeline.router.match(ctx.req, ctx.pathname) : await runBail<Route>(pipeline.plan.route!, ctx);
  if (!route || !route.websocket) throw new SwitchyardError('SY_ERR_NO_ROUTE', `no route takes WebSocket upgrades at ${ctx.pathname}`);
  ctx.route = route;
  prepareOutgoing(ctx, ctx.outgoing, route, true);
  const plan = route.plan ?? pipeline.plan;
  if (plan.access !== null) {
    const reply = await runBail<Reply>(plan.access, ctx);
    if (reply) return writeRawReply(socket, reply);
  }
  ctx.upstream = await selectUpstream(rt, ctx, route, plan);
  ctx.tried.push(ctx.upstream);
  if (plan.preRequest !== null) {
    const reply = await runBail<Reply>(plan.preRequest, ctx);
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

/** Writes a refusal as a whole HTTP/1.1 answer, then closes the socket. */
function writeRawReply(socket: Duplex, reply: Reply): void {
  if (socket.destroyed) return;
  const body = reply.json !== undefined ? JSON.stringify(reply.json) : typeof reply.body === 'string' || Buffer.isBuffer(reply.body) ? reply.body : '';
  const headers: OutgoingHttpHeaders = { 'content-type': 'application/json; charset=utf-8', ...reply.headers, 'content-length': Buffer.byteLength(body), connection: 'close' };
  const head = Object.entries(headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`).join('\r\n');
  socket.end(`HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? ''}\r\n${head}\r\n\r\n${body}`);
}
