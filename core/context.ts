// The one object a request carries through every stage: what came in, what the pipeline decided,
// what goes out, timings, and scratch space for plugins.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Transform } from 'node:stream';
import type { Logger } from 'pino';
import type { ClientIpResolver } from './client-ip.js';
import { errorSpec, SwitchyardError } from './errors.js';
import { SentBodyCopy, type SentListener } from './sent-body.js';
import { NO_SPAN, type RequestSpan } from './span.js';
import type { Reply, Route, Upstream } from './types.js';

/** What a context takes from the pipeline it runs on. */
export interface ContextSettings {
  readonly logger: Logger;
  /** The largest body readBody() buffers by default. */
  readonly maxBufferedBody: number;
  /** The largest request body accepted at all (server.limits.maxBodySize); 0 = no limit. */
  readonly maxBodySize: number;
  readonly clientIp: ClientIpResolver;
}

/** The request as it will be sent upstream; `preRequest` taps may change any of it. */
export interface OutgoingRequest {
  method: string;
  /** Path and query exactly as they will be sent, e.g. `/v1/items?x=1`. */
  path: string;
  headers: IncomingHttpHeaders;
  /** Set when a plugin buffered the body with `ctx.readBody()`; sent instead of the stream. */
  body?: Buffer;
}

/** @internal how the core readies `outgoing` for a route (core/request.ts) */
export type OutgoingPreparer = (ctx: RequestContext, outgoing: OutgoingRequest, route: Route) => void;

/** The response head as it will be sent to the client; `postResponse` taps may change it. */
export interface ResponseHead {
  status: number;
  headers: OutgoingHttpHeaders;
}

/**
 * Who is asking, as an auth plugin established it (`api-key`, `basic-auth`, a custom one). Limits
 * count per consumer, the access log names it. Never a secret: a key's name, not the key.
 */
export interface Consumer {
  /** Stable across requests: what limits count by (e.g. `api-key:ci`, `basic-auth:alice`). */
  readonly id: string;
  /** For people: a key's configured name, a user name. */
  readonly name?: string;
  /** The plugin that established it. */
  readonly source: string;
}

/** What `ctx.refuse()` may change of a declared error's answer. */
export interface RefuseOptions {
  /** Another status than the declared one (a `rejectedCode` option). */
  status?: number;
  /** Another message than the declared one (a `rejectedMsg` option). */
  message?: string;
  headers?: OutgoingHttpHeaders;
  /** Extra facts for the client, under `details` (never secrets). */
  details?: Record<string, unknown>;
}

/** Milliseconds since the request arrived (performance.now() based). */
export interface Timings {
  routed?: number;
  upstreamStart?: number;
  /** The upstream connection was ready and the request went out on it: at once on a pooled one, after connecting on a new one. */
  connected?: number;
  firstByte?: number;
  end?: number;
}

/**
 * The request context. Plugins read `req`, `route`, `upstream`; change `outgoing` in `preRequest`
 * and `response` in `postResponse`; keep per-request data in `scratch(pluginName)`.
 *
 * @example
 * api.hooks.preRequest.tap('stamp', (ctx) => { ctx.outgoing.headers['x-stamp'] = 'yes'; });
 */
export class RequestContext {
  readonly id: string;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The request target (path and query) as the client sent it, in origin-form and without dot segments (core/request-head.ts). */
  readonly url: string;
  /** The request path without its query string. */
  readonly pathname: string;
  /** Whether the client sent a body (so a retry can only resend it if it was buffered). */
  readonly hasBody: boolean;
  /** performance.now() when the request arrived; timings are relative to it. */
  readonly startedAt = performance.now();
  readonly timings: Timings = {};
  route: Route | undefined;
  /** The upstream of the current attempt. */
  upstream: Upstream | undefined;
  /** Every upstream tried so far, in order (retries append). */
  readonly tried: Upstream[] = [];
  response: ResponseHead | undefined;
  /** The failure that ended or interrupted this request, if any. */
  error: SwitchyardError | undefined;
  /** Set when a stage answered instead of an upstream: which stage. */
  answeredBy: string | undefined;
  /** Bytes written to the client for this response (head and body), known at `done`. */
  bytesSent = 0;
  /** Who is asking, set by an auth plugin in `access`; see Consumer. */
  consumer: Consumer | undefined;
  /** True for a request a plugin made with `api.inject()`, not a client. */
  injected = false;
  /**
   * The request's trace span, for attributes and events (see core/span.ts): a tracing plugin's
   * span when it records this request, else NO_SPAN, which records nothing.
   */
  span: RequestSpan = NO_SPAN;
  /** The trace this request is part of, set by a tracing plugin; the access log prints it beside the request id. */
  traceId: string | undefined = undefined;

  private readonly settings: ContextSettings;
  private childLogger: Logger | undefined;
  private realIp: string | undefined;
  // A plain object, not a Map: the same few plugin names on every request give it one shape, and
  // it costs less to make than a Map's hash table.
  private scratchSpace: Record<string, unknown> | undefined;
  /** @internal true while beforeSend taps run, and after one of them failed (core/send.ts) */
  sendFailed = false;
  /** @internal body transforms added in postResponse or beforeSend */
  responseTransforms: Transform[] | undefined;
  /** @internal a transform asked for the head to wait for the body's first output byte (core/send.ts) */
  headWithOutput = false;
  /** @internal who wants the response as sent (keepSentResponse) */
  sentListener: { maxBytes: number; listener: SentListener } | undefined;
  /** @internal the upstream request in flight, for an engine that wants to hear when the client left */
  inFlight: { abort(err: SwitchyardError): void } | undefined;

  constructor(req: IncomingMessage, res: ServerResponse, id: string, settings: ContextSettings) {
    this.req = req;
    this.res = res;
    this.id = id;
    this.settings = settings;
    const url = req.url ?? '/';
    this.url = url;
    const query = url.indexOf('?');
    this.pathname = query === -1 ? url : url.slice(0, query);
    const length = req.headers['content-length'];
    this.hasBody = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  }

  private outgoingRequest: OutgoingRequest | undefined;
  private pendingOutgoing: { prepare: OutgoingPreparer; route: Route } | undefined;

  /**
   * The request as it will go upstream. Made when first read: a request answered before it is
   * forwarded (a cache hit, a refusal in `access`) that no plugin asked about never copies the
   * client's headers.
   */
  get outgoing(): OutgoingRequest {
    let outgoing = this.outgoingRequest;
    if (outgoing === undefined) {
      outgoing = this.outgoingRequest = { method: this.req.method ?? 'GET', path: this.url, headers: this.req.headers };
      const pending = this.pendingOutgoing;
      if (pending !== undefined) {
        this.pendingOutgoing = undefined;
        pending.prepare(this, outgoing, pending.route);
      }
    }
    return outgoing;
  }

  /**
   * @internal The core's preparation of `outgoing` for the route (path, hop-by-hop, X-Forwarded):
   * done now when something has read `outgoing` already, else on the first read.
   */
  prepareOutgoing(prepare: OutgoingPreparer, route: Route): void {
    if (this.outgoingRequest !== undefined) prepare(this, this.outgoingRequest, route);
    else this.pendingOutgoing = { prepare, route };
  }

  /** A logger whose lines carry this request's id (made on first use: most requests never log). */
  get log(): Logger {
    this.childLogger ??= this.settings.logger.child({ requestId: this.id });
    return this.childLogger;
  }

  /**
   * The client's address: the socket's peer, or — when that peer is one of
   * `server.trustedProxies` — the address from `server.realIpHeader`.
   */
  get clientIp(): string {
    this.realIp ??= this.settings.clientIp.resolve(this.req);
    return this.realIp;
  }

  /** True when the direct peer is one of `server.trustedProxies`, whose forwarding headers are believed. */
  get fromTrustedProxy(): boolean {
    return this.settings.clientIp.trustsPeer(this.req);
  }

  /** Extra fields plugins add to this request's access log line; see logField(). */
  logFields: Record<string, unknown> | undefined;

  /**
   * Adds a field to this request's access log line (who asked: an API key's name, a user name).
   * Never a secret.
   */
  logField(name: string, value: unknown): void {
    (this.logFields ??= {})[name] = value;
  }

  /** @internal what setResponseHeader() asked for, by lower-case name */
  proxyResponseHeaders: OutgoingHttpHeaders | undefined;

  /**
   * Puts a header on whatever answer this request gets (the upstream's response, a plugin's Reply,
   * a cache hit, an error), over any value of that name the answer brings, when its head is
   * written. For what the proxy itself stands for: its limits, its policies, its name. Set in
   * `access` so refusals carry it too. The cache never stores it: a hit carries this request's
   * value, not the one of the request that filled the cache.
   */
  setResponseHeader(name: string, value: string | number | string[]): void {
    (this.proxyResponseHeaders ??= {})[name.toLowerCase()] = value;
  }

  /** setResponseHeader() for each of `headers`. */
  setResponseHeaders(headers: Readonly<Record<string, string>>): void {
    for (const name in headers) this.setResponseHeader(name, headers[name]!);
  }

  /** Milliseconds since the request arrived. */
  elapsed(): number {
    return performance.now() - this.startedAt;
  }

  /**
   * The answer for a refusal with a declared code: the core's JSON shape `{ error, code,
   * requestId }` with the code's status. The code is the core's or one a plugin declared with
   * `definePlugin({ errors })`.
   *
   * @example api.hooks.access.tap('office-hours', (ctx) => (closed() ? ctx.refuse('OFFICE_ERR_CLOSED') : undefined));
   */
  refuse(code: string, options?: RefuseOptions): Reply {
    const spec = errorSpec(code);
    if (spec === undefined) throw new Error(`error code ${code} is neither the core's nor declared by a plugin (definePlugin({ errors }))`);
    const status = options?.status ?? spec.status;
    this.span.addEvent('switchyard.refused', { 'switchyard.error.code': code, 'http.response.status_code': status });
    const json: Record<string, unknown> = { error: options?.message ?? spec.message, code, requestId: this.id };
    if (options?.details !== undefined) json.details = options.details;
    return { status, headers: options?.headers, json };
  }

  /** Per-plugin scratch space for this request, created on first use. */
  scratch<T>(plugin: string, init: () => T): T {
    this.scratchSpace ??= {};
    let value = this.scratchSpace[plugin] as T | undefined;
    if (value === undefined) {
      value = init();
      this.scratchSpace[plugin] = value;
    }
    return value;
  }

  /**
   * Buffers the request body (at most `limit` bytes, default server.maxBufferedBody) so a plugin
   * can read or replace it; the buffered body is what gets forwarded. Too large answers 413.
   */
  async readBody(limit = this.settings.maxBufferedBody): Promise<Buffer> {
    if (this.outgoing.body) return this.outgoing.body;
    if (this.settings.maxBodySize > 0) limit = Math.min(limit, this.settings.maxBodySize);
    const declared = Number(this.req.headers['content-length'] ?? 0);
    if (declared > limit) throw new SwitchyardError('SY_ERR_BODY_TOO_LARGE', undefined, { details: { limit } });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of this.req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw new SwitchyardError('SY_ERR_BODY_TOO_LARGE', undefined, { details: { limit } });
      chunks.push(chunk);
    }
    this.outgoing.body = Buffer.concat(chunks, size);
    return this.outgoing.body;
  }

  /**
   * Adds a transform the response body streams through (postResponse or beforeSend). Content-Length is
   * dropped unless the transform promises to pass every byte through unchanged (a tee that
   * copies the body for a cache, say). With `headWithOutput`, the head is not written before the
   * transforms' first output byte: a transform that fails before emitting anything (a decoder
   * meeting a corrupt body) gets the client a JSON error answer rather than a cut connection.
   */
  transformResponseBody(transform: Transform, options?: { preservesLength?: boolean; headWithOutput?: boolean }): void {
    (this.responseTransforms ??= []).push(transform);
    if (this.response && !options?.preservesLength) delete this.response.headers['content-length'];
    if (options?.headWithOutput) this.headWithOutput = true;
  }

  /**
   * Asks for the upstream's response as the client got it: once its body has passed every
   * transform (those `beforeSend` taps added included: an encoder's output, say) and ended whole,
   * `listener` gets the final status, the head as written (less the headers the proxy stands for,
   * `setResponseHeader`) and the body. Not called for a body over `maxBytes`, one cut short, or a
   * HEAD. One listener per request (a later call replaces it); from `cacheLookup` to `postResponse`.
   */
  keepSentResponse(maxBytes: number, listener: SentListener): void {
    this.sentListener = { maxBytes, listener };
  }

  /** @internal the transform that hands keepSentResponse() its copy, last in the chain */
  sentCopy(): Transform | undefined {
    const wanted = this.sentListener;
    if (wanted === undefined || this.req.method === 'HEAD') return undefined;
    return new SentBodyCopy(wanted.maxBytes, () => {
      const { status, headers } = this.response!;
      const own = this.proxyResponseHeaders;
      if (own === undefined) return { status, headers };
      const kept: OutgoingHttpHeaders = {};
      for (const name in headers) if (own[name] === undefined) kept[name] = headers[name];
      return { status, headers: kept };
    }, wanted.listener);
  }

  /** The body limit the forwarder enforces on a streamed body without Content-Length; 0 = none. */
  get maxBodySize(): number {
    return this.settings.maxBodySize;
  }
}
