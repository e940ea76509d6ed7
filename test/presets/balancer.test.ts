// The balancer preset end to end, configured from environment variables alone, in front of three
// local backends: distribution, priorities and failover, per-path cache TTLs and bypass, rate
// limits with a block, CORS, sticky streams, and every Go-proxy admin path over real HTTP.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { pino } from 'pino';
import YAML from 'yaml';
import { loadConfig, Switchyard } from '../../core/index.js';
import { ADMIN_KEY, get, guard, many, startFleet, type Fleet } from '../helpers/fleet.js';
import { catalogs } from '../helpers/servers.js';

const silent = pino({ level: 'silent' });
const running: Switchyard[] = [];
const fleets: Fleet[] = [];

/** Starts the preset from environment variables alone (no file). */
async function presetFromEnv(env: NodeJS.ProcessEnv): Promise<{ yard: Switchyard; url: string }> {
  const yard = await Switchyard.start({
    source: { preset: 'balancer', port: 0, host: '127.0.0.1' },
    catalogs,
    env: { STORE_URL: 'memory://', ADMIN_KEY, HEALTH_INTERVAL: '60s', ...env },
    logger: silent,
    watch: false,
  });
  running.push(yard);
  return { yard, url: `http://127.0.0.1:${yard.port}` };
}

async function fleetOf(...names: string[]): Promise<Fleet> {
  const fleet = await startFleet(names);
  fleets.push(fleet);
  return fleet;
}

function countBy(names: (string | undefined)[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of names) counts[name ?? '?'] = (counts[name ?? '?'] ?? 0) + 1;
  return counts;
}

afterEach(async () => {
  for (const yard of running.splice(0)) await yard.stop();
  for (const fleet of fleets.splice(0)) await fleet.close();
});

describe('balancer preset from environment variables', () => {
  test('requests are spread by weight (url|weight) over three backends', async () => {
    const fleet = await fleetOf('a', 'b', 'c');
    const [a, b, c] = fleet.urls;
    const { url } = await presetFromEnv({ BACKEND_SERVERS: `${a}|3,${b}|2,${c}|1` });
    const answers = await many(`${url}/work`, 60);
    assert.ok(answers.every((r) => r.status === 200));
    assert.deepEqual(countBy(answers.map((r) => r.upstream)), { a: 30, b: 20, c: 10 });
  });

  test('the lowest priority level takes all traffic; a backup tier takes over when it fails', async () => {
    const fleet = await fleetOf('a', 'b', 'backup');
    const [a, b, backup] = fleet.urls;
    const { url } = await presetFromEnv({ BACKEND_SERVERS: `${a}|1|1|cn,${b}|1|1|cn,${backup}|1|2|backup` });
    const before = await many(`${url}/x`, 10);
    assert.deepEqual(countBy(before.map((r) => r.upstream)), { a: 5, b: 5 });
    await fleet.byName('a').kill();
    await fleet.byName('b').kill();
    // Retries carry each request past the dead backends; none of these fail.
    const afterFailure = await many(`${url}/x`, 6);
    assert.deepEqual(afterFailure.map((r) => [r.status, r.upstream]), Array(6).fill([200, 'backup']));
  });

  test('CACHE_TTLS caches the listed prefixes, CACHE_BYPASS and unlisted paths go to the backend every time', async () => {
    const fleet = await fleetOf('a');
    const { url } = await presetFromEnv({ BACKEND_SERVERS: fleet.urls[0], CACHE_TTLS: '/v1/models=300,/usage=60', CACHE_BYPASS: '/v1/models/live' });
    const member = fleet.byName('a');
    const first = await get(`${url}/v1/models`);
    const second = await get(`${url}/v1/models`);
    assert.equal(first.headers.get('x-cache'), 'MISS');
    assert.equal(second.headers.get('x-cache'), 'HIT');
    assert.equal(second.text, first.text);
    assert.equal(member.hits, 1);
    const usage = [await get(`${url}/usage?day=1`), await get(`${url}/usage?day=1`)];
    assert.deepEqual(usage.map((r) => r.headers.get('x-cache')), ['MISS', 'HIT']);
    const live = [await get(`${url}/v1/models/live`), await get(`${url}/v1/models/live`)];
    assert.deepEqual(live.map((r) => r.headers.get('x-cache')), ['BYPASS', 'BYPASS']);
    const other = [await get(`${url}/chat`), await get(`${url}/chat`)];
    assert.deepEqual(other.map((r) => r.headers.get('x-cache')), ['MISS', 'MISS']);
    assert.equal(member.hits, 1 + 1 + 2 + 2);
    const info = await fetch(`${url}/cache/keys`, { headers: { 'x-api-key': ADMIN_KEY } }).then((r) => r.json()) as { keys: { key: string; expiresAt?: number; storedAt?: number }[] };
    assert.deepEqual(info.keys.map((k) => k.key).sort(), ['GET /usage?day=1', 'GET /v1/models']);
  });

  test("the documented CACHE_TTLS + CORS_ORIGINS example hits: every answer says Vary: Origin, and each origin gets its own stored variant", async () => {
    const fleet = await fleetOf('a');
    const { url } = await presetFromEnv({ BACKEND_SERVERS: fleet.urls[0], CACHE_TTLS: '/v1/models=300', CORS_ORIGINS: 'https://app.example.com' });
    const browser = (origin?: string) => ({ headers: { 'accept-encoding': 'gzip, deflate, br', ...(origin === undefined ? {} : { origin }) } });
    const seen: string[] = [];
    for (const origin of ['https://app.example.com', 'https://app.example.com', 'https://evil.example', undefined, 'https://evil.example', 'https://app.example.com', undefined]) {
      const res = await get(`${url}/v1/models`, browser(origin));
      assert.match(res.headers.get('vary') ?? '', /Origin/);
      seen.push(`${res.headers.get('x-cache')} ${res.headers.get('access-control-allow-origin')}`);
    }
    assert.deepEqual(seen, [
      'MISS https://app.example.com', 'HIT https://app.example.com', 'MISS null', 'MISS null', 'HIT null', 'HIT https://app.example.com', 'HIT null',
    ]);
    assert.equal(fleet.byName('a').hits, 3, 'one backend request per origin');
  });

  test('RATE_LIMIT refuses with 429 past the limit and keeps refusing for the block duration', async () => {
    const fleet = await fleetOf('a');
    const { url } = await presetFromEnv({ BACKEND_SERVERS: fleet.urls[0], RATE_LIMIT: '3/60s;block=300s', CORS_ORIGINS: 'https://app.example.com' });
    const answers = await many(`${url}/x`, 5, { init: () => ({ headers: { origin: 'https://app.example.com' } }) });
    assert.deepEqual(answers.map((r) => r.status), [200, 200, 200, 429, 429]);
    const retryAfter = Number(answers[4]!.headers.get('retry-after'));
    // Blocked for 300 s, not for what is left of the 60 s window.
    assert.ok(retryAfter > 60 && retryAfter <= 300, `retry-after ${retryAfter}`);
    assert.equal(answers[3]!.headers.get('access-control-allow-origin'), 'https://app.example.com');
    assert.equal(fleet.byName('a').hits, 3);
  });

  test('RATE_LIMIT_BLOCK is the other way to give the block', async () => {
    const loaded = await loadConfig({ preset: 'balancer' }, catalogs, { BACKEND_SERVERS: 'http://127.0.0.1:1', RATE_LIMIT: '100/1m', RATE_LIMIT_BLOCK: '5m' });
    const limit = loaded.config.plugins!.find((p) => p.name === 'rate-limit')!;
    assert.equal(limit.enabled, true);
    assert.deepEqual((limit.options as { limits: unknown[] }).limits, [{ count: 100, window: '60000ms', blockDuration: '300000ms' }]);
  });

  test('CORS_ORIGINS answers preflights and allows only the listed origins', async () => {
    const fleet = await fleetOf('a');
    const { url } = await presetFromEnv({ BACKEND_SERVERS: fleet.urls[0], CORS_ORIGINS: 'https://app.example.com' });
    const preflight = await fetch(`${url}/v1/x`, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } });
    await preflight.arrayBuffer();
    assert.ok(preflight.status === 204 || preflight.status === 200);
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example.com');
    const allowed = await get(`${url}/v1/x`, { headers: { origin: 'https://app.example.com' } });
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'https://app.example.com');
    const other = await get(`${url}/v1/x`, { headers: { origin: 'https://evil.example' } });
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    assert.equal(fleet.byName('a').hits, 2);
  });

  test('SSE requests stick to one backend per client while plain requests spread', async () => {
    const fleet = await fleetOf('a', 'b', 'c');
    const { url } = await presetFromEnv({ BACKEND_SERVERS: fleet.urls.join(',') });
    const streams = await many(`${url}/events`, 9, { init: () => ({ headers: { accept: 'text/event-stream' } }) });
    assert.equal(new Set(streams.map((r) => r.upstream)).size, 1);
    const plain = await many(`${url}/plain`, 9);
    assert.equal(new Set(plain.map((r) => r.upstream)).size, 3);
  });

  test('a malformed variable fails at start, naming it', async () => {
    const base = { BACKEND_SERVERS: 'http://127.0.0.1:1' };
    const cases: [NodeJS.ProcessEnv, RegExp][] = [
      [{ BACKEND_SERVERS: 'http://127.0.0.1:1|0' }, /BACKEND_SERVERS entry "http:\/\/127\.0\.0\.1:1\|0": weight "0"/],
      [{ BACKEND_SERVERS: 'http://127.0.0.1:1|1|first' }, /BACKEND_SERVERS .*priority "first"/],
      [{ ...base, LB_ALGORITHM: 'fastest' }, /LB_ALGORITHM is "fastest"/],
      [{ ...base, HEALTH_PATH: 'health' }, /HEALTH_PATH is "health"/],
      [{ ...base, HEALTH_INTERVAL: 'soon' }, /HEALTH_INTERVAL is "soon"/],
      [{ ...base, CACHE_TTLS: '/v1/models' }, /CACHE_TTLS entry "\/v1\/models"/],
      [{ ...base, CACHE_BYPASS: 'v1/images' }, /CACHE_BYPASS entry "v1\/images"/],
      [{ ...base, RATE_LIMIT: 'lots' }, /RATE_LIMIT is "lots"/],
      [{ ...base, RATE_LIMIT: '10/1s', RATE_LIMIT_BLOCK: 'forever' }, /RATE_LIMIT_BLOCK block duration "forever"/],
      [{ ...base, PORT: 'eighty' }, /PORT is "eighty"/],
    ];
    for (const [env, message] of cases) {
      await assert.rejects(loadConfig({ preset: 'balancer' }, catalogs, env), message);
    }
  });
});

// ---- the Go proxy's admin paths ---------------------------------------------------------------

describe('balancer preset: the Go proxy admin API', () => {
  let fleet: Fleet;
  let yard: Switchyard;
  let url: string;
  let configFile: string;

  const call = async (method: string, path: string, body?: unknown, key: string | null = ADMIN_KEY) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { ...(key ? { 'x-api-key': key } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : null) as Record<string, unknown> };
  };
  const backendsNow = async () => (await call('GET', '/api/v1/backends?upstream=backends')).json.backends as { name: string; url: string; active: boolean; weights: { configured: number } }[];
  const reloadAndWait = async (config: object) => {
    const reloaded = once(yard, 'reload');
    writeFileSync(configFile, YAML.stringify(config));
    const [result] = await guard(reloaded, 'the watcher reloads the config') as [{ ok: boolean; unchanged?: boolean }];
    assert.equal(result.ok, true);
  };

  after(async () => {
    await yard?.stop();
    await fleet?.close();
  });

  test('every path works over HTTP, and runtime changes survive a reload', async () => {
    fleet = await startFleet(['a', 'b', 'c', 'd']);
    const [a, b, c, d] = fleet.urls as [string, string, string, string];
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-balancer-'));
    configFile = join(dir, 'switchyard.yaml');
    const fileConfig = { preset: 'balancer', server: { accessLog: false } };
    writeFileSync(configFile, YAML.stringify(fileConfig));
    yard = await Switchyard.start({
      source: { file: configFile, port: 0, host: '127.0.0.1' },
      catalogs,
      env: { BACKEND_SERVERS: `${a}|1|0|cn,${b}|2|0|us,${c}|1|1|backup`, STORE_URL: 'memory://', ADMIN_KEY, CONFIG_FILE: configFile, HEALTH_INTERVAL: '60s' },
      logger: silent,
      watch: true,
    });
    url = `http://127.0.0.1:${yard.port}`;

    // Protected: no key, no answer.
    assert.equal((await call('GET', '/api/v1/backends', undefined, null)).status, 401);
    assert.equal((await call('GET', '/api/v1/backends', undefined, 'wrong')).status, 401);

    // Listing (the upstream parameter may be left out with one balanced route).
    assert.deepEqual((await backendsNow()).map((m) => m.url), [a, b, c]);
    assert.deepEqual(((await call('GET', '/api/v1/backends')).json.backends as unknown[]).length, 3);

    // Add, update, disconnect, remove.
    const added = await call('POST', '/api/v1/backends/add', { upstream: 'backends', url: d, weight: 4, name: 'd', priority: 0 });
    assert.equal(added.status, 201);
    const updated = await call('PUT', '/api/v1/backends/update', { upstream: 'backends', backend_id: b, weight: 7 });
    assert.equal(updated.status, 200);
    assert.equal((updated.json.upstream as { weights: { configured: number } }).weights.configured, 7);
    assert.equal((await call('POST', `/api/v1/backends/disconnect?upstream=backends&backend_id=${encodeURIComponent(c)}`)).status, 200);
    assert.equal((await call('DELETE', `/api/v1/backends/remove?upstream=backends&backend_id=${encodeURIComponent(a)}`)).status, 200);
    assert.equal((await call('DELETE', '/api/v1/backends/remove?upstream=backends&backend_id=http%3A%2F%2Fnowhere')).status, 404);
    assert.equal((await call('PUT', '/api/v1/backends/update', { backend_id: b, weight: -1 })).status, 400);

    const expectState = async () => {
      const rows = await backendsNow();
      assert.deepEqual(rows.map((m) => m.url).sort(), [b, c, d].sort());
      assert.equal(rows.find((m) => m.url === b)!.weights.configured, 7);
      assert.equal(rows.find((m) => m.url === c)!.active, false);
      assert.equal(rows.find((m) => m.url === d)!.weights.configured, 4);
    };
    await expectState();
    // Traffic follows: only b and d serve (c disconnected, a removed).
    const served = new Set((await many(`${url}/x`, 11)).map((r) => r.upstream));
    assert.deepEqual([...served].sort(), ['b', 'd']);

    // A reload of the file keeps every runtime change.
    await reloadAndWait({ ...fileConfig, server: { accessLog: false, shutdownTimeout: 5000 } });
    await expectState();

    // Stats and reports.
    const server = await call('GET', '/api/v1/stats/server');
    assert.equal(server.status, 200);
    assert.equal(server.json.backends, 3);
    assert.ok((server.json.requests as number) >= 11);
    const backend = await call('GET', `/api/v1/stats/backend?upstream=backends&backend_id=${encodeURIComponent(b)}`);
    assert.equal(backend.status, 200);
    assert.equal((backend.json.upstreams as { id: string }[])[0]!.id, `backends/${b}`);
    const reported = await call('POST', '/api/v1/report', { upstream: 'backends', backend_id: d, cpu: 0.5 });
    assert.deepEqual(reported.json, { updated: [`backends/${d}`] });
    assert.equal((await call('POST', '/api/v1/report', { backend_id: d, cpu: 3 })).status, 400);

    // Config: the redacted config, TLS reload (off here), and writing the file.
    const config = await call('GET', '/api/v1/config');
    assert.equal(config.status, 200);
    assert.equal((config.json.server as { admin: { key: string } }).admin.key, '***');
    const ssl = await call('POST', '/api/v1/config/reload-ssl');
    assert.equal(ssl.status, 501);
    assert.equal(ssl.json.code, 'SY_ERR_BALANCER_TLS_OFF');
    const reloaded = once(yard, 'reload');
    const put = await call('PUT', '/api/v1/config', YAML.stringify({ preset: 'balancer', server: { accessLog: false, shutdownTimeout: 4000 } }));
    assert.equal(put.status, 202);
    assert.equal((await guard(reloaded, 'PUT /api/v1/config reloads'))[0].ok, true);
    assert.match(readFileSync(configFile, 'utf8'), /shutdownTimeout: 4000/);
    assert.match(readFileSync(`${configFile}.bak`, 'utf8'), /shutdownTimeout: 5000/);
    assert.equal((await call('PUT', '/api/v1/config', '[1, 2')).status, 400);
    await expectState();

    // Public listing and ranking.
    const health = await call('GET', '/health', undefined, null);
    assert.equal(health.status, 200);
    assert.equal(health.json.status, 'ok');
    assert.deepEqual((await call('GET', '/api/health', undefined, null)).json, health.json);
    const rows = health.json.backends as { url: string; region: string | null; priority: number; healthy: boolean; avgLatencyMs: number | null; lastCheck: unknown }[];
    assert.deepEqual(rows.map((r) => [r.url, r.region, r.priority, r.healthy]).sort(), [[b, 'us', 0, true], [c, 'backup', 1, true], [d, null, 0, true]].sort());
    assert.ok(rows.every((r) => 'lastCheck' in r && 'avgLatencyMs' in r));
    const preference = await call('GET', '/api/ip-preference', undefined, null);
    const ranking = preference.json.backends as { url: string; rank: number }[];
    // c is out of service (disconnected): last.
    assert.equal(ranking.at(-1)!.url, c);
    assert.deepEqual(ranking.map((r) => r.rank), [1, 2, 3]);
  });

  test('PUT /api/v1/config answers 501 with a reason when the instance has no config file', async () => {
    const local = await startFleet(['a']);
    const env = await Switchyard.start({
      source: { preset: 'balancer', port: 0, host: '127.0.0.1' },
      catalogs,
      env: { BACKEND_SERVERS: local.urls[0], STORE_URL: 'memory://', ADMIN_KEY },
      logger: silent,
      watch: false,
    });
    try {
      const res = await fetch(`http://127.0.0.1:${env.port}/api/v1/config`, { method: 'PUT', headers: { 'x-api-key': ADMIN_KEY }, body: 'server: {}' });
      const body = await res.json() as { code: string; error: string };
      assert.equal(res.status, 501);
      assert.equal(body.code, 'SY_ERR_BALANCER_CONFIG_READ_ONLY');
      assert.match(body.error, /no config file/);
    } finally {
      await env.stop();
      await local.close();
    }
  });
});
