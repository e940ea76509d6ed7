// The `undici` forwarding engine: one undici Pool per upstream origin, driven through the
// low-level dispatch() API. The handler below is also the response body stream, so a request
// costs one object besides undici's own, with no AsyncResource, no promise per body and no copy
// of the head. Upgrades (WebSockets) go through the http-proxy engine, which is given.
import type { IncomingHttpHeaders } from 'node:http';
import { Readable, Transform } from 'node:stream';
import type { Duplex } from 'node:stream';
import { createRequire } from 'node:module';
import type { buildConnector, Dispatcher, Pool } from 'undici';
import type { RequestContext } from './context.js';
import { authorityHostname, type ForwardEngine, type PoolOptions, type UpstreamResponse } from './engine.js';
import { SwitchyardError, type ErrorCode } from './errors.js';
import { codeFor, EMPTY_QUERY_MARK, writeInterim } from './forward.js';
import { IS_HOP_BY_HOP, namedByConnection } from './headers.js';
import { UndiciPool } from './undici-pool.js';
import type { Upstream } from './types.js';

// undici's internals beside its Pool (core/undici-pool.ts), loaded by Pool anyway.
const requireUndici = createRequire(import.meta.url);
const buildUndiciConnector = requireUndici('undici/lib/core/connect.js') as typeof buildConnector;
/** undici's header-name lookup (a trie of known names → interned lower-case strings), loaded by Pool anyway. */
const { headerNameToString } = requireUndici('undici/lib/core/util.js') as { headerNameToString(name: Buffer | string): string };

const NO_HEADERS: IncomingHttpHeaders = Object.freeze({}) as IncomingHttpHeaders;

export class UndiciEngine implements ForwardEngine {
  private readonly pools = new Map<string, Pool>();
  /** The pool each upstream used last, so the common request finds it without building a key. */
  private readonly poolOf = new WeakMap<Upstream, { connectTimeout: number; pool: Pool }>();

  constructor(private readonly pool: PoolOptions, private readonly upgrades: ForwardEngine) {}

  request(ctx: RequestContext): Promise<UpstreamResponse> {
    const route = ctx.route!;
    const upstream = ctx.upstream!;
    const { method, path, headers, body } = ctx.outgoing;
    const pool = this.poolFor(upstream, route.timeouts.connect);
    return new Promise((resolve, reject) => {
      const exchange = new Exchange(ctx, resolve, reject);
      let source: Buffer | Readable | null = null;
      if (body) source = body;
      else if (ctx.hasBody && !ctx.req.readableEnded) source = streamedBody(ctx, exchange);
      pool.dispatch({
        method,
        path: joinPath(upstream.target.pathname, path),
        headers: outgoingHeaders(headers, route.preserveHost, body !== undefined, upstream.authority),
        body: source,
        headersTimeout: route.timeouts.firstByte,
        bodyTimeout: route.timeouts.idle,
      }, exchange);
    });
  }

  upgrade(ctx: RequestContext, socket: Duplex, head: Buffer): Promise<number> {
    return this.upgrades.upgrade(ctx, socket, head);
  }

  async closeIdle(origin: string): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [key, pool] of this.pools) {
      if (!key.startsWith(`${origin}|`)) continue;
      this.pools.delete(key);
      closing.push(pool.close()); // lets requests in flight finish, then closes every connection
    }
    await Promise.all(closing);
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((pool) => pool.destroy()));
  }

  /**
   * The connect timeout is a pool setting in undici (headers and body timeouts go with each
   * request), so routes with different connect timeouts to one origin get a pool each.
   */
  private poolFor(upstream: Upstream, connectTimeout: number): Pool {
    const known = this.poolOf.get(upstream);
    if (known && known.connectTimeout === connectTimeout && !known.pool.destroyed && !known.pool.closed) return known.pool;
    const { target, tls } = upstream;
    const servername = target.protocol === 'https:' ? authorityHostname(upstream) : undefined;
    const key = `${target.origin}|${connectTimeout}|${tls?.insecure ? 1 : 0}|${servername ?? ''}|${tls?.ca ?? ''}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new UndiciPool(target.origin, {
        connections: this.pool.maxSockets,
        pipelining: 1,
        connect: withServerName({ timeout: connectTimeout, ca: tls?.ca, rejectUnauthorized: !tls?.insecure }, servername),
      });
      this.pools.set(key, pool);
    }
    this.poolOf.set(upstream, { connectTimeout, pool });
    return pool;
  }
}

/**
 * Connection options, with a fixed TLS server name for an https member dialled by address: undici
 * takes the name from each request's Host otherwise, the client's when the route preserves it.
 */
function withServerName(options: buildConnector.BuildOptions, servername: string | undefined): buildConnector.BuildOptions | buildConnector.connector {
  if (servername === undefined) return options;
  const connect = buildUndiciConnector(options);
  return (connection, callback) => connect({ ...connection, servername }, callback);
}

/**
 * One request in flight: undici's dispatch handler and, once the head arrived, the response and
 * its body stream. Settles once, with the head or with an error. The pipeline aborts it when the
 * client goes away (ctx.inFlight), at any point; destroying the body does too.
 */
class Exchange extends Readable implements UpstreamResponse, Dispatcher.DispatchHandler {
  status = 0;
  headers: IncomingHttpHeaders = NO_HEADERS;
  trailers: IncomingHttpHeaders = NO_HEADERS;
  trailersAnnounced = false;
  complete = false;
  private abortUpstream: ((err?: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  private paused = false;
  private settled = false;
  /** Why we aborted, when we did: what the caller hears instead of undici's abort error. */
  private failure: SwitchyardError | undefined;

  constructor(
    private readonly ctx: RequestContext,
    private readonly resolve: (res: UpstreamResponse) => void,
    private readonly reject: (err: SwitchyardError) => void,
  ) {
    super();
    // The pipeline calls abort() on this when the client goes away first (no listener of our own).
    ctx.inFlight = this;
  }

  get body(): Readable {
    return this;
  }

  /** Stops the upstream request; before the head arrived the caller hears `err`. */
  abort(err: SwitchyardError): void {
    if (this.failure || this.complete) return;
    this.failure = err;
    this.settle(err);
    this.abortUpstream?.(err);
  }

  // ---- undici's handler ----

  // undici calls this once a connection is ready and the request is about to be written on it.
  onConnect(abort: (err?: Error) => void): void {
    this.ctx.timings.connected = this.ctx.elapsed();
    this.abortUpstream = abort;
    if (this.failure) abort(this.failure);
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // An interim response (103 Early Hints): the final head follows.
    if (status < 200) {
      writeInterim(this.ctx, status, parseHeaders(rawHeaders));
      return true;
    }
    this.status = status;
    this.headers = parseHeaders(rawHeaders, this);
    this.resumeUpstream = resume;
    // A 204 or 304 has no body whatever its headers say (RFC 9110 §6.4.1), so it is whole with
    // its head. undici still holds its empty body against a Content-Length (legal on a 304: the
    // length of the representation) and fails it afterwards; that failure is no concern of ours.
    if (status === 204 || status === 304) this.endBody();
    if (!this.settled) {
      this.settled = true;
      this.resolve(this);
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.push(chunk)) return true;
    this.paused = true;
    return false;
  }

  onComplete(rawTrailers: string[] | Buffer[] | null): void {
    if (this.complete) return;
    this.complete = true;
    if (rawTrailers && rawTrailers.length > 0) this.trailers = parseHeaders(rawTrailers);
    this.push(null);
  }

  onError(err: Error): void {
    if (!this.settled) {
      this.settle(this.failure ?? toSwitchyardError(err));
      return;
    }
    if (this.complete) return;
    // Mid-body: the pipeline sees a body that closed before it was complete and cuts the client off.
    if ((err as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT') this.ctx.error ??= new SwitchyardError('SY_ERR_UPSTREAM_IDLE_TIMEOUT', undefined, { cause: err });
    this.destroy();
  }

  // ---- the body stream ----

  override _read(): void {
    if (this.paused) {
      this.paused = false;
      this.resumeUpstream!();
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (!this.complete && !this.failure) {
      this.failure = new SwitchyardError('SY_ERR_CLIENT_ABORTED');
      this.abortUpstream?.(this.failure);
    }
    callback(err);
  }

  private endBody(): void {
    this.complete = true;
    this.push(null);
  }

  private settle(err: SwitchyardError): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(err);
  }
}

/**
 * The request body to stream upstream: the client's request itself, or a byte-counting pass-through
 * when a size limit applies and no Content-Length was there to check up front.
 */
function streamedBody(ctx: RequestContext, exchange: Exchange): Readable {
  const limit = ctx.maxBodySize;
  if (limit === 0 || ctx.req.headers['content-length'] !== undefined) return ctx.req;
  let seen = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > limit) {
        exchange.abort(new SwitchyardError('SY_ERR_BODY_TOO_LARGE', undefined, { details: { limit } }));
        done();
        return;
      }
      done(null, chunk);
    },
  });
  return ctx.req.pipe(counted);
}

/**
 * `ctx.outgoing.headers` as undici takes them, in one pass: a flat name/value list. undici frames
 * the body itself and refuses framing and connection headers it did not write; `Expect` was
 * already answered on this hop (node:http sends the client its 100 Continue), and undici cannot
 * wait for an upstream's; Host stays the upstream's (undici's default, or the name a member dialled
 * by address answers to) unless the route preserves it.
 */
function outgoingHeaders(headers: IncomingHttpHeaders, preserveHost: boolean, buffered: boolean, authority: string | undefined): string[] {
  const flat: string[] = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    switch (name) {
      case 'host':
        if (!preserveHost) continue;
        break;
      case 'content-length':
        // A buffered body is sent with its own length, which undici writes.
        if (buffered) continue;
        break;
      case 'transfer-encoding': case 'connection': case 'keep-alive': case 'upgrade': case 'expect':
      // The other engine's private marker: dropped here too, so a route behaves the same on either.
      case EMPTY_QUERY_MARK:
        continue;
    }
    if (typeof value === 'string') flat.push(name, value);
    else for (const item of value) flat.push(name, item);
  }
  if (authority !== undefined && !preserveHost) flat.push('host', authority);
  return flat;
}

/** The upstream's base path (`https://api.example.com/v1`) joined with the request target. */
function joinPath(base: string, path: string): string {
  if (base === '/') return path;
  return base.endsWith('/') && path.startsWith('/') ? base + path.slice(1) : base + path;
}

/**
 * Raw header lines to the object node:http would give (lower-cased names, repeats as arrays),
 * end-to-end headers only. Hop-by-hop ones are left out while building rather than deleted after:
 * a delete turns the object into a slow dictionary for everyone who reads it later. Names come
 * from undici's own table of known headers, already lower-cased and interned, so the common ones
 * cost no string made and no lookup as a property key.
 */
function parseHeaders(raw: (Buffer | string)[], response?: { trailersAnnounced: boolean }): IncomingHttpHeaders {
  const headers: Record<string, string | string[]> = {};
  let listed: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = headerNameToString(raw[i]!);
    if (IS_HOP_BY_HOP.has(name)) {
      if (name === 'connection') listed = listed === undefined ? latin1(raw[i + 1]!) : `${listed}, ${latin1(raw[i + 1]!)}`;
      else if (name === 'trailer' && response) response.trailersAnnounced = true;
      continue;
    }
    const value = latin1(raw[i + 1]!);
    const previous = headers[name];
    if (previous === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
    else if (typeof previous === 'string') headers[name] = [previous, value];
    else previous.push(value);
  }
  const named = namedByConnection(listed, false);
  if (named !== undefined) for (const name of named) delete headers[name];
  return headers as IncomingHttpHeaders;
}

function latin1(value: Buffer | string): string {
  return typeof value === 'string' ? value : value.toString('latin1');
}

function toSwitchyardError(err: Error & { code?: string }): SwitchyardError {
  if (err instanceof SwitchyardError) return err;
  return new SwitchyardError(undiciCode(err), undefined, { cause: err });
}

function undiciCode(err: Error & { code?: string }): ErrorCode {
  // undici's parser errors usually carry no code (it looks the llhttp error number up in a map keyed
  // by name), so the name is what says the upstream spoke something other than HTTP.
  if (err.name === 'HTTPParserError') return 'SY_ERR_UPSTREAM_BAD_RESPONSE';
  switch (err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT': return 'SY_ERR_UPSTREAM_CONNECT_TIMEOUT';
    case 'UND_ERR_HEADERS_TIMEOUT': return 'SY_ERR_UPSTREAM_TIMEOUT';
    case 'UND_ERR_BODY_TIMEOUT': return 'SY_ERR_UPSTREAM_IDLE_TIMEOUT';
    case 'UND_ERR_HEADERS_OVERFLOW': case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH': return 'SY_ERR_UPSTREAM_BAD_RESPONSE';
    default: return codeFor(err);
  }
}
