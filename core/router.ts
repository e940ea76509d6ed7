// The built-in route matcher. Most specific wins, as nginx users expect: an exact `path` beats any
// prefix, a longer `pathPrefix` beats a shorter one, and among equals the config's order decides.
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { resolve } from 'node:path';
import type { RouteConfig, TimeoutsConfig } from './config/schema.js';
import type { Stages } from './stages.js';
import type { Route, Upstream } from './types.js';

/** Turns a route's config into a Route. Plugins that make routes on the fly use it too. */
export function buildRoute(config: RouteConfig, defaults: TimeoutsConfig, baseDir: string, stages?: Stages): Route {
  return {
    name: config.name,
    match: config.match,
    stripPrefix: config.stripPrefix ?? false,
    preserveHost: config.preserveHost ?? false,
    websocket: config.websocket ?? true,
    foreignContent: config.foreignContent ?? false,
    timeouts: { ...defaults, ...config.timeouts } as TimeoutsConfig,
    engine: config.engine,
    // Frozen: the core hands this very list to selectUpstream taps as their candidates.
    upstreams: Object.freeze(config.upstreams.map((upstream) => buildUpstream(config.name, upstream, baseDir))),
    stages,
    // Set by the pipeline once the route's plugins are set up; present on every route, so all
    // have one shape.
    plan: undefined,
    plugins: (config.plugins ?? []).filter((ref) => ref.enabled !== false).map((ref) => ref.name ?? ref.path ?? ''),
  };
}

/** Turns an upstream's config into an Upstream of the named route. */
export function buildUpstream(routeName: string, config: RouteConfig['upstreams'][number], baseDir: string): Upstream {
  const { url, discover } = discoveryOf(config);
  const target = new URL(url);
  const shown = `${target.protocol}//${target.host}${target.pathname === '/' ? '' : target.pathname}`;
  return {
    id: `${routeName}/${shown}`,
    name: config.name ?? shown,
    url: config.url,
    target,
    weight: config.weight ?? 1,
    priority: config.priority ?? 0,
    meta: config.meta ?? {},
    tls: config.tls ? { ca: config.tls.ca ? readFileSync(resolve(baseDir, config.tls.ca), 'utf8') : undefined, insecure: config.tls.insecure ?? false } : undefined,
    ...(discover ? { discover } : {}),
  };
}

/** `dns+http://…` is `http://…` with `discover: dns`, `dns+srv+http://…` with `discover: srv`. */
export function discoveryOf(config: { url: string; discover?: 'dns' | 'srv' }): { url: string; discover: 'dns' | 'srv' | undefined } {
  const scheme = /^dns\+(srv\+)?/.exec(config.url);
  if (!scheme) return { url: config.url, discover: config.discover };
  return { url: config.url.slice(scheme[0].length), discover: scheme[1] ? 'srv' : 'dns' };
}

export class Router {
  private readonly routes: readonly Route[];

  constructor(routes: readonly Route[]) {
    this.routes = routes
      .map((route, order) => ({ route, order, rank: specificity(route) }))
      .sort((a, b) => b.rank - a.rank || a.order - b.order)
      .map(({ route }) => route);
  }

  get all(): readonly Route[] {
    return this.routes;
  }

  match(req: IncomingMessage, pathname: string): Route | undefined {
    for (const route of this.routes) {
      if (matches(route, req, pathname)) return route;
    }
    return undefined;
  }
}

/** `/api` strips from `/api/x?y` to `/x?y`, and from `/api` to `/`. */
export function stripPathPrefix(url: string, prefix: string): string {
  const base = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const rest = url.slice(base.length);
  return rest === '' || rest[0] === '?' ? `/${rest}` : rest;
}

function specificity(route: Route): number {
  const { path, pathPrefix } = route.match;
  if (path !== undefined) return 1_000_000;
  return pathPrefix?.length ?? 0;
}

function matches(route: Route, req: IncomingMessage, pathname: string): boolean {
  const { path, pathPrefix, host, methods } = route.match;
  if (path !== undefined && pathname !== path) return false;
  if (pathPrefix !== undefined && !underPrefix(pathname, pathPrefix)) return false;
  if (methods !== undefined && !methods.includes(req.method ?? '')) return false;
  if (host !== undefined && !hostMatches(req.headers.host, host)) return false;
  return true;
}

function underPrefix(pathname: string, prefix: string): boolean {
  if (!pathname.startsWith(prefix)) return false;
  // `/api` must not match `/apiary`: the prefix has to end at a segment boundary.
  return pathname.length === prefix.length || prefix.endsWith('/') || pathname[prefix.length] === '/';
}

function hostMatches(header: string | undefined, pattern: string): boolean {
  if (header === undefined) return false;
  const host = stripPort(header).toLowerCase();
  const wanted = pattern.toLowerCase();
  if (wanted.startsWith('*.')) return host.endsWith(wanted.slice(1)) && host.length > wanted.length - 1;
  return host === wanted;
}

function stripPort(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}
