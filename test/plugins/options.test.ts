// Plugin options no other test sets, each through a running proxy: the test sets the option and
// asserts the difference it makes against the default, so an option the plugin ignored would fail
// it. test/core/options-covered.test.ts keeps the list of options and the tests that name them.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import zlib from 'node:zlib';
import { echoUpstream, startProxy, startUpstream, stopAll } from '../../testing/index.js';
import { withPlugins } from '../helpers/clients.js';
import { HashRing } from '../../plugins/balancer/hash-ring.js';
import { fakeClock } from './cache-support.js';
import { noRedis, startRedis } from '../helpers/redis.js';
import { routeConfig, startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { fittedWindow } from '../../plugins/compression/encode.js';

after(stopAll);

const ADMIN_KEY = 'options-test-admin-key-0123456789';
const ADMIN = { 'x-api-key': ADMIN_KEY };

/** A body and its status, read whole. */
async function call(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; text: string; json<T = Record<string, unknown>>(): T }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: <T>() => JSON.parse(text) as T };
}

/** Raw GET: the body bytes as they came off the wire, not decoded. */
function rawGet(url: string, headers: Record<string, string>): Promise<{ headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

/** Resolves after `ms`: only to let a default interval pass when asserting that nothing happened. */
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it holds, failing after `ms`: for effects of a timer in the proxy. */
async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await pause(20);
  }
}

const sqliteUrl = () => `sqlite://${join(mkdtempSync(join(tmpdir(), 'switchyard-options-')), 'store.sqlite')}`;

describe('ai-mappings options', () => {
  const mappings = (options: Record<string, unknown>, store = 'memory://') => ({
    server: { store, admin: { key: ADMIN_KEY } },
    plugins: [{ name: 'ai-mappings', options: { seedDefaults: false, adminPage: false, ...options } }],
  });
  const create = (sy: RunningSwitchyard, prefix: string, target: string) => call(`${sy.url}/api/mappings`, {
    method: 'POST', headers: { ...ADMIN, 'content-type': 'application/json' }, body: JSON.stringify({ prefix, target }),
  });

  test('publicList: false takes GET /api/mappings/public away; by default it lists names and targets without the key', async () => {
    const upstream = await echoUpstream();
    const open = await startSwitchyard(mappings({}));
    const closed = await startSwitchyard(mappings({ publicList: false }));
    for (const sy of [open, closed]) assert.equal((await create(sy, '/mine', upstream.url)).status, 201);
    const listed = await call(`${open.url}/api/mappings/public`);
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.json(), { mappings: [{ name: 'mine', prefix: '/mine', target: upstream.url }] });
    const hidden = await call(`${closed.url}/api/mappings/public`);
    assert.notEqual(hidden.status, 200);
    assert.doesNotMatch(hidden.text, /mine/);
  });

  test('reserved: a prefix listed there is refused with 400 AI_MAPPING_RESERVED; without it the same prefix is created', async () => {
    const upstream = await echoUpstream();
    const guarded = await startSwitchyard(mappings({ reserved: ['/internal'] }));
    const refused = await create(guarded, '/Internal', upstream.url);
    assert.equal(refused.status, 400);
    assert.equal(refused.json().code, 'AI_MAPPING_RESERVED');
    const plain = await startSwitchyard(mappings({}));
    assert.equal((await create(plain, '/internal', upstream.url)).status, 201);
  });

  test('dropHeaders: the listed request headers never reach the provider; others do', async () => {
    const upstream = await echoUpstream();
    const sy = await startSwitchyard(mappings({ dropHeaders: ['X-Internal-Trace'] }));
    assert.equal((await create(sy, '/p', upstream.url)).status, 201);
    const seen = (await call(`${sy.url}/p/v1/models`, { headers: { 'x-internal-trace': 'secret-route', 'x-kept': 'yes' } })).json<{ headers: Record<string, string> }>();
    assert.equal(seen.headers['x-internal-trace'], undefined);
    assert.equal(seen.headers['x-kept'], 'yes');
  });

  test('refreshMs: an instance re-reads the shared table at its own pace; a long one has not seen a change after the default second', async () => {
    const upstream = await echoUpstream();
    const store = sqliteUrl();
    const editor = await startSwitchyard(mappings({}, store));
    const quick = await startSwitchyard(mappings({ refreshMs: 100 }, store));
    const slow = await startSwitchyard(mappings({ refreshMs: 3_600_000 }, store));
    const created = Date.now();
    assert.equal((await create(editor, '/shared', upstream.url)).status, 201);
    await eventually('the quick instance routes the new mapping', async () => (await call(`${quick.url}/shared/x`)).status === 200);
    // Past the default refresh (1 s): had refreshMs been ignored, the slow instance would route it too.
    await pause(Math.max(0, created + 1500 - Date.now()));
    assert.equal((await call(`${slow.url}/shared/x`)).status, 404);
  });

  test('importRedisHash: the Go proxy\'s Redis hash of prefix → target becomes the table, and its mappings route', { skip: noRedis }, async () => {
    const redis = await startRedis();
    try {
      const upstream = await echoUpstream('legacy');
      await hset(redis.port, 'apiproxy:mappings', { '/legacy': upstream.url, '/admin': upstream.url });
      const sy = await startSwitchyard(mappings({ importRedisHash: 'apiproxy:mappings' }, redis.url));
      const listed = (await call(`${sy.url}/api/mappings`, { headers: ADMIN })).json<{ mappings: { prefix: string; target: string }[] }>();
      assert.deepEqual(listed.mappings.map((m) => [m.prefix, m.target]), [['/legacy', upstream.url]], 'the reserved /admin field is skipped');
      const routed = await call(`${sy.url}/legacy/v1/x`);
      assert.equal(routed.json().upstream, 'legacy');
      await sy.stop();
    } finally {
      await redis.stop();
    }
  });
});

/** HSET over a raw RESP connection: the test writes what the Go proxy would have written. */
async function hset(port: number, key: string, fields: Record<string, string>): Promise<void> {
  const args = ['HSET', key, ...Object.entries(fields).flat()];
  const command = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(command));
    socket.once('data', (reply) => {
      socket.end();
      if (reply.toString().startsWith(':')) resolve();
      else reject(new Error(`HSET answered ${reply.toString()}`));
    });
    socket.once('error', reject);
  });
}

describe('gemini-nothink options', () => {
  const NATIVE = '/v1beta/models/gemini-2.5-flash:generateContent';
  const body = JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] });
  /** Two routes to one echo upstream, `plain` and `always`, with the plugin on both. */
  const nothink = async (options: Record<string, unknown>) => {
    const upstream = await echoUpstream();
    const routes = ['always', 'plain'].map((name) => ({ name, match: { pathPrefix: `/${name}/` }, stripPrefix: true, upstreams: [{ url: upstream.url }] }));
    return startSwitchyard({ server: { store: 'memory://' }, routes, plugins: [{ name: 'gemini-nothink', options }] });
  };
  const thinking = async (sy: RunningSwitchyard, route: string, headers: Record<string, string> = {}) => {
    const seen = (await call(`${sy.url}/${route}${NATIVE}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })).json<{ body: string }>();
    return (JSON.parse(seen.body) as { generationConfig?: { thinkingConfig?: unknown } }).generationConfig?.thinkingConfig;
  };

  test('enabled: true turns thinking off on every route; by default a request without the header is sent as it came', async () => {
    const on = await nothink({ enabled: true, alwaysFor: [] });
    assert.deepEqual(await thinking(on, 'plain'), { thinkingBudget: 0 });
    const off = await nothink({ alwaysFor: [] });
    assert.equal(await thinking(off, 'plain'), undefined);
  });

  test('alwaysFor: the named route is rewritten even when the request says off; the others follow the header', async () => {
    const sy = await nothink({ alwaysFor: ['always'] });
    assert.deepEqual(await thinking(sy, 'always', { 'x-gemini-nothink': 'off' }), { thinkingBudget: 0 });
    assert.equal(await thinking(sy, 'plain'), undefined);
    assert.deepEqual(await thinking(sy, 'plain', { 'x-gemini-nothink': 'on' }), { thinkingBudget: 0 });
  });

  test('maxBodyBytes: a body it would rewrite over the limit answers 413; one under it is rewritten', async () => {
    const sy = await nothink({ enabled: true, maxBodyBytes: 1024 });
    const big = await call(`${sy.url}/plain${NATIVE}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ contents: [{ parts: [{ text: 'x'.repeat(2000) }] }] }) });
    assert.equal(big.status, 413);
    assert.equal(big.json().code, 'SY_ERR_BODY_TOO_LARGE');
    assert.deepEqual(await thinking(sy, 'plain'), { thinkingBudget: 0 });
  });
});

describe('ai-usage options', () => {
  interface Stats { windows: { total: { calls: number; mappings: Record<string, unknown> } } }
  const usage = (upstream: string, options: Record<string, unknown>, store = 'memory://') => ({
    server: { store, admin: { key: ADMIN_KEY } },
    routes: ['counted', 'skipped'].map((name) => ({ name, match: { pathPrefix: `/${name}/` }, upstreams: [{ url: upstream }] })),
    plugins: [{ name: 'ai-usage', options: { dashboard: false, ...options } }],
  });
  const stats = async (sy: RunningSwitchyard) => (await call(`${sy.url}/stats`, { headers: ADMIN })).json<Stats>().windows.total;

  test('publicStats: false makes GET /stats need the admin key; by default it needs none', async () => {
    const upstream = await echoUpstream();
    const open = await startSwitchyard(usage(upstream.url, {}));
    assert.equal((await call(`${open.url}/stats`)).status, 200);
    const closed = await startSwitchyard(usage(upstream.url, { publicStats: false }));
    const refused = await call(`${closed.url}/stats`);
    assert.equal(refused.status, 401);
    assert.equal((await call(`${closed.url}/stats`, { headers: ADMIN })).status, 200);
  });

  test('exclude: requests on a listed route are not counted; the other route\'s are', async () => {
    const upstream = await echoUpstream();
    const sy = await startSwitchyard(usage(upstream.url, { exclude: ['skipped'] }));
    for (const path of ['/counted/a', '/skipped/a', '/skipped/b']) assert.equal((await call(sy.url + path)).status, 200);
    await eventually('the counted call is in the figures', async () => (await stats(sy)).calls === 1);
    assert.deepEqual(Object.keys((await stats(sy)).mappings), ['counted']);
  });

  test('flushMs: counts reach the shared store at that pace; with a long one they wait for the stop, past the default second', async () => {
    const upstream = await echoUpstream();
    const store = sqliteUrl();
    const reader = await startSwitchyard(usage(upstream.url, { flushMs: 100 }, store));
    const quick = await startSwitchyard(usage(upstream.url, { flushMs: 100 }, store));
    const slow = await startSwitchyard(usage(upstream.url, { flushMs: 3_600_000 }, store));
    await call(`${quick.url}/counted/a`);
    await eventually('the reader sees the quick instance\'s call', async () => (await stats(reader)).calls === 1);
    const served = Date.now();
    await call(`${slow.url}/counted/a`);
    // Had flushMs been ignored, both would sync every second: the slow one's write and the reader's
    // read-back after it take at most two seconds; wait a half more.
    await pause(Math.max(0, served + 2500 - Date.now()));
    assert.equal((await stats(reader)).calls, 1);
    await slow.stop();
    await eventually('the stop flushed the slow instance\'s call', async () => (await stats(reader)).calls === 2);
  });
});

describe('web-proxy, basic-auth options', () => {
  test('web-proxy blockPrivate: false fetches a page on 127.0.0.1 that the default refuses', async () => {
    const site = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('local page');
    });
    const open = await startSwitchyard({ server: { store: 'memory://' }, plugins: [{ name: 'web-proxy', options: { blockPrivate: false } }] });
    const fetched = await call(`${open.url}/proxy/${site.url}/page`);
    assert.equal(fetched.status, 200);
    assert.equal(fetched.text, 'local page');
    const strict = await startSwitchyard({ server: { store: 'memory://' }, plugins: [{ name: 'web-proxy' }] });
    const refused = await call(`${strict.url}/proxy/${site.url}/page`);
    assert.equal(refused.status, 403);
    assert.equal(refused.json().code, 'SY_WEB_PROXY_BLOCKED');
  });

  test('basic-auth hideCredentials: false passes Authorization on to the upstream; the default removes it', async () => {
    const upstream = await echoUpstream();
    // htpasswd -nbs bob s3cret-bob
    const users = [{ username: 'bob', passwordHash: '{SHA}3UXo8DE0A+xIsL1qxKj4C9t5kYI=' }];
    const authorization = `Basic ${Buffer.from('bob:s3cret-bob').toString('base64')}`;
    const passing = await startSwitchyard(withPlugins(upstream.url, [{ name: 'basic-auth', options: { users, hideCredentials: false } }]));
    assert.equal((await call(`${passing.url}/x`, { headers: { authorization } })).json<{ headers: Record<string, string> }>().headers.authorization, authorization);
    const hiding = await startSwitchyard(withPlugins(upstream.url, [{ name: 'basic-auth', options: { users } }]));
    assert.equal((await call(`${hiding.url}/x`, { headers: { authorization } })).json<{ headers: Record<string, string> }>().headers.authorization, undefined);
  });
});

describe('metrics options', () => {
  const withMetrics = (upstream: string, options: Record<string, unknown>) => ({ ...routeConfig([upstream], {}, { admin: { key: ADMIN_KEY } }), plugins: [{ name: 'metrics', options }] });

  test('statsPath: the panel figures answer on the configured path, and no longer on /stats/server', async () => {
    const upstream = await echoUpstream();
    const sy = await startSwitchyard(withMetrics(upstream.url, { statsPath: '/ops/panel' }));
    const moved = await call(`${sy.url}/ops/panel`, { headers: ADMIN });
    assert.equal(moved.status, 200);
    assert.equal(moved.json().windowSeconds, 60);
    const old = await call(`${sy.url}/stats/server`, { headers: ADMIN });
    assert.notEqual(old.json().windowSeconds, 60, 'the default path is proxied, not the figures');
  });

  test('processMetrics: false leaves the process series out of /metrics; by default they are there', async () => {
    const upstream = await echoUpstream();
    const lean = await startSwitchyard(withMetrics(upstream.url, { processMetrics: false }));
    const full = await startSwitchyard(withMetrics(upstream.url, {}));
    const leanText = (await call(`${lean.url}/metrics`, { headers: ADMIN })).text;
    const fullText = (await call(`${full.url}/metrics`, { headers: ADMIN })).text;
    assert.match(fullText, /^process_cpu_user_seconds_total /m);
    assert.doesNotMatch(leanText, /process_cpu_user_seconds_total/);
    assert.match(leanText, /switchyard_http_requests_total/);
  });

  test('slowLog.upstreamErrors: false logs a fast upstream failure no more; by default it is logged as upstream failed', async () => {
    const quiet = await startProxy(withMetrics('http://127.0.0.1:9', { slowLog: { upstreamErrors: false, thresholdMs: 600_000 } }));
    const loud = await startProxy(withMetrics('http://127.0.0.1:9', { slowLog: { thresholdMs: 600_000 } }));
    for (const sy of [quiet, loud]) assert.equal((await call(`${sy.url}/x`)).status, 502);
    await loud.waitForLog((l) => l.msg === 'upstream failed' && l.code === 'SY_ERR_UPSTREAM_UNREACHABLE');
    // The line is written in `done`, after the answer: the stop waits for every request's `done`.
    await quiet.stop();
    assert.ok(!quiet.logs.some((l) => l.msg === 'upstream failed'), 'no upstream-failed line');
  });
});

describe('compression options', () => {
  const TEXT = JSON.stringify({ items: Array.from({ length: 300 }, (_, i) => ({ id: i, name: `item number ${i}` })) });
  const compressing = async (options: Record<string, unknown>, type = 'application/json') => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(TEXT) });
      res.end(TEXT);
    });
    return startSwitchyard(withPlugins(upstream.url, [{ name: 'compression', options: { threshold: 0, ...options } }]));
  };

  test('encodings: with only gzip offered, a client that prefers br gets gzip; by default it gets br', async () => {
    const gzipOnly = await compressing({ encodings: ['gzip'] });
    const both = await compressing({});
    const asked = { 'accept-encoding': 'br, gzip' };
    const gz = await rawGet(`${gzipOnly.url}/x`, asked);
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(zlib.gunzipSync(gz.body).toString(), TEXT);
    assert.equal((await rawGet(`${both.url}/x`, asked)).headers['content-encoding'], 'br');
  });

  test('gzipLevel: level 1 and level 9 give the bodies zlib gives at those levels', async () => {
    for (const level of [1, 9]) {
      const sy = await compressing({ gzipLevel: level, encodings: ['gzip'] });
      const got = await rawGet(`${sy.url}/x`, { 'accept-encoding': 'gzip' });
      assert.equal(zlib.gunzipSync(got.body).toString(), TEXT);
      // The gzip header's XFL byte says "fastest" (4) or "best" (2).
      assert.equal(got.body[8], level === 1 ? 4 : 2, `level ${level}`);
    }
  });

  test('brotliQuality: quality 0 sends a larger body than quality 11 for the same text', async () => {
    const sizes: number[] = [];
    for (const quality of [0, 11]) {
      const sy = await compressing({ brotliQuality: quality, encodings: ['br'] });
      const got = await rawGet(`${sy.url}/x`, { 'accept-encoding': 'br' });
      assert.equal(zlib.brotliDecompressSync(got.body).toString(), TEXT);
      // The plugin encodes a body of known length in one call, told its size and with a window fitted to it.
      const expected = zlib.brotliCompressSync(TEXT, {
        params: { [zlib.constants.BROTLI_PARAM_QUALITY]: quality, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: Buffer.byteLength(TEXT), [zlib.constants.BROTLI_PARAM_LGWIN]: fittedWindow(Buffer.byteLength(TEXT)) },
      });
      assert.equal(got.body.length, expected.length, `quality ${quality}`);
      sizes.push(got.body.length);
    }
    assert.ok(sizes[0]! > sizes[1]!, `q0 ${sizes[0]} bytes, q11 ${sizes[1]} bytes`);
  });

  test('skipTypes: a listed type passes uncompressed; with the default list the same type is compressed', async () => {
    const skipping = await compressing({ skipTypes: ['application/x-ndjson'] }, 'application/x-ndjson');
    const plain = await compressing({}, 'application/x-ndjson');
    const asked = { 'accept-encoding': 'gzip' };
    const skipped = await rawGet(`${skipping.url}/x`, asked);
    assert.equal(skipped.headers['content-encoding'], undefined);
    assert.equal(skipped.body.toString(), TEXT);
    assert.equal((await rawGet(`${plain.url}/x`, asked)).headers['content-encoding'], 'gzip');
  });
});

describe('proxy-stats options', () => {
  test('path and public: false move the figures and put them behind the admin key; by default /stats answers anyone', async () => {
    const upstream = await echoUpstream();
    const config = (options: Record<string, unknown>) => ({ ...routeConfig([upstream.url], {}, { admin: { key: ADMIN_KEY } }), plugins: [{ name: 'proxy-stats', options }] });
    const moved = await startSwitchyard(config({ path: '/ops/traffic', public: false }));
    await call(`${moved.url}/a`);
    assert.equal((await call(`${moved.url}/ops/traffic`)).status, 401);
    const figures = await call(`${moved.url}/ops/traffic`, { headers: ADMIN });
    assert.equal(figures.status, 200);
    assert.deepEqual(figures.json<{ upstreams: { name: string; requests: number }[] }>().upstreams.map((u) => [u.name, u.requests]), [[upstream.url, 1]]);
    assert.equal((await call(`${moved.url}/stats`)).json().upstream, 'echo', '/stats is proxied like any path');
    const plain = await startSwitchyard(config({}));
    assert.equal((await call(`${plain.url}/stats`)).json().requests, 0);
  });
});

describe('cache options', () => {
  /** A cached route to an upstream that counts requests by path; `hold` keeps answers back until released. */
  const cached = async (options: Record<string, unknown>) => {
    const held: (() => void)[] = [];
    const state = { hold: false, count: new Map<string, number>() };
    const upstream = await startUpstream((req, res) => {
      const path = new URL(req.url!, 'http://x').pathname;
      state.count.set(path, (state.count.get(path) ?? 0) + 1);
      const send = () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`${path} #${state.count.get(path)}`);
      };
      if (state.hold) held.push(send);
      else send();
    });
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'cache', options: { ttl: 60, persistent: { enabled: false }, ...options } }], { admin: { key: ADMIN_KEY } }));
    const release = () => {
      state.hold = false;
      for (const send of held.splice(0)) send();
    };
    return { sy, upstream, state, release, asked: (path: string) => state.count.get(path) ?? 0 };
  };
  const xCache = async (url: string, init: RequestInit = {}) => (await call(url, init)).headers.get('x-cache');

  test('ttlByPath: a path under a short prefix expires on its own TTL while another path keeps the route\'s ttl', async () => {
    const { sy, asked } = await cached({ ttlByPath: { '/short': 1 } });
    const clock = fakeClock();
    try {
      for (const path of ['/short/a', '/long/a']) assert.equal(await xCache(sy.url + path), 'MISS');
      clock.advance(2);
      assert.equal(await xCache(`${sy.url}/short/a`), 'EXPIRED');
      assert.equal(await xCache(`${sy.url}/long/a`), 'HIT');
      assert.deepEqual([asked('/short/a'), asked('/long/a')], [2, 1]);
    } finally {
      clock.restore();
    }
  });

  test('bypassHeader: the configured header skips the cache, and the default one no longer does', async () => {
    const { sy, asked } = await cached({ bypassHeader: 'X-Skip-Cache' });
    assert.equal(await xCache(`${sy.url}/a`), 'MISS');
    assert.equal(await xCache(`${sy.url}/a`, { headers: { 'x-skip-cache': '1' } }), 'BYPASS');
    assert.equal(await xCache(`${sy.url}/a`, { headers: { 'x-cache-bypass': '1' } }), 'HIT');
    assert.equal(asked('/a'), 2);
  });

  test('bypassQuery: the configured parameter skips the cache, and the default one no longer does', async () => {
    const { sy, asked } = await cached({ bypassQuery: 'fresh' });
    assert.equal(await xCache(`${sy.url}/a?fresh`), 'BYPASS');
    assert.equal(await xCache(`${sy.url}/a?fresh=1`), 'BYPASS');
    assert.equal(await xCache(`${sy.url}/a?nocache`), 'MISS');
    assert.equal(await xCache(`${sy.url}/a?nocache`), 'HIT');
    assert.equal(asked('/a'), 3);
  });

  test('coalesce: false sends every concurrent miss for one key upstream; none waits for another', async () => {
    const { sy, state, release, asked } = await cached({ coalesce: false });
    state.hold = true;
    const answers = Promise.all(Array.from({ length: 5 }, () => xCache(`${sy.url}/same`)));
    // With coalescing on, only the first would arrive and this would time out.
    await eventually('all five misses reached the upstream', () => asked('/same') === 5);
    release();
    assert.deepEqual(await answers, ['MISS', 'MISS', 'MISS', 'MISS', 'MISS']);
  });

  test('coalesceWaitMs: a miss waiting on a slow one for the same key gives up after that long and sends its own request', async () => {
    const { sy, state, release, asked } = await cached({ coalesceWaitMs: 100 });
    state.hold = true;
    const leader = xCache(`${sy.url}/slow`);
    await eventually('the first miss reached the upstream', () => asked('/slow') === 1);
    const follower = xCache(`${sy.url}/slow`);
    // With the default 10 s wait, the follower would still be waiting when this bound runs out.
    await eventually('the follower sent its own request', () => asked('/slow') === 2, 5000);
    release();
    assert.deepEqual(await Promise.all([leader, follower]), ['MISS', 'MISS']);
  });
});

describe('proxy-chain options', () => {
  /** A nested proxy as the chain sees one: says it is a proxy on every answer and records the clears it is sent. */
  const nestedProxy = async (answerClearAfterMs = 0) => {
    const timers: NodeJS.Timeout[] = [];
    const upstream = await startUpstream((req, res) => {
      const send = () => {
        res.writeHead(200, { 'content-type': 'application/json', 'x-tmdb-proxy': 'nested' });
        res.end('{"ok":true}');
      };
      if (req.url!.startsWith('/cache/clear') && answerClearAfterMs > 0) timers.push(setTimeout(send, answerClearAfterMs));
      else send();
    });
    return { upstream, clears: () => upstream.requests.filter((r) => r.url.startsWith('/cache/clear')), stopTimers: () => timers.forEach(clearTimeout) };
  };
  const front = (upstream: string, options: Record<string, unknown>) => startSwitchyard(withPlugins(upstream, [
    { name: 'proxy-chain', options },
    { name: 'cache', options: { ttl: 60, persistent: { enabled: false } } },
  ], { admin: { key: ADMIN_KEY } }));
  /** A request that teaches the front proxy its upstream is a nested proxy, then a prefix clear there. */
  const clear = async (sy: RunningSwitchyard, headers: Record<string, string> = {}) => {
    await call(`${sy.url}/movie/1`);
    const answer = await call(`${sy.url}/cache/clear?prefix=/movie`, { method: 'POST', headers: { ...ADMIN, ...headers } });
    assert.equal(answer.status, 200);
    return answer.json<{ cascade: { ok?: boolean; error?: string; skipped?: string }[] }>().cascade;
  };

  test('versionHeader: the version goes out under the configured header name instead of the default one', async () => {
    const upstream = await echoUpstream();
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'proxy-chain', options: { versionHeader: 'X-Chain-Version', version: '9.9.9' } }]));
    const answer = await call(`${sy.url}/x`);
    assert.equal(answer.headers.get('x-chain-version'), '9.9.9');
    assert.equal(answer.headers.get('x-tmdb-proxy-version'), null);
  });

  test('adminPath: the nested-proxy list answers on the configured path; the default path is proxied', async () => {
    const { upstream } = await nestedProxy();
    const sy = await front(upstream.url, { adminPath: '/chain/nested' });
    await call(`${sy.url}/movie/1`);
    const listed = (await call(`${sy.url}/chain/nested`)).json<{ nested: { url: string; kind: string }[] }>();
    assert.deepEqual(listed.nested.map((n) => [n.url, n.kind]), [[upstream.url, 'nested']]);
    assert.deepEqual((await call(`${sy.url}/upstream/nested`)).json(), { ok: true }, 'the default path went to the upstream');
  });

  test('cascade.hopHeader: the clear passed on counts its hops under the configured header', async () => {
    const nested = await nestedProxy();
    const sy = await front(nested.upstream.url, { cascade: { hopHeader: 'X-Clear-Hops' } });
    assert.equal((await clear(sy))[0]!.ok, true);
    const sent = nested.clears();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.headers['x-clear-hops'], '1');
    assert.equal(sent[0]!.headers['x-cache-clear-hops'], undefined);
  });

  test('cascade.maxHops: a clear that arrives with that many hops goes no further; with the default limit it does', async () => {
    const nested = await nestedProxy();
    const limited = await front(nested.upstream.url, { cascade: { maxHops: 2 } });
    const cascade = await clear(limited, { 'x-cache-clear-hops': '2' });
    assert.match(cascade[0]!.skipped ?? '', /hop limit reached \(2 of 2\)/);
    assert.equal(nested.clears().length, 0);
    const open = await front(nested.upstream.url, {});
    await clear(open, { 'x-cache-clear-hops': '2' });
    assert.equal(nested.clears().length, 1);
    assert.equal(nested.clears()[0]!.headers['x-cache-clear-hops'], '3');
  });

  test('cascade.adminKey: the nested proxy is sent its own key, not the key this clear was made with', async () => {
    const nested = await nestedProxy();
    const withKey = await front(nested.upstream.url, { cascade: { adminKey: 'nested-admin-key' } });
    await clear(withKey);
    assert.equal(nested.clears()[0]!.headers['x-api-key'], 'nested-admin-key');
    const passing = await front(nested.upstream.url, {});
    await clear(passing);
    assert.equal(nested.clears()[1]!.headers['x-api-key'], ADMIN_KEY);
  });

  test('cascade.timeoutMs: a nested proxy slower than the limit is reported failed instead of awaited', async () => {
    const nested = await nestedProxy(5000);
    try {
      const sy = await front(nested.upstream.url, { cascade: { timeoutMs: 200 } });
      const [result] = await clear(sy);
      // With the default 10 s limit, the nested answer (after 5 s) would arrive and say ok.
      assert.equal(result!.ok, false);
      assert.match(result!.error ?? '', /timeout|aborted/i);
    } finally {
      nested.stopTimers();
    }
  });
});

describe('confluence-guard options', () => {
  /** A Confluence stand-in: files, a page → space API, and a redirect to a single sign-on page. */
  const confluence = () => startUpstream((req, res) => {
    const url = new URL(req.url!, 'http://x');
    if (url.pathname.startsWith('/rest/api/content/')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"space":{"key":"DOC"}}');
    }
    if (url.pathname.startsWith('/download/attachments/2/')) {
      res.writeHead(302, { location: '/my-sso/start?next=/download' });
      return void res.end();
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-disposition': 'attachment; filename="f.txt"' });
    res.end('file body');
  });
  const guarded = (upstream: string, options: Record<string, unknown>) => startSwitchyard(withPlugins(upstream, [{ name: 'confluence-guard', options }]));

  test('loginMarkers: a redirect to a listed single sign-on path is a 502 credentials error; the default markers let it through', async () => {
    const upstream = await confluence();
    const custom = await guarded(upstream.url, { loginMarkers: ['/my-sso/'] });
    const refused = await call(`${custom.url}/download/attachments/2/f.txt`, { redirect: 'manual' });
    assert.equal(refused.status, 502);
    assert.equal(refused.json().code, 'CONFLUENCE_CREDENTIALS_REFUSED');
    const plain = await guarded(upstream.url, {});
    assert.equal((await call(`${plain.url}/download/attachments/2/f.txt`, { redirect: 'manual' })).status, 302);
  });

  test('spaceTtl: a page\'s space is looked up again once the TTL ran out; with the default it is remembered', async () => {
    const upstream = await confluence();
    const lookups = () => upstream.requests.filter((r) => r.url.startsWith('/rest/api/content/1')).length;
    const short = await guarded(upstream.url, { allowSpaceKeys: ['DOC'], spaceTtl: 1 });
    const long = await guarded(upstream.url, { allowSpaceKeys: ['DOC'] });
    for (const sy of [short, long]) assert.equal((await call(`${sy.url}/download/attachments/1/f.txt`)).text, 'file body');
    // Both lookups were answered before their files: each is remembered until at most a second from now.
    assert.equal(lookups(), 2);
    // The TTL is in seconds of the wall clock: let one and a bit pass.
    await pause(1100);
    for (const sy of [short, long]) assert.equal((await call(`${sy.url}/download/attachments/1/f.txt`)).text, 'file body');
    assert.equal(lookups(), 3, 'only the one with spaceTtl: 1 asked again');
  });
});

describe('health-check options', () => {
  test('active.jitter: 0 probes exactly every interval; 1 spreads the probes from none to twice the interval apart', async () => {
    const gaps: Record<string, number[]> = {};
    for (const jitter of [0, 1]) {
      const probes: number[] = [];
      const upstream = await startUpstream((req, res) => {
        if (req.url === '/healthz') probes.push(performance.now());
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      });
      const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'health-check', options: { active: { interval: 100, timeout: 1000, path: '/healthz', jitter } } }]));
      await eventually(`16 probes with jitter ${jitter}`, () => probes.length >= 16, 20_000);
      await sy.stop();
      gaps[jitter] = probes.slice(1, 16).map((at, i) => at - probes[i]!);
    }
    // Timers never fire early, so without jitter no gap is shorter than the interval (1 ms of timer rounding aside).
    assert.ok(gaps[0]!.every((gap) => gap >= 99), `jitter 0 gaps: ${gaps[0]!.map(Math.round).join(', ')}`);
    // With jitter 1 each gap is uniform in [0, 200] ms, so one shorter than the interval, which jitter 0
    // never gives, comes with a chance of 1 - 0.5^15; a busy machine's timer delays lower that only a little.
    assert.ok(gaps[1]!.some((gap) => gap < 95), `jitter 1 gaps: ${gaps[1]!.map(Math.round).join(', ')}`);
  });
});

describe('balancer options', () => {
  interface Row { id: string; name: string; slowStart: number | null; ewmaMs: number | null; weights: { base: number | null; dynamic: number | null } }
  const rows = async (sy: RunningSwitchyard) => (await call(`${sy.url}/upstream`)).json<{ routes: { upstreams: Row[] }[] }>().routes[0]!.upstreams;
  const balanced = (upstreams: { url: string; name: string }[], options: Record<string, unknown>) => startSwitchyard({
    server: { store: 'memory://', admin: { key: ADMIN_KEY } },
    routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams, plugins: [{ name: 'balancer', options }] }],
  });
  /** A route to an upstream that answers once and is then closed: one fast success, then failures. */
  const oneThenGone = async (options: Record<string, unknown>) => {
    const upstream = await echoUpstream('once');
    const sy = await balanced([{ url: upstream.url, name: 'once' }], options);
    assert.equal((await call(`${sy.url}/a`)).status, 200);
    await upstream.close();
    assert.equal((await call(`${sy.url}/b`)).status, 502);
    return (await rows(sy))[0]!;
  };

  test('hashReplicas: header-hash places keys on a ring of that many points per upstream', async () => {
    const upstreams = await Promise.all(['a', 'b', 'c'].map((name) => echoUpstream(name)));
    const sy = await balanced(upstreams.map((u, i) => ({ url: u.url, name: 'abc'[i]! })), { algorithm: 'header-hash', hashKey: 'x-user', hashReplicas: 1 });
    const members = (await rows(sy)).map((row) => ({ key: row.id, weight: 1, value: row.name }));
    const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
    const expected = (replicas: number) => users.map((user) => new HashRing(members, replicas).lookup(user));
    assert.notDeepEqual(expected(1), expected(160), 'one point and 160 points per upstream place these keys differently');
    const got: string[] = [];
    for (const user of users) got.push((await call(`${sy.url}/x`, { headers: { 'x-user': user } })).json<{ upstream: string }>().upstream);
    assert.deepEqual(got, expected(1));
  });

  test('slowStart.aggression: a high aggression starts a joining upstream near its full weight; aggression 1 starts it at the minimum', async () => {
    const first = await echoUpstream('first');
    const joining = await echoUpstream('joining');
    const factors: Record<string, number | null> = {};
    for (const aggression of [1000, 1]) {
      const sy = await balanced([{ url: first.url, name: 'first' }], { slowStart: { duration: 600_000, minWeightPercent: 10, aggression } });
      const added = await call(`${sy.url}/upstream/main`, { method: 'POST', headers: { ...ADMIN, 'content-type': 'application/json' }, body: JSON.stringify({ url: joining.url, name: 'joining' }) });
      assert.equal(added.status, 201);
      factors[aggression] = (await rows(sy)).find((row) => row.name === 'joining')!.slowStart;
      await sy.stop();
    }
    // (elapsed / 10 min) ^ (1 / aggression): a few ms in, 0.99 with aggression 1000, the 10 % floor with 1.
    assert.ok(factors[1000]! > 0.9, `aggression 1000: ${factors[1000]}`);
    assert.equal(factors[1], 0.1);
  });

  test('latency.failurePenalty: a failed attempt counts as that many ms in the upstream\'s EWMA', async () => {
    const sy = await balanced([{ url: 'http://127.0.0.1:9', name: 'gone' }], { latency: { failurePenalty: 70_000 } });
    assert.equal((await call(`${sy.url}/a`)).status, 502);
    assert.equal((await rows(sy))[0]!.ewmaMs, 70_000);
    const plain = await balanced([{ url: 'http://127.0.0.1:9', name: 'gone' }], {});
    assert.equal((await call(`${plain.url}/a`)).status, 502);
    assert.equal((await rows(plain))[0]!.ewmaMs, 5000);
  });

  test('latency.ewmaDecay: the short EWMA keeps that share of the old figure when a new sample comes', async () => {
    // A success of s ms (under 10 s, however busy the machine), then a failure counted as 1 000 000 ms:
    // (1 - decay) · 1 000 000 + decay · s.
    const half = await oneThenGone({ latency: { ewmaDecay: 0.5, failurePenalty: 1_000_000 } });
    assert.ok(half.ewmaMs! >= 500_000 && half.ewmaMs! < 505_000, `ewmaDecay 0.5: ${half.ewmaMs} ms`);
    const plain = await oneThenGone({ latency: { failurePenalty: 1_000_000 } });
    assert.ok(plain.ewmaMs! >= 200_000 && plain.ewmaMs! < 208_000, `default 0.8: ${plain.ewmaMs} ms`);
  });

  test('latency.baseDecay: the long EWMA, and the base weight drawn from it, follow that decay', async () => {
    // Long EWMA after (s ms, then a 10 000 ms failure): decay 0.5 gives at least 5000 ms, so a base
    // weight of at most 20 000 / 5000 = 4; the default 0.98 gives 200 ms plus 0.98 s, a base weight
    // of 5 or more while s stays under 3.8 s.
    const half = await oneThenGone({ latency: { baseDecay: 0.5, failurePenalty: 10_000 } });
    assert.ok(half.weights.base! <= 4, `baseDecay 0.5: base weight ${half.weights.base}`);
    const plain = await oneThenGone({ latency: { failurePenalty: 10_000 } });
    assert.ok(plain.weights.base! >= 5, `default 0.98: base weight ${plain.weights.base}`);
  });

  test('latency.maxWeight: a fast upstream\'s base and dynamic weights stop at that ceiling', async () => {
    const upstream = await echoUpstream('fast');
    const capped = await balanced([{ url: upstream.url, name: 'fast' }], { latency: { maxWeight: 7 } });
    const plain = await balanced([{ url: upstream.url, name: 'fast' }], {});
    for (const sy of [capped, plain]) assert.equal((await call(`${sy.url}/a`)).status, 200);
    const [cappedRow] = await rows(capped);
    assert.deepEqual([cappedRow!.weights.base, cappedRow!.weights.dynamic], [7, 7]);
    // Any answer under 2.8 s weighs more than 7 before the ceiling: the default ceiling (100) lets it show.
    assert.ok((await rows(plain))[0]!.weights.base! > 7, `default ceiling: base weight ${(await rows(plain))[0]!.weights.base}`);
  });
});
