// The `http-proxy` forwarding engine, on http-proxy's API (the maintained `http-proxy-3` rewrite)
// and node:http keep-alive agents (WebSocket upgrades, for both engines, are core/forward-upgrade.ts). The
// pipeline hands it a context and gets back the upstream's response head and body stream
// (core/engine.ts), or a SwitchyardError before that.
import http, { type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Readable, Transform } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { createProxyServer } from 'http-proxy-3';
import type { RequestContext } from './context.js';
import { authorityHostname, type ForwardEngine, type PoolOptions, type UpstreamResponse } from './engine.js';
import { SwitchyardError, type ErrorCode } from './errors.js';
import { forwardUpgrade } from './forward-upgrade.js';
import { stripHopByHop } from './headers.js';
import type { Upstream } from './types.js';

/** How often deadlines are checked: timeouts fire up to this much late. */
const DEADLINE_TICK_MS = 50;

const kAttempt = Symbol('switchyard.attempt');
type WithAttempt = IncomingMessage & { [kAttempt]?: Attempt };
const kInterimTo = Symbol('switchyard.interimTo');
type InterimSource = ClientRequest & { [kInterimTo]?: RequestContext };

/** An upstream's 1xx (node:http's 'information'), passed on; one function for every request. */
function forwardInformation(this: InterimSource, info: { statusCode: number; headers: IncomingHttpHeaders }): void {
  const ctx = this[kInterimTo];
  if (ctx) writeInterim(ctx, info.statusCode, info.headers);
}

/**
 * A 1xx goes on to the client (RFC 9110 §15.2) where Node can write one: 102 Processing, and 103
 * Early Hints with its Link. Never to an HTTP/1.0 client, nor after the final head. Both engines.
 */
export function writeInterim(ctx: RequestContext, status: number, headers: IncomingHttpHeaders): void {
  const { req, res } = ctx;
  if (res.headersSent || res.destroyed || req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) return;
  if (status === 102) {
    res.writeProcessing();
    return;
  }
  if (status !== 103 || headers.link === undefined) return;
  try {
    res.writeEarlyHints(headers as Record<string, string | string[]>);
  } catch {
    // A Link Node will not write is dropped: the hints are only hints.
  }
}

// http-proxy rebuilds the query from its parts and so drops an empty one (`/x?` becomes `/x`);
// this private header asks our agent to put the `?` back, keeping the path byte for byte.
export const EMPTY_QUERY_MARK = 'x-switchyard-empty-query';

/**
 * Watches the deadlines of every attempt in flight from one interval, instead of arming and
 * clearing timers for each request (tens of thousands a second under load). Deadlines are met to
 * within one tick.
 */
class DeadlineSweeper {
  private readonly active = new Set<Attempt>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly tickMs: number) {}

  watch(attempt: Attempt): void {
    this.active.add(attempt);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), this.tickMs);
      this.timer.unref();
    }
  }

  forget(attempt: Attempt): void {
    this.active.delete(attempt);
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.active.clear();
  }

  private sweep(): void {
    if (this.active.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    const now = performance.now();
    for (const attempt of this.active) attempt.check(now);
  }
}

/**
 * One try at one upstream: settles once, with the response head or with an error. Until the head
 * arrives it is bounded by the connect and first-byte timeouts; while the body streams, by the
 * idle timeout (no byte read from the upstream for that long).
 */
class Attempt {
  proxyReq: ClientRequest | undefined;
  private timeoutCode: ErrorCode | undefined;
  private readonly firstByteDeadline: number;
  private connectDeadline = Infinity;
  private upstreamRes: IncomingMessage | undefined;
  private lastBytesRead = 0;
  private lastProgress = 0;
  private settled = false;

  constructor(
    private readonly ctx: RequestContext,
    private readonly sweeper: DeadlineSweeper,
    private readonly resolve: (res: UpstreamResponse) => void,
    private readonly reject: (err: SwitchyardError) => void,
  ) {
    this.firstByteDeadline = performance.now() + ctx.route!.timeouts.firstByte;
    sweeper.watch(this);
  }

  attach(proxyReq: ClientRequest): void {
    this.proxyReq = proxyReq;
    if (this.settled) {
      proxyReq.destroy();
      return;
    }
    (proxyReq as InterimSource)[kInterimTo] = this.ctx;
    proxyReq.on('information', forwardInformation);
    // The socket may already be assigned by the time http-proxy-3 hands over the request.
    if (proxyReq.socket) this.watchConnection(proxyReq.socket);
    else proxyReq.once('socket', (socket: Socket) => this.watchConnection(socket));
  }

  /** A pooled socket is ready at once; a new one is bounded by the connect timeout until it is. */
  private watchConnection(socket: Socket): void {
    const connected = () => {
      this.connectDeadline = Infinity;
      this.ctx.timings.connected = this.ctx.elapsed();
    };
    if (!socket.connecting) return connected();
    this.connectDeadline = performance.now() + this.ctx.route!.timeouts.connect;
    // With TLS the connection is ready once the handshake is done, as undici counts it.
    socket.once('encrypted' in socket ? 'secureConnect' : 'connect', connected);
  }

  respond(upstreamRes: IncomingMessage): void {
    if (this.settled) {
      upstreamRes.destroy();
      return;
    }
    this.settled = true;
    this.upstreamRes = upstreamRes;
    this.lastBytesRead = upstreamRes.socket?.bytesRead ?? 0;
    this.lastProgress = performance.now();
    upstreamRes.once('close', () => this.sweeper.forget(this));
    this.resolve(new IncomingResponse(upstreamRes));
  }

  fail(err: Error & { code?: string }): void {
    if (this.settled) return;
    this.settled = true;
    this.sweeper.forget(this);
    this.reject(err instanceof SwitchyardError ? err : new SwitchyardError(this.timeoutCode ?? codeFor(err), undefined, { cause: err }));
  }

  /** Settles with `err` and stops the upstream request. */
  abort(err: SwitchyardError): void {
    this.fail(err);
    this.proxyReq?.destroy();
  }

  /** Called by the sweeper on each tick. */
  check(now: number): void {
    if (this.upstreamRes) {
      const bytesRead = this.upstreamRes.socket?.bytesRead ?? this.lastBytesRead;
      if (bytesRead !== this.lastBytesRead) {
        this.lastBytesRead = bytesRead;
        this.lastProgress = now;
      } else if (now - this.lastProgress >= this.ctx.route!.timeouts.idle) {
        this.sweeper.forget(this);
        this.ctx.error = new SwitchyardError('SY_ERR_UPSTREAM_IDLE_TIMEOUT');
        this.proxyReq?.destroy();
      }
      return;
    }
    if (now >= this.connectDeadline) this.timeOut('SY_ERR_UPSTREAM_CONNECT_TIMEOUT');
    else if (now >= this.firstByteDeadline) this.timeOut('SY_ERR_UPSTREAM_TIMEOUT');
  }

  private timeOut(code: ErrorCode): void {
    this.timeoutCode = code;
    if (this.proxyReq) this.proxyReq.destroy();
    else this.fail(new SwitchyardError(code));
  }
}

/**
 * What http-proxy pipes upstream: a buffered body, nothing (a retry of a body-less request, whose
 * stream already ended), a byte-counting pass-through when a streamed body has a size limit but
 * no Content-Length to check up front, or (undefined) the request itself.
 */
function bodySource(ctx: RequestContext, body: Buffer | undefined, attempt: Attempt): Readable | undefined {
  if (body) return Readable.from([body]);
  if (ctx.req.readableEnded) return Readable.from([]);
  const limit = ctx.maxBodySize;
  if (limit === 0 || !ctx.hasBody || ctx.req.headers['content-length'] !== undefined) return undefined;
  let seen = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > limit) {
        attempt.abort(new SwitchyardError('SY_ERR_BODY_TOO_LARGE', undefined, { details: { limit } }));
        done();
        return;
      }
      done(null, chunk);
    },
  });
  return ctx.req.pipe(counted);
}

/** An IncomingMessage seen through the engine contract. */
class IncomingResponse implements UpstreamResponse {
  readonly trailersAnnounced: boolean;

  constructor(readonly body: IncomingMessage) {
    this.trailersAnnounced = body.headers.trailer !== undefined;
    stripHopByHop(body.headers);
  }

  get status(): number {
    return this.body.statusCode ?? 502;
  }

  get headers(): IncomingHttpHeaders {
    return this.body.headers;
  }

  get complete(): boolean {
    return this.body.complete;
  }

  get trailers(): IncomingHttpHeaders {
    return this.body.trailers;
  }
}

/** Maps a socket, TLS or parser error to the code both engines report for it. */
export function codeFor(err: Error & { code?: string }): ErrorCode {
  if (err.code?.startsWith('HPE_')) return 'SY_ERR_UPSTREAM_BAD_RESPONSE';
  if (err.code && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_|ERR_SSL_/.test(err.code)) return 'SY_ERR_UPSTREAM_TLS';
  return 'SY_ERR_UPSTREAM_UNREACHABLE';
}

/** An Agent that restores an empty query string http-proxy dropped (see EMPTY_QUERY_MARK). */
function withEmptyQueryFix<A extends http.Agent>(agent: A): A {
  const addRequest = (agent as unknown as { addRequest: (req: ClientRequest, options: unknown) => void }).addRequest;
  Object.assign(agent, {
    addRequest(this: A, req: ClientRequest, options: unknown) {
      if (req.getHeader(EMPTY_QUERY_MARK) !== undefined) {
        req.removeHeader(EMPTY_QUERY_MARK);
        req.path += '?';
      }
      addRequest.call(this, req, options);
    },
  });
  return agent;
}

export class HttpProxyEngine implements ForwardEngine {
  private readonly proxy = createProxyServer({ xfwd: false, selfHandleResponse: true, toProxy: true });
  private readonly agents = new Map<string, http.Agent>();
  private readonly sweeper = new DeadlineSweeper(DEADLINE_TICK_MS);

  constructor(private readonly pool: PoolOptions) {
    this.proxy.on('proxyReq', (proxyReq, req) => (req as WithAttempt)[kAttempt]?.attach(proxyReq));
    this.proxy.on('proxyRes', (proxyRes, req) => (req as WithAttempt)[kAttempt]?.respond(proxyRes));
    // The client went away first: http-proxy swallows the error, so settle the attempt here.
    this.proxy.on('econnreset', (err, req) => (req as WithAttempt)[kAttempt]?.fail(new SwitchyardError('SY_ERR_CLIENT_ABORTED', undefined, { cause: err })));
    // Every web() and ws() call passes its own error callback; this listener only guarantees that
    // an 'error' event with no listener can never throw and take the process down.
    this.proxy.on('error', (err, req) => (req as WithAttempt)[kAttempt]?.fail(err));
    // http-proxy gives a DELETE or OPTIONS without Content-Length a `Content-Length: 0` and drops
    // Transfer-Encoding, which unframes a chunked body: its bytes would reach the upstream after
    // the head as a request of their own. Node frames these requests correctly without it.
    const passes = this.proxy as unknown as { webPasses: { name: string }[] };
    passes.webPasses = passes.webPasses.filter((pass) => pass.name !== 'deleteLength');
  }

  /** Sends `ctx.outgoing` to `ctx.upstream`; resolves with the response once its head arrived. */
  request(ctx: RequestContext): Promise<UpstreamResponse> {
    const req = ctx.req as WithAttempt;
    const upstream = ctx.upstream!;
    const { method, path, headers, body } = ctx.outgoing;
    req.url = path;
    req.headers = headers;
    // The marker is ours alone: one sent by the client would make the agent append a '?'.
    delete headers[EMPTY_QUERY_MARK];
    if (path.indexOf('?') === path.length - 1) headers[EMPTY_QUERY_MARK] = '1';
    // A member dialled by address: Host names it (its agent gives the TLS server name, agentFor).
    if (upstream.authority !== undefined && !ctx.route!.preserveHost) headers.host = upstream.authority;
    if (body) {
      headers['content-length'] = String(body.length);
      delete headers['transfer-encoding'];
    } else if (ctx.hasBody && headers['content-length'] === undefined) {
      // The client's chunked framing was hop-by-hop and got stripped. This hop needs its own, or
      // (for GET, DELETE…, which Node does not chunk by default) the body would follow the head
      // unframed and the upstream would read it as the next request: request smuggling.
      headers['transfer-encoding'] = 'chunked';
    }
    return new Promise((resolve, reject) => {
      const attempt = new Attempt(ctx, this.sweeper, resolve, reject);
      req[kAttempt] = attempt;
      this.proxy.web(req, ctx.res, {
        target: upstream.target,
        agent: this.agentFor(upstream),
        changeOrigin: !ctx.route!.preserveHost && upstream.authority === undefined,
        method,
        buffer: bodySource(ctx, body, attempt),
        secure: !upstream.tls?.insecure,
        ca: upstream.tls?.ca,
      }, (err) => attempt.fail(err));
    });
  }

  /** Proxies an upgrade to `ctx.upstream` (core/forward-upgrade.ts); both engines use this one. */
  upgrade(ctx: RequestContext, socket: Duplex, head: Buffer): Promise<number> {
    return forwardUpgrade(ctx, socket, head);
  }

  closeIdle(origin: string): void {
    for (const [key, agent] of this.agents) {
      if (key !== origin && !key.startsWith(`${origin}|`)) continue;
      // Busy sockets go back to the pool when their request ends; only the free ones can go now.
      for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
    }
  }

  close(): void {
    this.sweeper.close();
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  /**
   * The keep-alive agent for an upstream's origin. An https member dialled by address gets its own,
   * whose TLS server name is the member's name: node:https would otherwise take it from Host, the
   * client's when the route preserves it (http-proxy passes no server name through).
   */
  private agentFor(upstream: Upstream): http.Agent {
    const { target } = upstream;
    const key = upstream.authority === undefined ? target.origin : `${target.origin}|${upstream.authority}`;
    let agent = this.agents.get(key);
    if (!agent) {
      const options = { keepAlive: true, maxSockets: this.pool.maxSockets, maxFreeSockets: this.pool.maxFreeSockets, scheduling: 'lifo' as const };
      const servername = target.protocol === 'https:' ? authorityHostname(upstream) : undefined;
      agent = withEmptyQueryFix(target.protocol === 'https:' ? new https.Agent({ ...options, ...(servername === undefined ? {} : { servername }) }) : new http.Agent(options));
      this.agents.set(key, agent);
    }
    return agent;
  }
}
