// rate-limit: the limiter on a stepped clock (windows, sliding weights, blocking, stacking), the
// counters (atomic on a shared SQLite file), and the plugin through real routes and instances.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import KeyvSqlite from '@keyv/sqlite';
import Keyv from 'keyv';
import { storeCounters } from '../../plugins/rate-limit/counters.js';
import { MemoryCounters, parseDuration, RateLimiter, type Algorithm, type Counters, type Limit } from '../../plugins/rate-limit/limiter.js';
import { countingUpstream, rawRequest, headerValues, withPlugins, type CountingUpstream } from '../helpers/clients.js';
import { noRedis, startRedis } from '../helpers/redis.js';
import { startSwitchyard, startUpstream, type RunningSwitchyard } from '../helpers/servers.js';

/** A limiter on a clock the test moves by hand. */
function limiterAt(limits: Partial<Limit>[], algorithm: Algorithm = 'fixed', counters?: Counters) {
  const clock = { now: 1_000_000 };
  const limiter = new RateLimiter({
    limits: limits.map((l) => ({ count: 1, windowMs: 1000, blockMs: 0, ...l })),
    algorithm,
    counters: counters ?? new MemoryCounters(() => clock.now),
    prefix: 't:',
    now: () => clock.now,
  });
  return { clock, limiter };
}

describe('the limiter, on a stepped clock', () => {
  test('a fixed window allows count hits, refuses the next until the window ends, then allows again', async () => {
    const { clock, limiter } = limiterAt([{ count: 3, windowMs: 1000 }]);
    for (const remaining of [2, 1, 0]) {
      const d = await limiter.hit('a');
      assert.equal(d.allowed, true);
      assert.equal(d.remaining, remaining);
      assert.equal(d.limit, 3);
    }
    clock.now += 400;
    const refused = await limiter.hit('a');
    assert.equal(refused.allowed, false);
    assert.equal(refused.retryAfterMs, 600);
    assert.equal((await limiter.hit('b')).allowed, true, 'keys count apart');
    clock.now += 600;
    assert.equal((await limiter.hit('a')).allowed, true);
  });

  test('a sliding window weighs the previous window by how much of it is still covered', async () => {
    const { clock, limiter } = limiterAt([{ count: 10, windowMs: 1000 }], 'sliding');
    for (let i = 0; i < 10; i++) assert.equal((await limiter.hit('a')).allowed, true);
    // Start of the next window: the previous window still covers it entirely.
    clock.now += 1000;
    const early = await limiter.hit('a');
    assert.equal(early.allowed, false);
    assert.ok(early.retryAfterMs! > 0 && early.retryAfterMs! <= 1000);
    // Half way: 10 × 0.5 + 1 refused + this one = 7 ≤ 10.
    clock.now += 500;
    const half = await limiter.hit('a');
    assert.equal(half.allowed, true);
    assert.equal(half.remaining, 3);
  });

  test('blockDuration keeps refusing after the window would allow again, then lets go', async () => {
    const { clock, limiter } = limiterAt([{ count: 1, windowMs: 1000, blockMs: 5000 }]);
    assert.equal((await limiter.hit('a')).allowed, true);
    const refused = await limiter.hit('a');
    assert.equal(refused.allowed, false);
    assert.equal(refused.retryAfterMs, 5000);
    clock.now += 2000;
    const blocked = await limiter.hit('a');
    assert.equal(blocked.allowed, false);
    assert.equal(blocked.retryAfterMs, 3000);
    clock.now += 3000;
    assert.equal((await limiter.hit('a')).allowed, true);
  });

  test('stacked limits: the tightest is reported, and any one refuses', async () => {
    const { clock, limiter } = limiterAt([{ count: 100, windowMs: 60_000 }, { count: 2, windowMs: 1000 }]);
    const first = await limiter.hit('a');
    assert.equal(first.limit, 2);
    assert.equal(first.remaining, 1);
    await limiter.hit('a');
    assert.equal((await limiter.hit('a')).allowed, false);
    clock.now += 1000;
    const next = await limiter.hit('a');
    assert.equal(next.allowed, true);
    assert.equal(next.limit, 2);
  });

  test('a store that fails makes hit() throw (the plugin decides: allowDegradation)', async () => {
    const broken: Counters = { increment: () => Promise.reject(new Error('down')), get: () => Promise.reject(new Error('down')), set: () => Promise.reject(new Error('down')) };
    const { limiter } = limiterAt([{ count: 1 }], 'fixed', broken);
    await assert.rejects(limiter.hit('a'), /down/);
  });

  test('memory counters forget expired keys', async () => {
    let now = 0;
    const counters = new MemoryCounters(() => now);
    for (let i = 0; i < 100; i++) await counters.increment(`k${i}`, 1000);
    assert.equal(counters.size, 100);
    now = 20_000;
    await counters.increment('fresh', 1000);
    assert.equal(counters.size, 1);
  });

  test('durations read as ms, s, m, h, d', () => {
    assert.equal(parseDuration(1500), 1500);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('2h'), 7_200_000);
    assert.throws(() => parseDuration('10x'), /not a duration/);
  });
});

describe('shared counters', () => {
  test('two keyv stores on one SQLite file count atomically: no hit is lost', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'switchyard-rl-')), 'shared.sqlite');
    const open = () => new Keyv({ store: new KeyvSqlite({ uri: `sqlite://${file}`, busyTimeout: 5000 }), namespace: 'plugin:rate-limit' });
    const [a, b] = [open(), open()];
    try {
      const [ca, cb] = [storeCounters(a), storeCounters(b)];
      const counts = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? ca : cb).increment('k', 60_000)));
      assert.deepEqual(counts.sort((x, y) => x - y), Array.from({ length: 60 }, (_, i) => i + 1));
      await ca.set('blocked', 42, 60_000);
      assert.equal(await cb.get('blocked'), 42);
      assert.equal(await cb.get('absent'), 0);
    } finally {
      await a.disconnect();
      await b.disconnect();
    }
  });

  test('on any other keyv store, increments inside one process are exact', async () => {
    const counters = storeCounters(new Keyv());
    const counts = await Promise.all(Array.from({ length: 30 }, () => counters.increment('k', 60_000)));
    assert.deepEqual(counts.sort((x, y) => x - y), Array.from({ length: 30 }, (_, i) => i + 1));
  });
});

describe('rate-limit options', () => {
  test('bad options are rejected at start with the path of the problem', async () => {
    const start = (options: object) => startSwitchyard(withPlugins('http://127.0.0.1:9', [{ name: 'rate-limit', options }]));
    await assert.rejects(start({ limits: [{ count: -1, window: '1s' }] }), /routes\[0\]\.plugins\[0\]\.options\.limits\[0\]\.count: must be >= 1/);
    await assert.rejects(start({ limits: [{ count: 1, window: '0s' }] }), /options\.limits\[0\]\.window: must match pattern/);
    await assert.rejects(start({ limits: [{ count: 1, window: -5 }] }), /options\.limits\[0\]\.window: must be >= 1/);
    await assert.rejects(start({ limits: [{ count: 1, window: '1s', blockDuration: '1 hour' }] }), /options\.limits\[0\]\.blockDuration: must match pattern/);
    await assert.rejects(start({ limits: [] }), /options\.limits: must NOT have fewer than 1 items/);
    await assert.rejects(start({ limits: [{ count: 1, window: '1s' }], algorithm: 'leaky' }), /options\.algorithm: must be one of "sliding", "fixed"/);
    await assert.rejects(start({ limits: [{ count: 1, window: '1s' }], key: 'header' }), /key "header" needs the "header" option/);
  });
});

describe('rate-limit on a route, in memory', () => {
  let upstream: CountingUpstream;
  before(async () => {
    upstream = await countingUpstream();
  });
  after(() => upstream.close());

  test('past the limit: 429 with Retry-After and a JSON error; every response carries X-RateLimit-*', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'rate-limit', options: { limits: [{ count: 2, window: '1h' }], algorithm: 'fixed' } }]));
    try {
      const first = await rawRequest(`${sy.url}/x`);
      assert.equal(first.status, 200);
      assert.deepEqual(headerValues(first, 'x-ratelimit-limit'), ['2']);
      assert.deepEqual(headerValues(first, 'x-ratelimit-remaining'), ['1']);
      const reset = Number(headerValues(first, 'x-ratelimit-reset')[0]);
      assert.ok(reset > 0 && reset <= 3600);
      assert.equal((await rawRequest(`${sy.url}/x`)).status, 200);
      const before = upstream.seen.length;
      const refused = await rawRequest(`${sy.url}/x`);
      assert.equal(refused.status, 429);
      assert.equal(upstream.seen.length, before, 'a refused request never reaches the upstream');
      const retryAfter = Number(headerValues(refused, 'retry-after')[0]);
      assert.ok(retryAfter >= 1 && retryAfter <= 3600);
      assert.deepEqual(headerValues(refused, 'x-ratelimit-remaining'), ['0']);
      const body = JSON.parse(refused.body) as { code: string; error: string; requestId: string };
      assert.equal(body.code, 'SY_ERR_RATE_LIMITED');
      assert.equal(body.error, 'too many requests');
    } finally {
      await sy.stop();
    }
  });

  test('a cache hit carries this request\'s X-RateLimit-*, not the ones of the request that filled the cache', async () => {
    const cacheable = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' });
      res.end('{"n":1}');
    });
    const sy = await startSwitchyard(withPlugins(cacheable.url, [
      { name: 'rate-limit', options: { limits: [{ count: 10, window: '1h' }], algorithm: 'fixed' } },
      { name: 'cache', options: { honourUpstreamCacheControl: false, ttl: 300, persistent: { enabled: false } } },
    ]));
    try {
      const seen: [string | null, string | null][] = [];
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${sy.url}/movie`);
        await res.arrayBuffer();
        seen.push([res.headers.get('x-cache'), res.headers.get('x-ratelimit-remaining')]);
      }
      assert.deepEqual(seen, [['MISS', '9'], ['HIT', '8'], ['HIT', '7']]);
    } finally {
      await sy.stop();
      await cacheable.close();
    }
  });

  test('our X-RateLimit-* replace an upstream\'s own, and headers: false sends none', async () => {
    const limited = await startUpstream((_req, res) => {
      res.setHeader('x-ratelimit-limit', '9999');
      res.end('ok');
    });
    const on = await startSwitchyard(withPlugins(limited.url, [{ name: 'rate-limit', options: { limits: [{ count: 5, window: '1h' }] } }]));
    const off = await startSwitchyard(withPlugins(limited.url, [{ name: 'rate-limit', options: { limits: [{ count: 1, window: '1h' }], headers: false, rejectedCode: 503, rejectedMsg: 'slow down' } }]));
    try {
      const res = await fetch(`${on.url}/x`);
      assert.equal(res.headers.get('x-ratelimit-limit'), '5');
      await res.arrayBuffer();
      const plain = await fetch(`${off.url}/x`);
      assert.equal(plain.headers.get('x-ratelimit-limit'), '9999', 'only the upstream\'s');
      assert.equal(plain.headers.get('x-ratelimit-remaining'), null);
      await plain.arrayBuffer();
      const refused = await fetch(`${off.url}/x`);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('x-ratelimit-remaining'), null);
      assert.ok(refused.headers.get('retry-after'));
      assert.equal((await refused.json() as { error: string }).error, 'slow down');
    } finally {
      await on.stop();
      await off.stop();
      await limited.close();
    }
  });

  test('keyed by API key name, each key has its own budget', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [
      { name: 'api-key', options: { keys: [{ name: 'a', key: 'key-aaaaaaaa' }, { name: 'b', key: 'key-bbbbbbbb' }] } },
      { name: 'rate-limit', options: { limits: [{ count: 1, window: '1h' }], key: 'api-key' } },
    ]));
    try {
      const get = async (key: string) => {
        const res = await fetch(`${sy.url}/x`, { headers: { 'x-api-key': key } });
        await res.arrayBuffer();
        return res.status;
      };
      assert.equal(await get('key-aaaaaaaa'), 200);
      assert.equal(await get('key-aaaaaaaa'), 429);
      assert.equal(await get('key-bbbbbbbb'), 200, 'the same client IP with another key has its own budget');
    } finally {
      await sy.stop();
    }
  });

  test('keyed by a header; stacked limits report the tightest', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'rate-limit', options: { limits: [{ count: 50, window: '1h' }, { count: 2, window: '1m' }], key: 'header', header: 'X-Tenant' } }]));
    try {
      const get = async (tenant: string) => {
        const res = await fetch(`${sy.url}/x`, { headers: { 'x-tenant': tenant } });
        await res.arrayBuffer();
        return res;
      };
      const first = await get('t1');
      assert.equal(first.headers.get('x-ratelimit-limit'), '2');
      await get('t1');
      assert.equal((await get('t1')).status, 429);
      assert.equal((await get('t2')).status, 200);
    } finally {
      await sy.stop();
    }
  });

  test('blockDuration: once over the limit, Retry-After is the block, not the window', async () => {
    // A window far longer than the test, so no window boundary can fall between the requests; the
    // block is longer still, so Retry-After tells the two apart.
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'rate-limit', options: { limits: [{ count: 1, window: '1h', blockDuration: '2h' }], algorithm: 'fixed' } }]));
    try {
      const ok = await fetch(`${sy.url}/x`);
      await ok.arrayBuffer();
      for (let i = 0; i < 2; i++) {
        const refused = await fetch(`${sy.url}/x`);
        await refused.arrayBuffer();
        assert.equal(refused.status, 429);
        const retryAfter = Number(refused.headers.get('retry-after'));
        assert.ok(retryAfter > 7100 && retryAfter <= 7200, `Retry-After ${retryAfter}`);
      }
    } finally {
      await sy.stop();
    }
  });
});

describe('rate-limit with store: shared', () => {
  let upstream: CountingUpstream;
  before(async () => {
    upstream = await countingUpstream();
  });
  after(() => upstream.close());

  const config = (storeUrl: string, store: 'shared' | 'memory', extra: object = {}) =>
    withPlugins(upstream.url, [{ name: 'rate-limit', options: { limits: [{ count: 3, window: '1h' }], store, ...extra } }], { store: storeUrl });

  async function statuses(instances: RunningSwitchyard[], n: number): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const res = await fetch(`${instances[i % instances.length]!.url}/x`);
      await res.arrayBuffer();
      out.push(res.status);
    }
    return out;
  }

  test('two instances on one SQLite store enforce one limit between them', async () => {
    const store = `sqlite://${join(mkdtempSync(join(tmpdir(), 'switchyard-shared-')), 'store.sqlite')}`;
    const a = await startSwitchyard(config(store, 'shared'));
    const b = await startSwitchyard(config(store, 'shared'));
    try {
      assert.deepEqual(await statuses([a, b], 6), [200, 200, 200, 429, 429, 429]);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test('the same two instances counting in memory each allow the full limit (the control)', async () => {
    const store = `sqlite://${join(mkdtempSync(join(tmpdir(), 'switchyard-shared-')), 'store.sqlite')}`;
    const a = await startSwitchyard(config(store, 'memory'));
    const b = await startSwitchyard(config(store, 'memory'));
    try {
      assert.deepEqual(await statuses([a, b], 8), [200, 200, 200, 200, 200, 200, 429, 429]);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test('two Switchyard processes on one SQLite file share the limit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-procs-'));
    const store = `sqlite://${join(dir, 'store.sqlite')}`;
    const a = await startSwitchyard(config(store, 'shared'));
    // A second, separate process on the same file: the switchyard CLI from dist/.
    const file = join(dir, 'b.json');
    writeFileSync(file, JSON.stringify({ ...config(store, 'shared'), server: { store, host: '127.0.0.1', port: 0 } }));
    const proc = spawn(process.execPath, [new URL('../../bin/switchyard.js', import.meta.url).pathname, 'start', '--config', file, '--no-watch'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      // The child's "listening" log line says its port.
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        proc.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString('utf8');
          const m = /"port":(\d+)/.exec(out);
          if (m && Number(m[1]) > 0) resolve(Number(m[1]));
        });
        proc.once('exit', (code) => reject(new Error(`switchyard exited ${code}: ${out}`)));
      });
      const b = { url: `http://127.0.0.1:${port}` } as RunningSwitchyard;
      assert.deepEqual(await statuses([a, b], 5), [200, 200, 200, 429, 429]);
    } finally {
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGTERM');
      await exited;
      await a.stop();
    }
  });

  test('a broken store: allowDegradation lets requests through, otherwise they fail with a 500', async () => {
    // The store's directory is a file, so the store cannot open.
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-broken-'));
    writeFileSync(join(dir, 'blocker'), 'not a directory');
    const store = `sqlite://${join(dir, 'blocker', 'store.sqlite')}`;
    const open = await startSwitchyard(config(store, 'shared', { allowDegradation: true }));
    const closed = await startSwitchyard(config(store, 'shared'));
    try {
      const passed = await fetch(`${open.url}/x`);
      assert.equal(passed.status, 200);
      assert.equal(passed.headers.get('x-ratelimit-limit'), null);
      await passed.arrayBuffer();
      assert.ok(open.logs.some((l) => /allowDegradation/.test(String(l.msg))));
      const failed = await fetch(`${closed.url}/x`);
      assert.equal(failed.status, 500);
      assert.equal((await failed.json() as { code: string }).code, 'SY_ERR_PLUGIN_FAILED');
    } finally {
      await open.stop();
      await closed.stop();
    }
  });

  test('two instances on one Redis enforce one limit between them', { skip: noRedis }, async () => {
    const redis = await startRedis();
    const a = await startSwitchyard(config(redis.url, 'shared', { algorithm: 'fixed' }));
    const b = await startSwitchyard(config(redis.url, 'shared', { algorithm: 'fixed' }));
    try {
      assert.deepEqual(await statuses([a, b], 6), [200, 200, 200, 429, 429, 429]);
      // Concurrent hits from both instances: the Lua increment is atomic, so exactly 3 more pass
      // on a fresh key (another route prefix: a different route name).
      const fresh = () => ({ ...config(redis.url, 'shared'), routes: [{ name: 'other', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }], plugins: [{ name: 'rate-limit', options: { limits: [{ count: 3, window: '1h' }], store: 'shared' } }] }] });
      const c = await startSwitchyard(fresh());
      const d = await startSwitchyard(fresh());
      try {
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => fetch(`${(i % 2 ? c : d).url}/x`).then(async (res) => (await res.arrayBuffer(), res.status))));
        assert.equal(results.filter((status) => status === 200).length, 3);
      } finally {
        await c.stop();
        await d.stop();
      }
    } finally {
      await a.stop();
      await b.stop();
      await redis.stop();
    }
  });

  test('Redis down: allowDegradation lets requests through, otherwise they fail with a 500', { skip: noRedis }, async () => {
    const redis = await startRedis();
    await redis.stop();
    const open = await startSwitchyard(config(redis.url, 'shared', { allowDegradation: true }));
    const closed = await startSwitchyard(config(redis.url, 'shared'));
    try {
      const passed = await fetch(`${open.url}/x`);
      assert.equal(passed.status, 200);
      assert.equal(passed.headers.get('x-ratelimit-limit'), null, 'nothing was counted');
      await passed.arrayBuffer();
      assert.ok(open.logs.some((l) => /allowDegradation/.test(String(l.msg))));
      const failed = await fetch(`${closed.url}/x`);
      assert.equal(failed.status, 500);
      assert.equal((await failed.json() as { code: string }).code, 'SY_ERR_PLUGIN_FAILED');
    } finally {
      await open.stop();
      await closed.stop();
    }
  });
});
