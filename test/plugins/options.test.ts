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
import { noRedis, startRedis } from '../helpers/redis.js';
import { routeConfig, startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

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
    // Past the default flush (1 s) and several of the reader's own: had flushMs been ignored, the call would be there.
    await pause(Math.max(0, served + 1500 - Date.now()));
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
      assert.equal(got.body.length, zlib.brotliCompressSync(TEXT, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: quality } }).length, `quality ${quality}`);
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
