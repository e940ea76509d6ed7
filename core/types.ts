// Shapes shared by the core and plugins: routes, upstreams and the replies a stage may answer with.
import type { OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { RouteMatch, TimeoutsConfig } from './config/schema.js';
import type { EngineName } from './engine.js';
import type { PreparedHead } from './response-head.js';
import type { Plan } from './plan.js';
import type { Stages } from './stages.js';

/** One upstream of a route, ready to forward to. */
export interface Upstream {
  /** `<route>/<url without credentials>`: the key for health and plugin state. */
  readonly id: string;
  /** Shown in logs and admin output (never contains credentials). */
  readonly name: string;
  readonly url: string;
  /** The parsed URL: origin plus optional base path. */
  readonly target: URL;
  readonly weight: number;
  readonly priority: number;
  readonly meta: Readonly<Record<string, unknown>>;
  /** How to trust an https upstream: a CA (PEM text) and/or no verification. */
  readonly tls?: { readonly ca?: string; readonly insecure: boolean };
  /**
   * Set when the host is a name to expand into one member per address (`dns`: A/AAAA records;
   * `srv`: SRV targets). The balancer does that and publishes the members as the route's live set
   * (live-upstreams.ts); without a balancer the upstream is forwarded to as a plain URL.
   */
  readonly discover?: 'dns' | 'srv';
  /**
   * The name (and port) a member dialled by address answers to: sent as Host (unless the route
   * preserves the client's) and as the TLS server name its certificate is checked against. Set by
   * DNS discovery on each member; unset, both come from `target`.
   */
  readonly authority?: string;
}

/** A route: how requests are matched and where they go. Built from the config or by a plugin. */
export interface Route {
  readonly name: string;
  readonly match: RouteMatch;
  readonly stripPrefix: boolean;
  readonly preserveHost: boolean;
  readonly websocket: boolean;
  /**
   * Its answers are other sites' documents (a web proxy), not the gateway's own pages: plugins
   * that set a policy for the gateway's pages (security-headers' X-Frame-Options) leave it out.
   */
  readonly foreignContent: boolean;
  readonly timeouts: TimeoutsConfig;
  /** The forwarding engine for this route; unset: the server's (server.engine). */
  readonly engine?: EngineName;
  readonly upstreams: readonly Upstream[];
  /** Stages tapped by this route's own plugins; absent when it has none. */
  readonly stages?: Stages;
  /** Names of this route's plugins, for admin output. */
  readonly plugins: readonly string[];
  /**
   * The global taps and this route's own, stage by stage (core/plan.ts), set once its plugins
   * are set up; undefined for a route with no plugins of its own, which runs the global plan.
   */
  readonly plan?: Plan;
}

/**
 * An answer a stage gives instead of forwarding (auth refused, cache hit, admin output).
 * Give `json` for a JSON body, or `body` for anything else (a stream is piped).
 *
 * @example return { status: 401, json: { error: 'missing key', code: 'MY_ERR_NO_KEY' } };
 */
export interface Reply {
  status: number;
  headers?: OutgoingHttpHeaders;
  /**
   * Headers checked and serialised once with PreparedHead.of(), for an answer given many times
   * (a cache hit): written as they are, without Node checking each again. `headers` go beside
   * them and win where a name is in both.
   */
  head?: PreparedHead;
  body?: string | Buffer | Uint8Array | Readable;
  json?: unknown;
}
