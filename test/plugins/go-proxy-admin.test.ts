// The go-proxy-admin plugin on its own (the balancer preset's test runs it composed): options
// checking, the Go proxy's paths over a balancer's routes through the `@balancer.tables` meeting
// point, with one or two balanced routes or none, and the config paths.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ADMIN_KEY, fleetConfig, many, startFleet, tally, type Fleet } from '../helpers/fleet.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';


let fleet: Fleet;

before(async () => {
  fleet = await startFleet(['a', 'b', 'c']);
});
after(() => fleet.close());

const goProxyAdmin = (options: Record<string, unknown> = {}) => ({ name: 'go-proxy-admin', options });
const balancer = (options: Record<string, unknown> = {}) => ({ name: 'balancer', options });

async function withYard(config: Record<string, unknown>, run: (call: Caller, sy: RunningSwitchyard) => Promise<void>): Promise<void> {
  const sy = await startSwitchyard(config);
  try {
    await run(caller(sy.url), sy);
  } finally {
    await sy.stop();
  }
}

type Caller = (method: string, path: string, body?: unknown, key?: string | null) => Promise<{ status: number; json: Record<string, unknown> }>;

function caller(base: string): Caller {
  return async (method, path, body, key = ADMIN_KEY) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { ...(key ? { 'x-api-key': key } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : null) as Record<string, unknown> };
  };
}

interface BackendListing { upstream: string; algorithm: string; backends: Record<string, unknown>[] }
interface UpstreamRow { url?: string; name: string; weights: { configured: number }; active: boolean; report: { cpu?: number } | null }

const upstreamsOf = async (call: Caller, route = 'main') =>
  ((await call('GET', '/upstream')).json.routes as { name: string; upstreams: UpstreamRow[] }[]).find((r) => r.name === route)!.upstreams;

describe('go-proxy-admin options (sanity)', { timeout: 60000 }, () => {
  test('an unknown option and an empty configFile are rejected with the path of the option', async () => {
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [balancer()], { globalPlugins: [goProxyAdmin({ configFil: 'x.yaml' })] })), /plugins\[0\]\.options: unknown key "configFil"/);
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [balancer()], { globalPlugins: [goProxyAdmin({ configFile: '' })] })), /plugins\[0\]\.options\.configFile: must NOT have fewer than 1 characters/);
  });

  test('the balancer no longer takes the Go proxy options it used to carry', async () => {
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [balancer({ adminAliases: 'go-proxy' })])), /options: unknown key "adminAliases"/);
  });
});

describe('go-proxy-admin over a balanced route', { timeout: 60000 }, () => {
  test('the backends listing is the balancer\'s own view of each upstream with its url', async () => {
    await withYard(fleetConfig(fleet, [balancer()], { globalPlugins: [goProxyAdmin()] }), async (call) => {
      assert.equal((await call('GET', '/api/v1/backends', undefined, null)).status, 401);
      const listing = (await call('GET', '/api/v1/backends')).json as unknown as BackendListing;
      assert.equal(listing.upstream, 'main');
      assert.equal(listing.algorithm, 'round-robin');
      const own = await upstreamsOf(call);
      assert.deepEqual(listing.backends, own.map((row, i) => ({ ...row, url: fleet.members[i]!.url })));
    });
  });

  test('add, update, disconnect and remove change the balancer\'s table, and traffic follows', async () => {
    const extra = await startFleet(['d']);
    try {
      await withYard(fleetConfig(fleet, [balancer({ algorithm: 'weighted' })], { globalPlugins: [goProxyAdmin()] }), async (call, sy) => {
        const [a, , c] = fleet.urls;
        const d = extra.urls[0]!;
        const added = await call('POST', '/api/v1/backends/add', { url: d, name: 'd', weight: 2 });
        assert.equal(added.status, 201);
        assert.equal((added.json.upstream as UpstreamRow).name, 'd');
        assert.equal('url' in (added.json.upstream as object), false, 'a change answers with the balancer\'s own row');
        assert.equal((await call('PUT', '/api/v1/backends/update', { backend_id: 'b', weight: 3 })).status, 200);
        assert.equal((await call('POST', `/api/v1/backends/disconnect?backend_id=${encodeURIComponent(c!)}`)).status, 200);
        const removed = await call('DELETE', `/api/v1/backends/remove?upstream=main&backend_id=${encodeURIComponent(a!)}`);
        assert.deepEqual(removed.json, { route: 'main', removed: `main/${a}` });

        const own = await upstreamsOf(call);
        assert.deepEqual(own.map((row) => [row.name, row.weights.configured, row.active]), [['b', 3, true], ['c', 1, false], ['d', 2, true]]);
        // Weighted 3:2 over b and d: c is disconnected, a removed.
        assert.deepEqual(tally(await many(sy.url, 10)), { b: 6, d: 4 });
      });
    } finally {
      await extra.close();
    }
  });

  test('bad input answers 400 and an unknown backend 404, changing nothing', async () => {
    await withYard(fleetConfig(fleet, [balancer()], { globalPlugins: [goProxyAdmin()] }), async (call) => {
      const cases: [string, string, unknown, number, RegExp][] = [
        ['PUT', '/api/v1/backends/update', { backend_id: 'b', weight: -1 }, 400, /weight must be a number > 0/],
        ['PUT', '/api/v1/backends/update', { weight: 2 }, 400, /give backend_id/],
        ['PUT', '/api/v1/backends/update', { backend_id: 'zzz', weight: 2 }, 404, /no upstream "zzz"/],
        ['POST', '/api/v1/backends/add', { url: 'ftp://x' }, 400, /url must be an http\(s\) URL/],
        ['POST', '/api/v1/backends/add', { upstream: 'elsewhere', url: 'http://127.0.0.1:1' }, 404, /no balanced route "elsewhere"/],
        ['DELETE', '/api/v1/backends/remove?backend_id=zzz', undefined, 404, /no upstream "zzz"/],
        ['GET', '/api/v1/stats/backend?backend_id=zzz', undefined, 404, /no balanced upstream "zzz"/],
      ];
      for (const [method, path, body, status, message] of cases) {
        const res = await call(method, path, body);
        assert.equal(res.status, status, `${method} ${path}`);
        assert.match(String(res.json.error), message);
      }
      assert.deepEqual((await upstreamsOf(call)).map((row) => [row.name, row.weights.configured, row.active]), [['a', 1, true], ['b', 1, true], ['c', 1, true]]);
    });
  });

  test('a load report in the Go proxy\'s shape or the balancer\'s reaches the upstream; a figure out of range is 400', async () => {
    await withYard(fleetConfig(fleet, [balancer()], { globalPlugins: [goProxyAdmin()] }), async (call) => {
      assert.deepEqual((await call('POST', '/api/v1/report', { upstream: 'main', backend_id: 'a', cpu: 0.5 })).json, { updated: [`main/${fleet.urls[0]}`] });
      assert.deepEqual((await call('POST', '/api/v1/report', { upstream: 'b', memory: 0.25 })).json, { updated: [`main/${fleet.urls[1]}`] });
      const refused = await call('POST', '/api/v1/report', { backend_id: 'c', cpu: 3 });
      assert.equal(refused.status, 400);
      assert.match(String(refused.json.error), /cpu must be a number from 0 to 1/);
      const reports = (await upstreamsOf(call)).map((row) => row.report);
      assert.equal(reports[0]!.cpu, 0.5);
      assert.equal((reports[1] as { memory?: number }).memory, 0.25);
      assert.equal(reports[2], null);
    });
  });

  test('stats and the public health listing count the traffic; the ranking puts an out-of-service backend last', async () => {
    const config = fleetConfig(fleet, [balancer()], { globalPlugins: [goProxyAdmin()], upstreams: [{ meta: { region: 'eu' } }, {}, { priority: 1 }] });
    await withYard(config, async (call, sy) => {
      await many(sy.url, 9);
      const server = (await call('GET', '/api/v1/stats/server')).json;
      assert.deepEqual([server.upstreams, server.backends, server.healthyBackends, server.requests, server.failures, server.inFlight], [1, 3, 3, 9, 0, 0]);
      const backend = (await call('GET', '/api/v1/stats/backend?backend_id=b')).json.upstreams as { id: string; requests: number }[];
      assert.deepEqual(backend.map((row) => [row.id, row.requests]), [[`main/${fleet.urls[1]}`, 3]]);

      assert.equal((await call('POST', '/api/v1/backends/disconnect?backend_id=a')).status, 200);
      const health = await call('GET', '/api/health', undefined, null);
      assert.equal(health.json.status, 'ok');
      assert.deepEqual((await call('GET', '/health', undefined, null)).json, health.json);
      const rows = health.json.backends as { name: string; region: string | null; priority: number; inService: boolean; requests: number; avgLatencyMs: number | null }[];
      assert.deepEqual(rows.map((r) => [r.name, r.region, r.priority, r.inService, r.requests]), [['a', 'eu', 0, false, 3], ['b', null, 0, true, 3], ['c', null, 1, true, 3]]);
      assert.ok(rows.every((r) => typeof r.avgLatencyMs === 'number'));
      const ranking = (await call('GET', '/api/ip-preference', undefined, null)).json.backends as { name: string; rank: number }[];
      assert.equal(ranking.at(-1)!.name, 'a');
      assert.deepEqual(ranking.map((r) => r.rank), [1, 2, 3]);
    });
  });
});

describe('go-proxy-admin with other shapes of config', { timeout: 60000 }, () => {
  test('with two balanced routes the upstream parameter is required, and the answer names them', async () => {
    const config = {
      server: { store: 'memory://', accessLog: false, admin: { key: ADMIN_KEY } },
      routes: [
        { name: 'one', match: { pathPrefix: '/one' }, upstreams: [{ url: fleet.urls[0], name: 'a' }], plugins: [balancer()] },
        { name: 'two', match: { pathPrefix: '/two' }, upstreams: [{ url: fleet.urls[1], name: 'b' }], plugins: [balancer({ algorithm: 'weighted' })] },
      ],
      plugins: [goProxyAdmin()],
    };
    await withYard(config, async (call) => {
      const refused = await call('GET', '/api/v1/backends');
      assert.equal(refused.status, 400);
      assert.match(String(refused.json.error), /balanced routes: one, two/);
      const two = (await call('GET', '/api/v1/backends?upstream=two')).json as unknown as BackendListing;
      assert.deepEqual([two.upstream, two.algorithm, two.backends.map((row) => row.name)], ['two', 'weighted', ['b']]);
      assert.equal((await call('GET', '/api/v1/stats/server')).json.backends, 2);
    });
  });

  test('listed before a global balancer it still finds the balancer\'s routes', async () => {
    await withYard(fleetConfig(fleet, [], { globalPlugins: [goProxyAdmin(), balancer()] }), async (call) => {
      const listing = (await call('GET', '/api/v1/backends')).json as unknown as BackendListing;
      assert.deepEqual(listing.backends.map((row) => row.name), ['a', 'b', 'c']);
    });
  });

  test('without a balancer there are no backends, and a change answers 404', async () => {
    await withYard(fleetConfig(fleet, [], { globalPlugins: [goProxyAdmin()] }), async (call) => {
      assert.deepEqual((await call('GET', '/api/health', undefined, null)).json, { status: 'ok', backends: [] });
      assert.equal((await call('GET', '/api/v1/stats/server')).json.backends, 0);
      const refused = await call('POST', '/api/v1/backends/add', { upstream: 'main', url: 'http://127.0.0.1:1' });
      assert.equal(refused.status, 404);
      assert.equal(refused.json.code, 'SY_ERR_ADMIN_NOT_FOUND');
    });
  });
});

describe('go-proxy-admin config paths', { timeout: 60000 }, () => {
  test('PUT /api/v1/config replaces configFile and keeps the old one as .bak; a body that is no object is 400', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-go-proxy-admin-'));
    const target = join(dir, 'managed.yaml');
    writeFileSync(target, 'server: { port: 1 }\n');
    await withYard(fleetConfig(fleet, [balancer()], { globalPlugins: [goProxyAdmin({ configFile: target })] }), async (call) => {
      const put = await call('PUT', '/api/v1/config', 'server: { port: 2 }\n');
      assert.equal(put.status, 202);
      assert.equal(put.json.written, target);
      assert.equal(readFileSync(target, 'utf8'), 'server: { port: 2 }\n');
      assert.equal(readFileSync(`${target}.bak`, 'utf8'), 'server: { port: 1 }\n');
      const refused = await call('PUT', '/api/v1/config', '[1, 2');
      assert.equal(refused.status, 400);
      assert.equal(readFileSync(target, 'utf8'), 'server: { port: 2 }\n');
    });
  });

  test('without configFile PUT /api/v1/config answers 501 and writes nothing', async () => {
    await withYard(fleetConfig(fleet, [balancer()], { globalPlugins: [goProxyAdmin()] }), async (call, sy) => {
      const res = await call('PUT', '/api/v1/config', 'server: {}');
      assert.equal(res.status, 501);
      assert.equal(res.json.code, 'SY_ERR_BALANCER_CONFIG_READ_ONLY');
      assert.match(String(res.json.error), /no config file/);
      assert.equal(existsSync(`${sy.configFile}.bak`), false);
    });
  });

  test('GET /api/v1/config is the core\'s redacted config, and reload-ssl without TLS answers 501', async () => {
    await withYard(fleetConfig(fleet, [balancer()], { globalPlugins: [goProxyAdmin()] }), async (call) => {
      const config = await call('GET', '/api/v1/config');
      assert.equal(config.status, 200);
      assert.equal((config.json.server as { admin: { key: string } }).admin.key, '***');
      assert.equal((await call('GET', '/api/v1/config', undefined, null)).status, 401);
      const ssl = await call('POST', '/api/v1/config/reload-ssl');
      assert.equal(ssl.status, 501);
      assert.equal(ssl.json.code, 'SY_ERR_BALANCER_TLS_OFF');
    });
  });
});
