// The part of the balancer's published routes this plugin reads. Plugins never import each other:
// the balancer documents the meeting point (plugins/balancer/README.md, "For other plugins") and
// fills it; this plugin only reads and calls what is declared here.

/** The `api.shared` key the balancer publishes its routes at. */
export const BALANCER_TABLES = '@balancer.tables';

/** Route name → balanced route; empty when no balancer is configured. */
export type BalancerTables = Map<string, BalancedRoute>;

/** Bad input throws `SY_ERR_BAD_REQUEST`, an unknown upstream `SY_ERR_ADMIN_NOT_FOUND`; `ref` is an upstream's id, name or URL. */
export interface BalancedRoute {
  readonly name: string;
  readonly algorithm: string;
  upstreams(): UpstreamView[];
  upstream(ref: string): UpstreamView;
  add(upstream: unknown): Promise<string>;
  change(ref: string, patch: unknown): Promise<string>;
  disconnect(ref: string): Promise<string>;
  remove(ref: string): Promise<string>;
  stats(ref: string | null): unknown[];
  report(ref: string, figures: unknown): string[];
}

/** An upstream as the balancer shows it: the fields read here (the listing passes on the rest as it is). */
export interface UpstreamView {
  id: string;
  name: string;
  url: string;
  meta: Record<string, unknown>;
  healthy: boolean;
  healthSince: number | null;
  active: boolean;
  draining: boolean;
  priority: number;
  inFlight: number;
  weights: { configured: number };
  ewmaMs: number | null;
  requests: number;
  failures: number;
}
