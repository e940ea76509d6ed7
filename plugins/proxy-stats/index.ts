// Traffic figures on one public admin route: requests by status class, cache hit ratio (from the
// X-Cache header the cache plugin sets) and, per upstream, requests, failures and mean latency.
import { definePlugin, Stage, type RequestContext } from '../../core/index.js';

const NAME = 'proxy-stats';

const schema = {
  type: 'object',
  properties: {
    path: { type: 'string', pattern: '^/', default: '/stats', description: 'Admin route that answers the figures.' },
    public: { type: 'boolean', default: true, description: 'false: the route needs the admin key.' },
  },
  additionalProperties: false,
} as const;

interface UpstreamFigures {
  route: string;
  requests: number;
  failures: number;
  totalMs: number;
}

/** The keys of `statuses`, made once rather than per request. */
const STATUS_CLASSES = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'];

/** Counters kept in api.state, so a reload does not reset them. */
class Figures {
  readonly since = new Date().toISOString();
  requests = 0;
  readonly statuses: Record<string, number> = {};
  readonly cache = { hits: 0, misses: 0, stale: 0, bypassed: 0 };
  readonly upstreams = new Map<string, UpstreamFigures>();

  record(ctx: RequestContext): void {
    this.requests++;
    const status = ctx.response?.status ?? ctx.res.statusCode;
    const cls = STATUS_CLASSES[Math.floor(status / 100)] ?? `${Math.floor(status / 100)}xx`;
    this.statuses[cls] = (this.statuses[cls] ?? 0) + 1;
    const said = ctx.response?.headers['x-cache'];
    const xCache = said === undefined ? '' : String(said).toUpperCase();
    if (xCache === 'HIT') this.cache.hits++;
    else if (xCache === 'STALE') this.cache.stale++;
    else if (xCache === 'MISS' || xCache === 'EXPIRED') this.cache.misses++;
    else if (xCache === 'BYPASS') this.cache.bypassed++;
    // Only requests an upstream answered count for it; cache hits and refusals never reached one.
    const upstream = ctx.upstream;
    if (!upstream || ctx.tried.length === 0 || xCache === 'HIT') return;
    let figures = this.upstreams.get(upstream.name);
    if (!figures) this.upstreams.set(upstream.name, figures = { route: ctx.route?.name ?? '', requests: 0, failures: 0, totalMs: 0 });
    figures.requests++;
    // Earlier attempts of a retried request failed; the last one failed if it errored or said 5xx.
    figures.failures += ctx.error !== undefined || status >= 500 ? 1 : 0;
    const start = ctx.timings.upstreamStart ?? 0;
    figures.totalMs += Math.max(0, (ctx.timings.firstByte ?? ctx.elapsed()) - start);
  }

  toJSON(): Record<string, unknown> {
    const served = this.cache.hits + this.cache.stale;
    const looked = served + this.cache.misses;
    return {
      since: this.since,
      requests: this.requests,
      statuses: this.statuses,
      cache: { ...this.cache, hitRatio: looked === 0 ? 0 : Math.round((served / looked) * 10000) / 10000 },
      upstreams: [...this.upstreams].map(([name, f]) => ({
        name, route: f.route, requests: f.requests, failures: f.failures,
        meanMs: f.requests === 0 ? 0 : Math.round((f.totalMs / f.requests) * 100) / 100,
      })),
    };
  }
}

export default definePlugin({
  name: NAME,
  schema,
  setup(api, options) {
    const figures = api.state(() => new Figures());
    api.hooks.done.tap({ name: NAME, stage: Stage.OBSERVE }, (ctx) => figures.record(ctx));
    api.admin({ method: 'GET', path: options.path, public: options.public, handler: () => ({ status: 200, json: figures }) });
  },
});
