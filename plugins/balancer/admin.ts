// The balancer's admin routes: what every upstream is doing (GET /upstream, GET /stats/upstream),
// changing upstreams at run time (persisted), and upstreams reporting their own load (POST /report).
import type { PluginApi, Reply } from '../../core/index.js';
import { badRequest, isObject, loadFigures, notFound, type BalancedRoute } from './balanced-route.js';

/** Route name → the balanced route, for every balancer instance of this config. */
export type BalancedRoutes = Map<string, BalancedRoute>;

/** Registers the admin routes once per applied config; every instance's routes are in `balanced`. */
export function registerAdmin(api: PluginApi, balanced: BalancedRoutes): void {
  api.shared('admin-routes', () => {
    api.admin({ method: 'GET', path: '/upstream', public: true, handler: () => ({ status: 200, json: { routes: overview(api, balanced) } }) });
    api.admin({ method: 'GET', path: '/stats/upstream', public: true, handler: (req) => stats(balanced, req.query.get('route'), req.query.get('id')) });
    api.admin({
      method: 'POST', path: '/upstream/:route',
      handler: async (req) => {
        const route = routeOf(balanced, req.params.route!);
        return answer(201, route, await route.add(await req.json()));
      },
    });
    api.admin({
      method: 'PATCH', path: '/upstream/:route/:upstream',
      handler: async (req) => {
        const route = routeOf(balanced, req.params.route!);
        return answer(200, route, await route.change(req.params.upstream!, await req.json()));
      },
    });
    api.admin({
      method: 'POST', path: '/upstream/:route/:upstream/drain',
      handler: async (req) => {
        const route = routeOf(balanced, req.params.route!);
        return answer(200, route, await route.change(req.params.upstream!, { draining: true }));
      },
    });
    api.admin({
      method: 'POST', path: '/upstream/:route/:upstream/disconnect',
      handler: async (req) => {
        const route = routeOf(balanced, req.params.route!);
        return answer(200, route, await route.disconnect(req.params.upstream!));
      },
    });
    api.admin({
      method: 'DELETE', path: '/upstream/:route/:upstream',
      handler: async (req) => {
        const route = routeOf(balanced, req.params.route!);
        return { status: 200, json: { route: route.name, removed: await route.remove(req.params.upstream!) } };
      },
    });
    api.admin({ method: 'POST', path: '/report', handler: async (req) => report(balanced, await req.json()) });
    return {};
  });
}

function answer(status: number, route: BalancedRoute, id: string): Reply {
  return { status, json: { route: route.name, upstream: route.describe(id) } };
}

function overview(api: PluginApi, balanced: BalancedRoutes): unknown[] {
  return api.config.routes.map((config) => {
    const route = balanced.get(config.name);
    if (route) return route.overview();
    // A route without a balancer: health is all there is to say.
    return {
      name: config.name,
      algorithm: null,
      upstreams: config.upstreams.map((u) => {
        const upstream = api.createUpstream(u, config.name);
        const health = api.health.get(upstream);
        return { id: upstream.id, name: upstream.name, healthy: health.healthy, healthReason: health.reason ?? null };
      }),
    };
  });
}

function stats(balanced: BalancedRoutes, routeName: string | null, ref: string | null): Reply {
  const routes = routeName ? [routeOf(balanced, routeName)] : [...balanced.values()];
  const rows = routes.flatMap((route) => route.stats(ref));
  if (ref !== null && rows.length === 0) throw notFound(`no balanced upstream "${ref}"${routeName ? ` on route ${routeName}` : ''}`);
  return { status: 200, json: { upstreams: rows } };
}

function report(balanced: BalancedRoutes, body: unknown): Reply {
  if (!isObject(body) || typeof body.upstream !== 'string') throw badRequest('give {"upstream": "<id, name or URL>", "cpu"?: 0..1, "memory"?: 0..1, "load"?: 0..1, "route"?: "<name>"}');
  const { upstream, route, ...figures } = body;
  // Checked before the route is looked up, so a bad figure is a 400 whatever the route.
  loadFigures(figures);
  const routes = route === undefined ? [...balanced.values()] : [routeOf(balanced, String(route))];
  const updated = routes.flatMap((r) => r.report(upstream, figures));
  if (updated.length === 0) throw notFound(`no balanced upstream "${upstream}"`);
  return { status: 200, json: { updated } };
}

function routeOf(balanced: BalancedRoutes, name: string): BalancedRoute {
  const route = balanced.get(name);
  if (!route) throw notFound(`no balanced route "${name}" (balanced: ${[...balanced.keys()].join(', ') || 'none'})`);
  return route;
}
