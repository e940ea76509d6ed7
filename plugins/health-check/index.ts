// Health checks: probes each upstream on an interval (active) and watches real traffic (passive);
// an upstream that fails is taken out of rotation until it answers well again.
import { definePlugin, observeAttempts, type PluginApi } from '../../core/index.js';
import { HealthChecker, type HealthCheckOptions, type Watch } from './checker.js';
import { schema } from './schema.js';

const NAME = 'health-check';

export default definePlugin({
  name: NAME,
  schema,
  setup(api, options: HealthCheckOptions) {
    const checker = new HealthChecker(api, options);
    checker.followRoutes();
    if (options.passive.enabled) {
      observeAttempts(api, { failureStatuses: options.passive.statuses }, (ctx, outcome) => checker.onAttempt(ctx, outcome));
    }
    listAtAdmin(api, () => checker.listed());
    return () => checker.dispose();
  },
});

/** One GET /health-checks route lists the upstreams of every instance of this config. */
function listAtAdmin(api: PluginApi, list: () => Watch[]): void {
  const lists = api.shared('lists', () => {
    const all = new Set<() => Watch[]>();
    api.admin({
      method: 'GET',
      path: '/health-checks',
      public: true,
      handler: () => ({ status: 200, json: { upstreams: [...all].flatMap((listed) => listed()).map(describe) } }),
    });
    return all;
  });
  lists.add(list);
}

function describe(watch: Watch): Record<string, unknown> {
  return {
    route: watch.route,
    id: watch.upstream.id,
    name: watch.upstream.name,
    healthy: watch.down === undefined,
    reason: watch.reason ?? null,
    consecutive: { ok: watch.okStreak, failed: watch.failStreak, passiveFailures: watch.passiveFailures },
    lastCheck: watch.lastCheck ?? null,
  };
}
