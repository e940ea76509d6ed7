// The contract between the pipeline and whatever sends requests upstream. Two engines keep it:
// `http-proxy` (core/forward.ts, on http-proxy-3 and node:http agents) and `undici`
// (core/forward-undici.ts, on undici pools). The pipeline never learns which one ran.
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { RequestContext } from './context.js';
import type { Upstream } from './types.js';

export type EngineName = 'undici' | 'http-proxy';

export const ENGINE_NAMES: readonly EngineName[] = ['undici', 'http-proxy'];

/** An upstream's response once its head arrived. */
export interface UpstreamResponse {
  readonly status: number;
  /**
   * The end-to-end headers only: the engine leaves out the hop-by-hop ones and those `Connection`
   * names. Lower-cased names; a repeated header is an array (every Set-Cookie apart). This object
   * is the pipeline's to keep: it goes to the client as it is, uncopied.
   */
  readonly headers: IncomingHttpHeaders;
  /** The upstream sent `Trailer` (left out of `headers`): trailers may follow the body (RFC 9110 §6.6.2). */
  readonly trailersAnnounced: boolean;
  /** The body as it arrives. Destroying it aborts the upstream request. */
  readonly body: Readable;
  /** True once the whole body arrived; still false after the body 'close'd means it was cut off. */
  readonly complete: boolean;
  /** The upstream's trailers, known once the body ended (empty when it sent none). */
  readonly trailers: IncomingHttpHeaders;
}

export interface ForwardEngine {
  /**
   * Sends `ctx.outgoing` to `ctx.upstream` and resolves once the response head arrived. Rejects
   * with a SwitchyardError: SY_ERR_UPSTREAM_* for the upstream's failures and timeouts,
   * SY_ERR_CLIENT_ABORTED when the client went away first, SY_ERR_BODY_TOO_LARGE when a streamed
   * body outgrew server.limits.maxBodySize. A client that goes away later aborts the request too
   * (an engine that cannot see that by itself sets `ctx.inFlight`, which the pipeline aborts).
   */
  request(ctx: RequestContext): Promise<UpstreamResponse>;
  /**
   * Proxies an upgrade to `ctx.upstream` (core/forward-upgrade.ts). Resolves with the upstream's
   * status once it answered (101: the sockets are spliced; else its answer was relayed). Rejects
   * with a SwitchyardError, having written nothing to the client, when the upstream gave no answer.
   */
  upgrade(ctx: RequestContext, socket: Duplex, head: Buffer): Promise<number>;
  /** Closes pooled connections. */
  close(): Promise<void> | void;
  /**
   * Closes the pooled connections to `origin` once the requests on them ended; later requests
   * open fresh ones (a balancer's `disconnect`).
   */
  closeIdle(origin: string): Promise<void> | void;
}

/** Keep-alive pool sizes per upstream origin (server.pool). */
export interface PoolOptions {
  maxSockets: number;
  maxFreeSockets: number;
}

/**
 * The host name an upstream dialled by address answers to (Upstream.authority without its port):
 * the TLS server name its certificate is checked against. Undefined when the URL names the host.
 */
export function authorityHostname(upstream: Upstream): string | undefined {
  return upstream.authority === undefined ? undefined : new URL(`http://${upstream.authority}`).hostname;
}
