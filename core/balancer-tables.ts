// The balancer's routes as other plugins see them: the `balancer` plugin publishes each balanced
// route here, and a plugin that manages its upstreams (go-proxy-admin) reads and calls them.
// Plugins never import each other; this meeting point is the core's, documented in
// plugins/balancer/README.md ("For other plugins"). Change it as you would a public API.
import type { PluginApi } from './plugin.js';

/** The `api.shared` key; use `balancerTables(api)` rather than the key itself. */
export const BALANCER_TABLES = '@balancer.tables';

/** Route name → the route's balanced table; filled by each balancer instance for the routes it serves. */
export type BalancerTables = Map<string, BalancedRouteHandle>;

/** This applied config's balanced routes; either side may ask first (the map starts empty). */
export function balancerTables(api: PluginApi): BalancerTables {
  return api.shared(BALANCER_TABLES, (): BalancerTables => new Map());
}

/**
 * One balanced route. `ref` names an upstream by its id (`<route>/<url>`), name or URL. Bad input
 * throws a SwitchyardError `SY_ERR_BAD_REQUEST` (400), an unknown upstream `SY_ERR_ADMIN_NOT_FOUND`
 * (404); nothing is changed then. Changes persist in the store like the balancer's own admin routes'.
 */
export interface BalancedRouteHandle {
  readonly name: string;
  /** The configured algorithm. */
  readonly algorithm: string;
  /** Every upstream of the route now (the config file's with the runtime changes laid over). */
  upstreams(): UpstreamView[];
  /** One upstream now; throws 404 when the route has none by that reference. */
  upstream(ref: string): UpstreamView;
  /** Adds `{url, name?, weight?, priority?, meta?}`; answers its id. */
  add(upstream: unknown): Promise<string>;
  /** Applies `{weight?, maxConnections?, active?, draining?}`; answers the upstream's id. */
  change(ref: string, patch: unknown): Promise<string>;
  /** No more traffic (`active: false`), and its pooled connections close once their requests ended. */
  disconnect(ref: string): Promise<string>;
  /** Removes it; answers the removed upstream's id. */
  remove(ref: string): Promise<string>;
  /** Per upstream (only those `ref` names, when given): counts and latency percentiles. */
  stats(ref: string | null): UpstreamStatsRow[];
  /** The upstream's own load, `{cpu?, memory?, load?}` each 0–1; answers the ids it applied to (none: `[]`). */
  report(ref: string, figures: unknown): string[];
}

/** An upstream as `GET /upstream` shows it, plus its URL and `meta`. */
export interface UpstreamView {
  id: string;
  name: string;
  source: 'config' | 'runtime';
  healthy: boolean;
  healthReason: string | null;
  /** When its health last changed (epoch ms), or null. */
  healthSince: number | null;
  active: boolean;
  draining: boolean;
  priority: number;
  inFlight: number;
  maxConnections: number;
  weights: { configured: number; base: number | null; dynamic: number | null; effective: number };
  slowStart: number | null;
  alpha: number;
  /** Short-term average time to the response head, ms; null before the first request. */
  ewmaMs: number | null;
  /** `latency`, peak-ewma formula: the cost it compares (ms per unit of weight); null otherwise. */
  cost: number | null;
  /** `latency`: the upstream's share of the route's traffic lately (0–1); null for other algorithms. */
  share: number | null;
  requests: number;
  failures: number;
  report: { cpu?: number; memory?: number; load?: number; at: number } | null;
  url: string;
  meta: Record<string, unknown>;
}

export interface UpstreamStatsRow {
  route: string;
  id: string;
  name: string;
  requests: number;
  failures: number;
  inFlight: number;
  latencyMs: { p50: number | null; p95: number | null; p99: number | null };
}
