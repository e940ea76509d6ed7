// Load balancing: picks the upstream for each request (round robin, weights, hashing, latency…),
// skipping unhealthy and full upstreams; upstreams can be added, changed and drained at run time.
import { balancerTables, definePlugin } from '../../core/index.js';
import { registerAdmin, type BalancedRoutes } from './admin.js';
import { Balancer, type BalancerOptions } from './balancer.js';
import { schema } from './schema.js';

const NAME = 'balancer';

export default definePlugin({
  name: NAME,
  schema,
  async setup(api, options: BalancerOptions) {
    const balancer = new Balancer(api, options);
    await balancer.loadTables();

    api.hooks.selectUpstream.tap(NAME, (ctx) => balancer.select(ctx));
    api.hooks.done.tap(NAME, (ctx) => balancer.onDone(ctx));
    api.health.on('change', balancer.onHealthChange);
    balancer.startRefreshing();

    // Every instance's routes, for the balancer's own admin routes and, through the documented
    // meeting point (published.ts), for plugins that manage upstreams (go-proxy-admin).
    const own = api.shared('routes', (): BalancedRoutes => new Map());
    const published = balancerTables(api);
    for (const route of balancer.routes) {
      own.set(route.name, route);
      published.set(route.name, route);
    }
    registerAdmin(api, own);

    return () => {
      balancer.dispose();
      api.health.off('change', balancer.onHealthChange);
    };
  },
});
