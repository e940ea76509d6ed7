// The cache plugin through a real route: what is stored, how the key is built, what a hit looks
// like, coalescing, conditional requests, PURGE and the admin routes.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { gunzipSync, gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../../core/index.js';
import { catalogs, pluginSource, startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { ADMIN, cacheConfig, countingUpstream, eventually, get, info, keys, type CountingUpstream } from './cache-support.js';

const running: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.stop();
});

async function upstreamAnd(options: Record<string, unknown>, handler?: Parameters<typeof countingUpstream>[0], server: Record<string, unknown> = {}, extra: Record<string, unknown> = {}, files?: Record<string, string>): Promise<{ up: CountingUpstream; sy: RunningSwitchyard }> {
  const up = await countingUpstream(handler);
  running.push({ stop: () => up.close() });
  const sy = await startSwitchyard(cacheConfig(up.url, options, server, extra), { files });
  running.push(sy);
  return { up, sy };
}

describe('options', () => {
  test('bad options are refused with the path of each problem, and good ones get their defaults', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-cache-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, JSON.stringify(cacheConfig('http://127.0.0.1:1', {
      ttl: -1, memory: { maxEntries: 0 }, statuses: [200, 'lots'], surprise: true,
    })));
    await assert.rejects(loadConfig({ file }, catalogs, {}), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      const text = err.problems.join('\n');
      assert.match(text, /routes\[0\]\.plugins\[0\]\.options\.ttl: must be >= 0/);
      assert.match(text, /routes\[0\]\.plugins\[0\]\.options\.memory\.maxEntries: must be >= 1/);
      assert.match(text, /routes\[0\]\.plugins\[0\]\.options\.statuses\[1\]: must be integer/);
      assert.match(text, /routes\[0\]\.plugins\[0\]\.options: unknown key "surprise"/);
      return true;
    });

    const good = join(dir, 'good.yaml');
    writeFileSync(good, JSON.stringify(cacheConfig('http://127.0.0.1:1', { ttl: 60 })));
    const loaded = await loadConfig({ file: good }, catalogs, {});
    const options = loaded.routePlugins[0]![0]!.options as Record<string, unknown>;
    assert.equal(options.ttl, 60);
    assert.deepEqual(options.statuses, [200, 203, 204, 301]);
    assert.deepEqual(options.memory, { maxEntries: 1000, maxBytes: 64 * 1024 * 1024 });
    assert.deepEqual(options.excludeQueryParams, ['api_key']);
  });
});

describe('hits and misses', () => {
  test('the second GET is a HIT with Age and the same body, and the upstream is asked once', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 });
    const first = await get(sy, '/items/1');
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('x-cache'), 'MISS');
    const second = await get(sy, '/items/1');
    assert.equal(second.headers.get('x-cache'), 'HIT');
    assert.equal(second.text, first.text);
    assert.equal(second.headers.get('content-type'), 'application/json');
    assert.equal(second.headers.get('etag'), '"v1"');
    assert.match(second.headers.get('age') ?? '', /^\d+$/);
    assert.ok(second.headers.get('x-request-id'));
    assert.notEqual(second.headers.get('x-request-id'), first.headers.get('x-request-id'));
    const head = await fetch(`${sy.url}/items/1`, { method: 'HEAD' });
    assert.equal(head.headers.get('x-cache'), 'HIT');
    assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(first.text)));
    assert.equal(up.count('/items/1'), 1);
    const counters = (await info(sy)).routes.main!;
    assert.equal(counters.misses, 1);
    assert.equal(counters.hits.memory, 2);
    assert.equal(counters.bytesServed.memory, 2 * Buffer.byteLength(first.text));
  });

  test('bypass prefixes, the bypass header and the bypass query switch skip the cache', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60, bypassPaths: ['/generate'] });
    for (let i = 0; i < 2; i++) assert.equal((await get(sy, '/generate/x')).headers.get('x-cache'), 'BYPASS');
    await get(sy, '/y');
    assert.equal((await get(sy, '/y', { headers: { 'x-cache-bypass': '1' } })).headers.get('x-cache'), 'BYPASS');
    assert.equal((await get(sy, '/y?nocache=1')).headers.get('x-cache'), 'BYPASS');
    assert.equal((await get(sy, '/y', { headers: { authorization: 'Bearer someone' } })).headers.get('x-cache'), 'BYPASS');
    assert.equal((await get(sy, '/y')).headers.get('x-cache'), 'HIT');
    // Last: a successful POST also invalidates /y (RFC 9111 §4.4, cache-conformance.test.ts).
    assert.equal((await get(sy, '/y', { method: 'POST', body: 'x' })).headers.get('x-cache'), 'BYPASS');
    assert.equal(up.count('/generate/x'), 2);
    assert.equal(up.count('/y'), 5);
  });

  test('an HTML error page on a JSON route is not cached and counts as a validation failure', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60, contentTypes: ['application/json'] }, (req, res) => {
      if (req.url === '/broken') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        return res.end('<html><body>Service temporarily unavailable</body></html>');
      }
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
      res.end('{"ok":true}');
    });
    for (let i = 0; i < 2; i++) assert.equal((await get(sy, '/broken')).headers.get('x-cache'), 'MISS');
    assert.equal(up.count('/broken'), 2);
    await get(sy, '/fine');
    assert.equal((await get(sy, '/fine')).headers.get('x-cache'), 'HIT');
    const counters = (await info(sy)).routes.main!;
    assert.equal(counters.validationFailures, 2);
    assert.equal(counters.stored, 1);
  });

  test('Set-Cookie, Cache-Control private or no-store, Vary: * and unlisted statuses are never stored', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 }, (req, res) => {
      const headers: Record<string, string> = { 'content-type': 'text/plain' };
      if (req.url === '/cookie') headers['set-cookie'] = 'session=1';
      if (req.url === '/private') headers['cache-control'] = 'private, max-age=60';
      if (req.url === '/nostore') headers['cache-control'] = 'no-store';
      if (req.url === '/vary') headers.vary = '*';
      res.writeHead(req.url === '/created' ? 201 : req.url === '/missing' ? 404 : 200, headers);
      res.end('x');
    });
    const paths = ['/cookie', '/private', '/nostore', '/vary', '/created', '/missing'];
    for (const path of paths) for (let i = 0; i < 2; i++) assert.equal((await get(sy, path)).headers.get('x-cache'), 'MISS', path);
    for (const path of paths) assert.equal(up.count(path), 2, path);
    assert.equal((await info(sy)).routes.main!.uncacheable, 12);
  });

  test('a 404 is stored only with a negative TTL', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60, negativeTtl: 5 }, (_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":"not found"}');
    });
    await get(sy, '/nothing');
    const again = await get(sy, '/nothing');
    assert.equal(again.status, 404);
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.equal(up.count(), 1);
  });

  test('a body over maxBodyBytes streams through whole and is not stored', async () => {
    const big = Buffer.alloc(64 * 1024, 'b');
    const { up, sy } = await upstreamAnd({ ttl: 60, maxBodyBytes: 16 * 1024 }, (req, res) => {
      // One with a length, one chunked: the chunked one is only found too large while streaming.
      res.writeHead(200, req.url === '/sized' ? { 'content-type': 'text/plain', 'content-length': big.length } : { 'content-type': 'text/plain' });
      res.write(big.subarray(0, 32 * 1024));
      res.end(big.subarray(32 * 1024));
    });
    for (const path of ['/sized', '/chunked']) {
      for (let i = 0; i < 2; i++) {
        const res = await get(sy, path);
        assert.equal(res.headers.get('x-cache'), 'MISS');
        assert.equal(res.text.length, big.length);
      }
      assert.equal(up.count(path), 2);
    }
    assert.equal((await info(sy)).memory[0]!.entries, 0);
  });

  test('per content type TTLs and, when enabled, the upstream Cache-Control decide how long an entry is fresh', async () => {
    const { sy } = await upstreamAnd({ ttl: 10, ttlByContentType: { 'image/*': 86400, 'application/json': 3600 }, honourUpstreamCacheControl: true }, (req, res) => {
      const headers: Record<string, string> = { 'content-type': req.url === '/pic' ? 'image/png' : req.url === '/text' ? 'text/plain' : 'application/json' };
      if (req.url === '/told') headers['cache-control'] = 'public, max-age=120, s-maxage=30';
      res.writeHead(200, headers);
      res.end('x');
    });
    for (const path of ['/pic', '/api', '/text', '/told']) await get(sy, path);
    const rows = (await keys(sy)).keys;
    const ttlOf = (key: string) => {
      const row = rows.find((r) => r.key === key) as unknown as { storedAt: string; expiresAt: string };
      return (Date.parse(row.expiresAt) - Date.parse(row.storedAt)) / 1000;
    };
    assert.equal(ttlOf('GET /pic'), 86400);
    assert.equal(ttlOf('GET /api'), 3600);
    assert.equal(ttlOf('GET /text'), 10);
    assert.equal(ttlOf('GET /told'), 30, 's-maxage wins for a shared cache');
  });
});

describe('the cache key', () => {
  test('excluded parameters (a client-sent or an injected api_key) never reach a key, a stored entry or admin output', async () => {
    const injector = pluginSource('inject-key', `
    api.hooks.preRequest.tap('inject-key', (ctx) => {
      ctx.outgoing.path += (ctx.outgoing.path.includes('?') ? '&' : '?') + 'api_key=INJECTED-SECRET-42';
    });`);
    const { up, sy } = await upstreamAnd({ ttl: 60 }, (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ hasKey: (req.url ?? '').includes('api_key=') }));
    }, { store: 'sqlite://./cache.sqlite' }, { plugins: [{ path: './inject.mjs' }] }, { 'inject.mjs': injector });

    const first = await get(sy, '/movie/7?b=2&api_key=CLIENT-SECRET-9&a=1');
    assert.equal(first.headers.get('x-cache'), 'MISS');
    assert.equal(up.seen[0]!.url.includes('api_key=INJECTED-SECRET-42'), true, 'the upstream got the injected key');
    const second = await get(sy, '/movie/7?a=1&b=2');
    assert.equal(second.headers.get('x-cache'), 'HIT', 'same key without the excluded parameter, in another order');
    assert.equal(up.count(), 1);

    await eventually('the entry reached the store', async () => (await info(sy)).persistent!.entries === 1);
    const listed = await keys(sy);
    assert.deepEqual(listed.keys.map((k) => k.key), ['GET /movie/7?a=1&b=2']);
    const search = await get(sy, '/cache/search?q=SECRET', { headers: ADMIN });
    assert.equal(search.json<{ total: number }>().total, 0);
    for (const text of [JSON.stringify(listed), search.text, JSON.stringify(await info(sy))]) {
      assert.doesNotMatch(text, /SECRET/);
    }
    await sy.stop();
    running.splice(running.indexOf(sy), 1);
    const files = ['cache.sqlite', 'cache.sqlite-wal'].map((f) => join(sy.dir, f)).filter((f) => existsSync(f));
    assert.ok(files.length > 0);
    for (const file of files) {
      const raw = readFileSync(file).toString('latin1');
      assert.doesNotMatch(raw, /SECRET/, `${file} holds no secret`);
    }
  });

  test('with Vary headers in the key, each variant is its own entry', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60, vary: ['accept-language'] }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', vary: 'Accept-Language' });
      res.end(String(req.headers['accept-language']));
    });
    assert.equal((await get(sy, '/hello', { headers: { 'accept-language': 'de' } })).text, 'de');
    assert.equal((await get(sy, '/hello', { headers: { 'accept-language': 'fr' } })).text, 'fr');
    const de = await get(sy, '/hello', { headers: { 'accept-language': 'de' } });
    assert.equal(de.headers.get('x-cache'), 'HIT');
    assert.equal(de.text, 'de');
    assert.equal(up.count(), 2);
  });

  test('Accept-Encoding makes variants: the same accepted codings share one, other codings get their own, nobody gets a coding it cannot read', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 }, (req, res) => {
      const gzip = /gzip/.test(String(req.headers['accept-encoding']));
      const body = gzipSync('hello');
      res.writeHead(200, gzip ? { 'content-type': 'text/plain', 'content-encoding': 'gzip', vary: 'Accept-Encoding' } : { 'content-type': 'text/plain', vary: 'Accept-Encoding' });
      res.end(gzip ? body : 'hello');
    });
    const raw = (headers: Record<string, string>) => new Promise<{ xCache: string; encoding?: string; body: Buffer }>((resolve, reject) => {
      http.get(`${sy.url}/greeting`, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ xCache: String(res.headers['x-cache']), encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }));
      }).on('error', reject);
    });
    assert.equal((await raw({ 'accept-encoding': 'gzip, br' })).xCache, 'MISS');
    const reordered = await raw({ 'accept-encoding': 'BR,gzip;q=1' });
    assert.equal(reordered.xCache, 'HIT', 'the same codings, written otherwise, are the same variant');
    assert.equal(gunzipSync(reordered.body).toString(), 'hello');
    const browser = await raw({ 'accept-encoding': 'gzip, deflate, br' });
    assert.equal(browser.xCache, 'MISS', 'other codings accepted: another variant');
    assert.equal(gunzipSync(browser.body).toString(), 'hello');
    const plain = await raw({});
    assert.equal(plain.xCache, 'MISS', 'gzip is not served to a client that did not ask for it');
    assert.equal(plain.encoding, undefined);
    assert.equal(plain.body.toString(), 'hello');
    const refusing = await raw({ 'accept-encoding': 'gzip;q=0' });
    assert.equal(refusing.xCache, 'HIT', 'gzip refused is no coding accepted: the identity variant');
    assert.equal(refusing.encoding, undefined);
    assert.equal((await raw({ 'accept-encoding': 'gzip, deflate, br' })).xCache, 'HIT', 'the first variant was kept beside the others');
    assert.equal(up.count(), 3);
  });
});

describe('coalescing', () => {
  test('100 concurrent misses for one key send one upstream request, and all get its answer', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { up, sy } = await upstreamAnd({ ttl: 60 }, (_req, res, n) => {
      void released.then(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ n }));
      });
    });
    const answers = Array.from({ length: 100 }, () => get(sy, '/slow'));
    // The upstream holds its answer until 99 requests are waiting on the first one's flight.
    await eventually('99 requests wait on one flight', async () => (await info(sy)).coalescing.waiting === 99, 10_000);
    assert.equal(up.count('/slow'), 1);
    release();
    const all = await Promise.all(answers);
    assert.ok(all.every((a) => a.status === 200 && a.text === '{"n":1}'));
    assert.equal(all.filter((a) => a.headers.get('x-cache') === 'MISS').length, 1);
    assert.equal(up.count('/slow'), 1);
    assert.equal((await info(sy)).routes.main!.hits.coalesced, 99);
  });

  test('when the first request cannot be cached, the waiting ones send their own', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { up, sy } = await upstreamAnd({ ttl: 60 }, (_req, res) => {
      void released.then(() => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
        res.end('personal');
      });
    });
    const answers = Array.from({ length: 5 }, () => get(sy, '/personal'));
    await eventually('4 requests wait', async () => (await info(sy)).coalescing.waiting === 4);
    release();
    const all = await Promise.all(answers);
    assert.ok(all.every((a) => a.text === 'personal' && a.headers.get('x-cache') === 'MISS'));
    assert.equal(up.count('/personal'), 5);
  });
});

describe('conditional requests', () => {
  test('a hit answers 304 to a matching If-None-Match or an If-Modified-Since not older than Last-Modified', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 });
    const first = await get(sy, '/doc', { headers: { 'if-none-match': '"v1"' } });
    assert.equal(first.status, 200, 'a miss fetches the whole body from the upstream');
    assert.equal(up.seen[0]!.headers['if-none-match'], undefined);
    const match = await get(sy, '/doc', { headers: { 'if-none-match': 'W/"v0", "v1"' } });
    assert.equal(match.status, 304);
    assert.equal(match.text, '');
    assert.equal(match.headers.get('etag'), '"v1"');
    assert.equal(match.headers.get('x-cache'), 'HIT');
    const other = await get(sy, '/doc', { headers: { 'if-none-match': '"v9"' } });
    assert.equal(other.status, 200);
    const since = await get(sy, '/doc', { headers: { 'if-modified-since': 'Tue, 02 Jan 2024 00:00:00 GMT' } });
    assert.equal(since.status, 304);
    const older = await get(sy, '/doc', { headers: { 'if-modified-since': 'Sun, 31 Dec 2023 00:00:00 GMT' } });
    assert.equal(older.status, 200);
    assert.equal(up.count(), 1);
    assert.equal((await info(sy)).routes.main!.notModified, 2);
  });

  test('with honourClientCacheControl, no-cache revalidates and only-if-cached answers 504 on a miss', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60, honourClientCacheControl: true });
    const miss = await get(sy, '/cc', { headers: { 'cache-control': 'only-if-cached' } });
    assert.equal(miss.status, 504);
    assert.equal(miss.json().code, 'SY_ERR_CACHE_ONLY_IF_CACHED');
    assert.equal(up.count(), 0);
    await get(sy, '/cc');
    assert.equal((await get(sy, '/cc', { headers: { 'cache-control': 'only-if-cached' } })).headers.get('x-cache'), 'HIT');
    const fresh = await get(sy, '/cc', { headers: { 'cache-control': 'no-cache' } });
    assert.equal(fresh.json().n, 2);
    assert.equal((await get(sy, '/cc')).json().n, 2, 'the revalidated answer replaced the entry');
    assert.equal((await get(sy, '/cc', { headers: { 'cache-control': 'no-store' } })).headers.get('x-cache'), 'BYPASS');
    assert.equal(up.count(), 3);
  });
});

describe('purging and admin', () => {
  test('PURGE <url> with the admin key evicts the entry (200), a second one finds nothing (404), without the key 401', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 });
    await get(sy, '/p?b=1&a=2');
    assert.equal((await get(sy, '/p?a=2&b=1', { method: 'PURGE' })).status, 401);
    const purged = await get(sy, '/p?a=2&b=1', { method: 'PURGE', headers: ADMIN });
    assert.equal(purged.status, 200);
    assert.equal(purged.json().purged, 1);
    assert.equal((await get(sy, '/p?a=2&b=1', { method: 'PURGE', headers: ADMIN })).status, 404);
    assert.equal((await get(sy, '/p?b=1&a=2')).headers.get('x-cache'), 'MISS');
    assert.equal(up.count(), 2);
    assert.ok(sy.logs.some((l) => l.audit === 'cache.purge' && l.key === 'GET /p?a=2&b=1'));
  });

  test('keys sorted by hits list the most answered entry first, with the answers each served', async () => {
    const { sy } = await upstreamAnd({ ttl: 60 });
    const times: Record<string, number> = { '/top/a': 1, '/top/b': 4, '/top/c': 2 };
    for (const [path, n] of Object.entries(times)) for (let i = 0; i < n; i++) assert.equal((await get(sy, path)).status, 200);
    const byHits = await keys(sy, '?sort=hits');
    // The first request of each was the miss that stored it: hits are the answers after it.
    assert.deepEqual(byHits.keys.map((k) => [k.key, k.hits]), [['GET /top/b', 3], ['GET /top/c', 1], ['GET /top/a', 0]]);
    assert.deepEqual((await keys(sy)).keys.map((k) => k.key), ['GET /top/a', 'GET /top/b', 'GET /top/c']);
    const bad = await get(sy, '/cache/keys?sort=size', { headers: ADMIN });
    assert.equal(bad.status, 400);
    assert.match(bad.json<{ error: string }>().error, /sort is key .* or hits/);
  });

  test('keys are listed and searched; a full clear needs confirm=yes, a prefix or key clear does not; each clear is audited without the admin key', async () => {
    const { sy } = await upstreamAnd({ ttl: 60 });
    for (const path of ['/img/1', '/img/2', '/api/a', '/api/b?z=1&y=2']) await get(sy, path);
    await eventually('four entries in the store', async () => (await info(sy)).persistent!.entries === 4);
    const listed = await keys(sy, '?limit=2&offset=1');
    assert.equal(listed.total, 4);
    assert.deepEqual(listed.keys.map((k) => k.key), ['GET /api/b?y=2&z=1', 'GET /img/1']);
    assert.deepEqual(listed.keys[0]!.tiers, ['memory', 'persistent']);
    const found = (await get(sy, '/cache/search?q=img', { headers: ADMIN })).json<{ keys: { key: string }[] }>();
    assert.deepEqual(found.keys.map((k) => k.key), ['GET /img/1', 'GET /img/2']);
    assert.equal((await get(sy, '/cache/keys')).status, 401);

    const refused = await get(sy, '/cache/clear?type=all', { method: 'POST', headers: ADMIN });
    assert.equal(refused.status, 400);
    assert.match(refused.json<{ error: string }>().error, /confirm=yes/);
    assert.equal((await keys(sy)).total, 4);

    const byPrefix = await get(sy, '/cache/clear?prefix=/img/', { method: 'POST', headers: ADMIN });
    assert.deepEqual(byPrefix.json().removed, { memory: 2, disk: 2 });
    const byKey = await get(sy, `/cache/clear?key=${encodeURIComponent('/api/b?z=1&y=2')}`, { method: 'POST', headers: ADMIN });
    assert.deepEqual(byKey.json().removed, { memory: 1, disk: 1 });
    assert.deepEqual((await keys(sy)).keys.map((k) => k.key), ['GET /api/a']);
    const all = await get(sy, '/cache/clear?type=all&confirm=yes', { method: 'POST', headers: { ...ADMIN, 'user-agent': 'ops-script' } });
    assert.equal(all.status, 200);
    assert.equal((await keys(sy)).total, 0);

    const audits = sy.logs.filter((l) => l.audit === 'cache.clear');
    assert.equal(audits.length, 3);
    assert.equal(audits[2]!.from, '127.0.0.1');
    assert.equal(audits[2]!.userAgent, 'ops-script');
    assert.doesNotMatch(JSON.stringify(sy.logs), new RegExp(ADMIN['x-api-key']));
  });
});
