// Proxies of the same kind in a chain: every response says which proxy and version answered; an
// upstream whose responses say so too is remembered as a nested proxy (GET /upstream/nested), and
// a cache clear here is passed on to those proxies' /cache/clear, loop-safe.
import { readFileSync } from 'node:fs';
import { cacheClearListeners, definePlugin, Stage, type ClearListener, type Upstream } from '../../core/index.js';
import { cascadeClear, type Nested } from './cascade.js';

const NAME = 'proxy-chain';

const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const header = (fallback: string) => ({ type: 'string', pattern: '^[A-Za-z0-9-]+$', default: fallback } as const);

const schema = {
  type: 'object',
  properties: {
    header: header('X-TMDB-Proxy'),
    value: { type: 'string', minLength: 1, default: 'switchyard', description: 'What this proxy says it is.' },
    versionHeader: header('X-TMDB-Proxy-Version'),
    version: { type: 'string', minLength: 1, description: "Defaults to Switchyard's version." },
    detect: { type: 'boolean', default: true, description: 'Remember upstreams whose responses carry `header`, and cascade clears to them.' },
    adminPath: { type: 'string', pattern: '^/', default: '/upstream/nested', description: 'Public admin route listing the nested proxies.' },
    cascade: {
      type: 'object',
      default: {},
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean', default: true },
        path: { type: 'string', pattern: '^/', default: '/cache/clear', description: "The nested proxy's clear route." },
        hopHeader: header('X-Cache-Clear-Hops'),
        maxHops: { type: 'integer', minimum: 1, maximum: 32, default: 4, description: 'A clear that already went through this many proxies goes no further.' },
        adminKey: { type: 'string', minLength: 1, description: "The nested proxies' admin key; default: the key this clear was made with." },
        timeoutMs: { type: 'integer', minimum: 1, default: 10000 },
      },
    },
  },
  additionalProperties: false,
} as const;


export default definePlugin({
  name: NAME,
  schema,
  setup(api, options) {
    const headerName = options.header.toLowerCase();
    const versionName = options.versionHeader.toLowerCase();
    const version = options.version ?? VERSION;
    const nested = api.state(() => new Map<string, Nested>(), 'nested');
    const seenClears = api.state(() => new Set<string>(), 'seen-clears');

    // On every answer (refusals, cache hits and errors too), over a nested proxy's own.
    api.hooks.access.tap({ name: NAME, stage: Stage.AUTH - 1 }, (ctx) => {
      ctx.setResponseHeader(headerName, options.value);
      ctx.setResponseHeader(versionName, version);
      return undefined;
    });

    if (options.detect) {
      api.hooks.postResponse.tap({ name: NAME, stage: Stage.AUTH }, (ctx) => {
        const headers = ctx.response!.headers;
        const said = headers[headerName];
        if (said !== undefined && ctx.upstream) remember(nested, ctx.upstream, ctx.route?.name ?? '', String(said), headers[versionName]);
      });
    }

    api.admin({
      method: 'GET', path: options.adminPath, public: true,
      handler: () => ({ status: 200, json: { nested: [...nested.values()].map(({ origin: _origin, ...shown }) => shown) } }),
    });

    if (!options.detect || !options.cascade.enabled) return undefined;
    const listener: ClearListener = (event) => cascadeClear(event, [...nested.values()], seenClears, options.cascade, api.log);
    const listeners = cacheClearListeners(api);
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  },
});

function remember(nested: Map<string, Nested>, upstream: Upstream, route: string, value: string, version: string | string[] | number | undefined): void {
  const now = new Date().toISOString();
  const known = nested.get(upstream.id);
  if (known) {
    known.version = version === undefined ? known.version : String(version);
    known.kind = value;
    known.lastChecked = now;
    known.checkCount++;
    return;
  }
  nested.set(upstream.id, {
    id: upstream.id, route, name: upstream.name, url: upstream.url, origin: upstream.target.origin,
    kind: value, version: version === undefined ? null : String(version), firstSeen: now, lastChecked: now, checkCount: 1,
  });
}
