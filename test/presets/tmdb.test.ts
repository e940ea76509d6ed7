// The tmdb preset end to end against fake TMDB API and image servers on 127.0.0.1 that check the
// key like the real ones: key injection (v3 and v4) and its absence everywhere else, images byte
// for byte, what is and is not cached, failover with an upstream killed under load, nested
// Switchyard instances with a cascading, loop-safe cache clear, and every env var mapped.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { Switchyard } from '../../core/index.js';
import { PresetEnvError } from '../../presets/env.js';
import { tmdb } from '../../presets/tmdb.js';
import { IMAGE, startFakeTmdb, V3_KEY, V4_TOKEN, type FakeTmdb } from '../helpers/fake-tmdb.js';
import { many } from '../helpers/fleet.js';
import { catalogs, startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

const ADMIN = 'tmdb-admin-key-for-tests-0123';
const admin = { 'x-api-key': ADMIN };

async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown>; headers: Headers; text: string }> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  return { status: res.status, json: JSON.parse(text) as Record<string, unknown>, headers: res.headers, text };
}

/** Everything a client or an operator can see of this instance, as one string. */
async function everythingShown(yard: RunningSwitchyard): Promise<string> {
  const parts: string[] = [JSON.stringify(yard.logs)];
  for (const path of ['/config', '/status', '/upstream', '/health-checks', '/stats', '/cache/keys', '/cache/info', '/stats/upstream', '/upstream/nested', '/mapi/config']) {
    const res = await fetch(`${yard.url}${path}`, { headers: admin });
    parts.push(`${path} ${res.status} ${JSON.stringify([...res.headers])} ${await res.text()}`);
  }
  return parts.join('\n');
}

describe('tmdb preset: API with a v3 key, images, cache, admin', () => {
  let apiA: FakeTmdb;
  let apiB: FakeTmdb;
  let images: FakeTmdb;
  let yard: RunningSwitchyard;

  before(async () => {
    [apiA, apiB, images] = await Promise.all([startFakeTmdb(), startFakeTmdb(), startFakeTmdb()]);
    for (const fake of [apiA, apiB]) fake.on('hit', (seen) => ordered.push(seen));
    yard = await startSwitchyard({ preset: 'tmdb', server: { store: 'memory://' } }, {
      env: {
        TMDB_API_KEY: V3_KEY, API_KEY: ADMIN,
        TMDB_API_SERVERS: `${apiA.url},${apiB.url}`, TMDB_IMAGE_SERVERS: images.url,
        TMDB_IMAGE_TEST_URL: '/t/p/w92/probe.png', HEALTH_CHECK_INTERVAL: '60000',
      },
    });
  });
  after(async () => {
    await yard?.stop();
    await Promise.all([apiA?.close(), apiB?.close(), images?.close()]);
  });

  // Both API upstreams' requests in the order they arrived.
  const ordered: { url: string }[] = [];
  const apiHits = () => ordered;

  test('a request without a key reaches TMDB with the v3 key and comes back unchanged', async () => {
    const res = await getJson(`${yard.url}/3/movie/550?language=de-DE&append_to_response=credits`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { id: 550, title: 'Movie 550', original_language: 'en', language: 'de-DE', overview: 'Ünïcödé ✓' });
    const seen = apiHits().at(-1)!;
    const query = new URL(seen.url, 'http://x').searchParams;
    assert.equal(query.get('api_key'), V3_KEY);
    assert.equal(query.get('language'), 'de-DE');
    assert.equal(query.get('append_to_response'), 'credits');
    assert.equal(res.headers.get('x-tmdb-proxy'), 'switchyard');
    assert.ok(res.headers.get('x-tmdb-proxy-version'));
    assert.equal(res.headers.get('x-cache'), 'MISS');
    const again = await getJson(`${yard.url}/3/movie/550?append_to_response=credits&language=de-DE`);
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.deepEqual(again.json, res.json);
    assert.equal(again.headers.get('x-tmdb-proxy'), 'switchyard', 'cache hits carry the proxy header too');
  });

  test("a client's own key is kept, and its 401 passes through: not retried, not cached, not held against the upstream", async () => {
    const before = apiHits().length;
    const first = await getJson(`${yard.url}/3/movie/551?api_key=not-a-valid-key`);
    assert.equal(first.status, 401);
    assert.equal(first.json.status_code, 7);
    assert.equal(apiHits().length, before + 1, 'one attempt: a 4xx is never retried');
    assert.equal(new URL(apiHits().at(-1)!.url, 'http://x').searchParams.getAll('api_key').join(','), 'not-a-valid-key');
    const second = await getJson(`${yard.url}/3/movie/551?api_key=not-a-valid-key`);
    assert.equal(second.status, 401);
    assert.notEqual(second.headers.get('x-cache'), 'HIT');
    assert.equal(apiHits().length, before + 2, 'the 401 was not cached');
    const missing = await getJson(`${yard.url}/3/movie/0`);
    assert.equal(missing.status, 404);
    assert.equal(missing.json.status_code, 34);
    const checks = (await getJson(`${yard.url}/health-checks`)).json.upstreams as { route: string; healthy: boolean }[];
    assert.ok(checks.filter((c) => c.route === 'tmdb-api').every((c) => c.healthy), 'client errors never mark an upstream down');
  });

  test('images pass byte for byte with their content type, and are cached', async () => {
    const first = await fetch(`${yard.url}/t/p/w500/poster.png`);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('content-type'), 'image/png');
    assert.ok(Buffer.from(await first.arrayBuffer()).equals(IMAGE));
    assert.equal(images.hits.at(-1)!.url, '/t/p/w500/poster.png', 'no key on image requests');
    const second = await fetch(`${yard.url}/t/p/w500/poster.png`);
    assert.equal(second.headers.get('x-cache'), 'HIT');
    assert.ok(Buffer.from(await second.arrayBuffer()).equals(IMAGE));
    const original = await fetch(`${yard.url}/t/p/original/other.jpg`);
    assert.equal(original.headers.get('content-type'), 'image/jpeg');
    assert.ok(Buffer.from(await original.arrayBuffer()).equals(IMAGE));
  });

  test('an HTML error page where an image was expected is passed on but never cached', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${yard.url}/t/p/w500/broken.jpg`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/);
      assert.notEqual(res.headers.get('x-cache'), 'HIT');
      await res.text();
    }
    assert.equal(images.hitsTo('/t/p/w500/broken.jpg'), 2);
    const keys = await getJson(`${yard.url}/cache/keys`, admin);
    assert.ok(!keys.text.includes('broken.jpg'));
  });

  test('cache keys leave api_key out; the key is nowhere in logs, admin output or responses', async () => {
    await fetch(`${yard.url}/3/movie/552?api_key=${V3_KEY}`).then((r) => r.text());
    const keys = await getJson(`${yard.url}/cache/keys`, admin);
    assert.equal(keys.status, 200);
    const listed = (keys.json.keys as { key: string }[]).map((k) => k.key);
    assert.ok(listed.includes('GET /3/movie/550?append_to_response=credits&language=de-DE'), listed.join(' | '));
    assert.ok(listed.some((k) => k.startsWith('GET /3/movie/552')));
    assert.ok(listed.every((k) => !k.includes('api_key')), listed.join(' | '));
    const shown = await everythingShown(yard);
    assert.ok(!shown.includes(V3_KEY), 'the v3 key shows up somewhere');
    const config = await getJson(`${yard.url}/config`, admin);
    assert.ok(config.text.includes('"apiKey":"***"'), 'the key option is shown redacted');
    assert.ok(config.text.includes('"key":"***"'), 'the admin key is shown redacted');
  });

  test('a parameter smuggled behind ; after the excluded api_key is not served the plain path\'s entry', async () => {
    const plain = await getJson(`${yard.url}/3/movie/556`);
    assert.equal(plain.headers.get('x-cache'), 'MISS');
    const before = apiHits().length;
    const smuggled = await fetch(`${yard.url}/3/movie/556?api_key=not-a-key;cb=EVIL`);
    await smuggled.arrayBuffer();
    assert.notEqual(smuggled.headers.get('x-cache'), 'HIT', 'removing api_key must not leave the plain path');
    assert.equal(smuggled.status, 401, "TMDB's own answer to that query");
    assert.equal(apiHits().length, before + 1);
    assert.equal(apiHits().at(-1)!.url.includes('cb=EVIL'), true);
    const again = await getJson(`${yard.url}/3/movie/556`);
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.deepEqual(again.json, plain.json);
    const listed = ((await getJson(`${yard.url}/cache/keys`, admin)).json.keys as { key: string }[]).map((k) => k.key);
    assert.ok(listed.every((k) => !k.includes('not-a-key')), listed.join(' | '));
  });

  test('admin routes: /stats, /upstream public; cache routes and /config need API_KEY; Go proxy aliases answer', async () => {
    for (const path of ['/health', '/status', '/stats', '/upstream', '/api/health', '/api/stats', '/api/upstream', '/upstream/nested']) {
      const res = await fetch(`${yard.url}${path}`);
      assert.equal(res.status, 200, path);
      await res.text();
    }
    for (const path of ['/config', '/cache/info', '/cache/keys', '/mapi/config', '/mapi/cache/info', '/mapi/cache/keys']) {
      const anonymous = await fetch(`${yard.url}${path}`);
      assert.equal(anonymous.status, 401, path);
      await anonymous.text();
      const allowed = await fetch(`${yard.url}${path}`, { headers: admin });
      assert.equal(allowed.status, 200, path);
      await allowed.text();
    }
    const stats = (await getJson(`${yard.url}/api/stats`)).json as { requests: number; cache: { hits: number; hitRatio: number }; upstreams: { name: string; requests: number }[] };
    assert.ok(stats.requests > 0);
    assert.ok(stats.cache.hits >= 2 && stats.cache.hitRatio > 0);
    assert.ok(stats.upstreams.some((u) => u.requests > 0));
    const search = await getJson(`${yard.url}/mapi/cache/search?q=poster`, admin);
    assert.equal((search.json.keys as unknown[]).length, 1);
    const refused = await fetch(`${yard.url}/mapi/cache/clear?prefix=/t/p`, { method: 'POST' });
    assert.equal(refused.status, 401);
    await refused.text();
    const cleared = await fetch(`${yard.url}/mapi/cache/clear?prefix=/t/p`, { method: 'POST', headers: admin });
    assert.equal(cleared.status, 200);
    assert.equal(((await cleared.json()) as { removed: { memory: number } }).removed.memory, 2);
  });

  test('failover: with one API upstream killed under load every request still succeeds', async () => {
    const killedAfter = apiA.hits.length + 5;
    let killing: Promise<void> | undefined;
    const onHit = () => {
      if (!killing && apiA.hits.length >= killedAfter) killing = apiA.kill();
    };
    apiA.on('hit', onHit);
    const answers = await many(`${yard.url}/3/movie/1000`, 60, { concurrency: 6, init: () => ({ headers: { 'x-cache-bypass': '1' } }) });
    apiA.off('hit', onHit);
    assert.ok(killing, 'upstream A took traffic and was killed while the load ran');
    await killing;
    assert.deepEqual(answers.map((a) => a.status), answers.map(() => 200));
    const after = await many(`${yard.url}/3/movie/1001`, 10, { init: () => ({ headers: { 'x-cache-bypass': '1' } }) });
    assert.ok(after.every((a) => a.status === 200));
    const stats = (await getJson(`${yard.url}/stats`)).json as { upstreams: { name: string; failures: number }[] };
    assert.ok(stats.upstreams.length >= 2);
  });
});

describe('tmdb preset: a v4 read-access token', () => {
  let api: FakeTmdb;
  let yard: RunningSwitchyard;
  before(async () => {
    api = await startFakeTmdb();
    yard = await startSwitchyard({ preset: 'tmdb', server: { store: 'memory://' } }, {
      env: { TMDB_API_KEY: V4_TOKEN, API_KEY: ADMIN, UPSTREAM_TYPE: 'tmdb-api', UPSTREAM_SERVERS: api.url, HEALTH_CHECK_INTERVAL: '60000' },
    });
  });
  after(async () => {
    await yard?.stop();
    await api?.close();
  });

  test('goes upstream as Authorization: Bearer, never as a query parameter or anywhere visible', async () => {
    const res = await getJson(`${yard.url}/3/movie/600`);
    assert.equal(res.status, 200);
    const seen = api.hits.at(-1)!;
    assert.equal(seen.headers.authorization, `Bearer ${V4_TOKEN}`);
    assert.ok(!seen.url.includes('api_key'));
    const again = await getJson(`${yard.url}/3/movie/600`);
    assert.equal(again.headers.get('x-cache'), 'HIT');
    const shown = await everythingShown(yard);
    assert.ok(!shown.includes(V4_TOKEN), 'the v4 token shows up somewhere');
    assert.ok(!shown.includes(V4_TOKEN.slice(0, 30)));
  });

  test('health checks carry the token and expect JSON', async () => {
    const config = await getJson(`${yard.url}/config`, admin);
    const route = (config.json.routes as { plugins: { name: string; options: { active?: { path: string; headers: Record<string, string>; contentType: string } } }[] }[])[0]!;
    const check = route.plugins.find((p) => p.name === 'health-check')!.options.active!;
    assert.equal(check.path, '/3/configuration');
    assert.equal(check.headers.authorization, '***');
    assert.equal(check.contentType, 'application/json');
  });
});

describe('tmdb preset: nested Switchyard instances', () => {
  let api: FakeTmdb;
  let images: FakeTmdb;
  let front: RunningSwitchyard;
  let back: RunningSwitchyard;

  before(async () => {
    [api, images] = await Promise.all([startFakeTmdb(), startFakeTmdb()]);
    // front's API goes to back; back's images go to front: each is the other's nested proxy,
    // a loop for clears, while every request still ends at a fake TMDB.
    const frontPort = await freePort();
    const env = (extra: Record<string, string>) => ({ API_KEY: ADMIN, TMDB_API_KEY: V3_KEY, ENABLE_NESTED_PROXY_DETECTION: 'true', HEALTH_CHECK_INTERVAL: '60000', ...extra });
    back = await startSwitchyard({ preset: 'tmdb', server: { store: 'memory://' } }, { env: env({ TMDB_API_SERVERS: api.url, TMDB_IMAGE_SERVERS: `http://127.0.0.1:${frontPort}` }) });
    front = await startAt(frontPort, env({ TMDB_API_SERVERS: back.url, TMDB_IMAGE_SERVERS: images.url }));
  });
  after(async () => {
    await front?.stop();
    await back?.stop();
    await Promise.all([api?.close(), images?.close()]);
  });

  test('an upstream answering with X-TMDB-Proxy is listed as a nested proxy with version and checks', async () => {
    const res = await getJson(`${front.url}/3/movie/700`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-tmdb-proxy'), 'switchyard');
    assert.equal(new URL(api.hits.at(-1)!.url, 'http://x').searchParams.getAll('api_key').length, 1, 'the key is added once along the chain');
    await getJson(`${front.url}/3/movie/701`);
    const nested = (await getJson(`${front.url}/upstream/nested`)).json.nested as { url: string; version: string; checkCount: number; lastChecked: string; kind: string }[];
    assert.equal(nested.length, 1);
    assert.equal(nested[0]!.url, back.url);
    assert.equal(nested[0]!.kind, 'switchyard');
    assert.ok(nested[0]!.version);
    assert.equal(nested[0]!.checkCount, 2);
    assert.ok(Date.parse(nested[0]!.lastChecked) > 0);
    const image = await fetch(`${back.url}/t/p/w92/loop.png`);
    assert.ok(Buffer.from(await image.arrayBuffer()).equals(IMAGE));
    const backNested = (await getJson(`${back.url}/upstream/nested`)).json.nested as { url: string }[];
    assert.deepEqual(backNested.map((n) => n.url), [front.url]);
  });

  test('a clear cascades to the nested proxy, authenticated, and a loop of proxies stops', async () => {
    const backKeys = async () => ((await getJson(`${back.url}/cache/keys`, admin)).json.keys as { key: string }[]).map((row) => row.key);
    const before = await backKeys();
    assert.ok(before.length > 0);
    const res = await fetch(`${front.url}/cache/clear?type=all&confirm=yes`, { method: 'POST', headers: admin });
    assert.equal(res.status, 200);
    const answer = await res.json() as { removed: { memory: number }; cascade: { url: string; status: number; answer: { removed: { memory: number }; cascade: { answer: { cascade: { skipped?: string }[] } }[] } }[] };
    assert.ok(answer.removed.memory > 0);
    assert.equal(answer.cascade.length, 1);
    assert.equal(answer.cascade[0]!.url, `${back.url}/cache/clear`);
    assert.equal(answer.cascade[0]!.status, 200, 'the nested proxy accepted the admin key');
    assert.ok(answer.cascade[0]!.answer.removed.memory > 0);
    // back passed it on to front, which recognised the clear and went no further.
    assert.match(answer.cascade[0]!.answer.cascade[0]!.answer.cascade[0]!.skipped ?? '', /loop/);
    // Every entry the nested proxy held is gone (a store still in flight from an earlier request may land after the clear).
    const after = await backKeys();
    assert.deepEqual(before.filter((key) => after.includes(key)), []);
    const audit = back.logs.filter((l) => l.audit === 'cache.clear');
    assert.equal(audit.length, 1);
  });

  test('a clear that already went through too many proxies is not passed on', async () => {
    const res = await fetch(`${front.url}/cache/clear?type=memory&confirm=yes`, { method: 'POST', headers: { ...admin, 'x-cache-clear-hops': '4' } });
    const answer = await res.json() as { cascade: { skipped?: string }[] };
    assert.match(answer.cascade[0]!.skipped ?? '', /hop limit/);
  });
});

describe('tmdb preset: environment variables', () => {
  type Check = (config: Record<string, any>) => unknown;
  const api = (c: Record<string, any>) => c.routes[0];
  const plugin = (c: Record<string, any>, name: string, route = 0) => c.routes[route].plugins.find((p: { name: string }) => p.name === name);
  const base = { UPSTREAM_TYPE: 'tmdb-api', TMDB_API_KEY: V3_KEY };
  const cases: [string, string, Check, unknown, Record<string, string>?][] = [
    ['PORT', '7000', (c) => c.server.port, 7000],
    ['UPSTREAM_TYPE', 'tmdb-image', (c) => [api(c).name, api(c).match.pathPrefix, api(c).upstreams[0].url], ['tmdb-image', '/', 'https://image.tmdb.org']],
    ['TMDB_API_KEY', V4_TOKEN, (c) => plugin(c, 'tmdb-key').options, { readAccessToken: V4_TOKEN }],
    ['TMDB_IMAGE_TEST_URL', 'https://image.tmdb.org/t/p/w92/x.png', (c) => plugin(c, 'health-check').options.active.path, '/t/p/w92/x.png', { UPSTREAM_TYPE: 'tmdb-image' }],
    ['UPSTREAM_SERVERS', 'http://a.example:1,https://b.example/base/', (c) => api(c).upstreams.map((u: { url: string }) => u.url), ['http://a.example:1', 'https://b.example/base']],
    ['CACHE_ENABLED', 'false', (c) => plugin(c, 'cache').enabled, false],
    ['CACHE_DIR', '/var/cache/tmdb/', (c) => c.server.store, 'sqlite:///var/cache/tmdb/switchyard.sqlite'],
    ['CACHE_MAX_SIZE', '5000', (c) => plugin(c, 'cache').options.persistent.maxEntries, 5000],
    ['MEMORY_CACHE_SIZE', '250', (c) => plugin(c, 'cache').options.memory.maxEntries, 250],
    ['MEMORY_CACHE_TTL', '600000', (c) => plugin(c, 'cache').options.ttlByContentType['application/json'], 600],
    ['DISK_CACHE_TTL', '172800000', (c) => plugin(c, 'cache').options.ttl, 172800],
    ['REQUEST_TIMEOUT', '8000', (c) => c.server.timeouts.firstByte, 8000],
    ['UNHEALTHY_TIMEOUT', '120000', (c) => plugin(c, 'health-check').options.passive.unhealthyTimeout, 120000],
    ['MAX_ERRORS_BEFORE_UNHEALTHY', '7', (c) => [plugin(c, 'health-check').options.passive.failures, plugin(c, 'health-check').options.active.unhealthyThreshold], [7, 7]],
    ['HEALTH_CHECK_INTERVAL', '15000', (c) => plugin(c, 'health-check').options.active.interval, 15000],
    ['BASE_WEIGHT_MULTIPLIER', '30', (c) => plugin(c, 'balancer').options.latency.baseWeightMultiplier, 30],
    ['DYNAMIC_WEIGHT_MULTIPLIER', '70.5', (c) => plugin(c, 'balancer').options.latency.dynamicWeightMultiplier, 70.5],
    ['ALPHA_INITIAL', '0.3', (c) => plugin(c, 'balancer').options.latency.alphaInitial, 0.3],
    ['ALPHA_ADJUSTMENT_STEP', '0.1', (c) => plugin(c, 'balancer').options.latency.alphaAdjustmentStep, 0.1],
    ['MAX_SERVER_SWITCHES', '5', (c) => plugin(c, 'retry').options.retries, 5],
    ['API_KEY', 'admin-secret', (c) => c.server.admin.key, 'admin-secret'],
    ['ENABLE_NESTED_PROXY_DETECTION', 'true', (c) => c.plugins.find((p: { name: string }) => p.name === 'proxy-chain').options.detect, true],
  ];

  for (const [name, value, read, expected, extra] of cases) {
    test(`${name}=${value} is mapped`, () => {
      const without = read(tmdb.build({ ...base, ...extra }));
      const config = tmdb.build({ ...base, ...extra, [name]: value });
      assert.deepEqual(read(config), expected);
      assert.notDeepEqual(without, expected, `${name}: the default already gives the expected value, so the test would prove nothing`);
    });
  }

  test('the defaults: port 6635, both routes with TMDB upstreams, latency balancing, 3 switches', () => {
    const config = tmdb.build({}) as Record<string, any>;
    assert.equal(config.server.port, 6635);
    assert.deepEqual(config.routes.map((r: { name: string; match: { pathPrefix: string }; upstreams: { url: string }[] }) => [r.name, r.match.pathPrefix, r.upstreams[0]!.url]),
      [['tmdb-api', '/3', 'https://api.themoviedb.org'], ['tmdb-image', '/t/p', 'https://image.tmdb.org']]);
    assert.equal(plugin(config, 'balancer').options.algorithm, 'latency');
    assert.equal(plugin(config, 'retry').options.retries, 3);
    assert.deepEqual(plugin(config, 'cache', 1).options.contentTypes, ['image/*']);
    assert.ok(plugin(config, 'cache').options.excludeQueryParams.includes('api_key'));
    assert.equal(plugin(config, 'tmdb-key'), undefined, 'no key, no injection');
  });

  const bad: [string, string, Record<string, string>?][] = [
    ['PORT', '70000'], ['UPSTREAM_TYPE', 'tmdb'], ['TMDB_API_KEY', 'has space'], ['TMDB_IMAGE_TEST_URL', 'ftp://x/y'],
    ['UPSTREAM_SERVERS', 'api.themoviedb.org', { UPSTREAM_TYPE: 'tmdb-api' }], ['UPSTREAM_SERVERS', 'http://a.example'],
    ['CACHE_ENABLED', 'maybe'], ['CACHE_MAX_SIZE', '0'], ['MEMORY_CACHE_SIZE', 'lots'], ['MEMORY_CACHE_TTL', '1.5'],
    ['DISK_CACHE_TTL', '-1'], ['REQUEST_TIMEOUT', 'soon'], ['UNHEALTHY_TIMEOUT', '0'], ['MAX_ERRORS_BEFORE_UNHEALTHY', '0'],
    ['HEALTH_CHECK_INTERVAL', '5'], ['BASE_WEIGHT_MULTIPLIER', '0'], ['DYNAMIC_WEIGHT_MULTIPLIER', 'x'], ['ALPHA_INITIAL', '1.5'],
    ['ALPHA_ADJUSTMENT_STEP', '-0.1'], ['MAX_SERVER_SWITCHES', '16'], ['ENABLE_NESTED_PROXY_DETECTION', 'sometimes'],
  ];
  for (const [name, value, extra] of bad) {
    test(`${name}=${value} fails at start, naming the variable`, () => {
      assert.throws(() => tmdb.build({ ...extra, [name]: value }), (err: unknown) => err instanceof PresetEnvError && err.variable === name && err.message.includes(name));
    });
  }

  test('a bad variable stops `switchyard start --preset tmdb` with a message naming it', async () => {
    await assert.rejects(
      Switchyard.start({ source: { preset: 'tmdb', port: 0, host: '127.0.0.1' }, catalogs, env: { ALPHA_INITIAL: '2' }, logger: pino({ level: 'silent' }), watch: false }),
      /ALPHA_INITIAL/,
    );
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** startSwitchyard on a given port (the nested test needs the address before the start). */
async function startAt(port: number, env: Record<string, string>): Promise<RunningSwitchyard> {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const yard = await Switchyard.start({ source: { preset: 'tmdb', port, host: '127.0.0.1' }, catalogs, env: { ...env, STORE_URL: 'memory://' }, logger: pino({ level: 'debug' }, sink), watch: false });
  return { yard, url: `http://127.0.0.1:${yard.port}`, dir: '', configFile: '', logs, writeConfig: () => undefined, stop: () => yard.stop() };
}
