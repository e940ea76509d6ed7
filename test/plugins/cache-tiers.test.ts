// The cache's two tiers over a real SQLite file: promotion, restarts, the size bound, damaged
// entries, expiry (on a moved clock, never a sleep), stale answers, the sweep and warm-up.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import KeyvSqlite from '@keyv/sqlite';
import Keyv from 'keyv';
import { startSwitchyard, until, type RunningSwitchyard } from '../helpers/servers.js';
import { closedPort } from '../helpers/wire.js';
import { ADMIN, cacheConfig, countingUpstream, eventually, fakeClock, get, info, keys, type CountingUpstream } from './cache-support.js';

const running: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.stop();
});

function sqliteUrl(): { url: string; file: string } {
  const file = join(mkdtempSync(join(tmpdir(), 'switchyard-cache-')), 'cache.sqlite');
  return { url: `sqlite://${file}`, file };
}

async function upstream(handler?: Parameters<typeof countingUpstream>[0]): Promise<CountingUpstream> {
  const up = await countingUpstream(handler);
  running.push({ stop: () => up.close() });
  return up;
}

async function yard(up: CountingUpstream, options: Record<string, unknown>, store: string, port?: number): Promise<RunningSwitchyard> {
  // These tests are about what the tiers hold, not about a slow store: on a loaded machine a write
  // past the default 1 s store timeout would count as a store failure and skip the write.
  const persistent = { timeoutMs: 10000, ...(options.persistent as Record<string, unknown> | undefined) };
  // A restart takes the same port: keys hold the Host, which names it.
  const sy = await startSwitchyard(cacheConfig(up.url, { ...options, persistent }, { store }), port === undefined ? {} : { port });
  running.push(sy);
  return sy;
}

async function stored(sy: RunningSwitchyard, entries: number): Promise<void> {
  await eventually(`${entries} entries in the store`, async () => (await info(sy)).persistent!.entries === entries);
}

/**
 * `/victim` and `/other` in a SQLite store, memory holding only `/other`; and a second client of
 * the same file and namespace, to damage `/victim` from outside as a crash or a bad disk would.
 */
async function victimInStore(): Promise<{ sy: RunningSwitchyard; id: string; outside: Keyv }> {
  const up = await upstream();
  const { url, file } = sqliteUrl();
  const sy = await yard(up, { ttl: 60, memory: { maxEntries: 1 } }, url);
  await get(sy, '/victim');
  await get(sy, '/other');
  await stored(sy, 2);
  const id = (await keys(sy)).keys.find((k) => k.key === 'GET /victim')!.id;
  const outside = new Keyv({ store: new KeyvSqlite({ uri: `sqlite://${file}`, table: 'switchyard', busyTimeout: 5000 }), namespace: 'plugin:cache' });
  return { sy, id, outside };
}

describe('two tiers', () => {
  test('an entry pushed out of memory is found in the store and promoted back to memory', async () => {
    const up = await upstream();
    const sy = await yard(up, { ttl: 60, memory: { maxEntries: 1 } }, sqliteUrl().url);
    await get(sy, '/a');
    await get(sy, '/b');
    await stored(sy, 2);
    assert.equal((await info(sy)).memory[0]!.entries, 1);
    const fromStore = await get(sy, '/a');
    assert.equal(fromStore.headers.get('x-cache'), 'HIT');
    assert.equal(fromStore.json().n, 1);
    let counters = (await info(sy)).routes.main!;
    assert.deepEqual([counters.hits.persistent, counters.hits.memory], [1, 0]);
    await get(sy, '/a');
    counters = (await info(sy)).routes.main!;
    assert.deepEqual([counters.hits.persistent, counters.hits.memory], [1, 1], 'the second read came from memory');
    assert.equal(up.count(), 2);
  });

  test('the store tier survives a restart', async () => {
    const up = await upstream();
    const { url } = sqliteUrl();
    const first = await yard(up, { ttl: 3600 }, url);
    await get(first, '/kept?x=1');
    await stored(first, 1);
    const port = first.yard.port;
    await first.stop();
    running.splice(running.indexOf(first), 1);

    const second = await yard(up, { ttl: 3600 }, url, port);
    const res = await get(second, '/kept?x=1');
    assert.equal(res.headers.get('x-cache'), 'HIT');
    assert.equal(res.json().n, 1);
    assert.equal(up.count(), 1);
    assert.equal((await info(second)).routes.main!.hits.persistent, 1);
    await eventually('the saved index is read back', async () => (await keys(second)).keys.some((k) => k.key === 'GET /kept?x=1' && k.tiers.includes('persistent')));
  });

  test('the store keeps at most maxEntries per route, evicting the least recently used', async () => {
    const up = await upstream();
    const sy = await yard(up, { ttl: 60, memory: { maxEntries: 1 }, persistent: { maxEntries: 3 } }, sqliteUrl().url);
    for (const path of ['/1', '/2', '/3']) await get(sy, path);
    await stored(sy, 3);
    assert.equal((await get(sy, '/1')).headers.get('x-cache'), 'HIT', '/1 is now the most recently used');
    await get(sy, '/4');
    await eventually('/2 was evicted', async () => {
      const listed = (await keys(sy)).keys.filter((k) => k.tiers.includes('persistent')).map((k) => k.key);
      return listed.join(',') === 'GET /1,GET /3,GET /4';
    });
    await get(sy, '/3'); // memory now holds /3, so /2 can only come from the store
    assert.equal((await get(sy, '/2')).headers.get('x-cache'), 'MISS');
    assert.equal(up.count('/2'), 2);
  });

  test('a hit after newer entries moves its entry to the most recently used again', async () => {
    const up = await upstream();
    const sy = await yard(up, { ttl: 60, memory: { maxEntries: 1 }, persistent: { maxEntries: 3 } }, sqliteUrl().url);
    const inStore = async () => (await keys(sy)).keys.filter((k) => k.tiers.includes('persistent')).map((k) => k.key).sort().join(',');
    for (const path of ['/1', '/2', '/3']) await get(sy, path);
    await stored(sy, 3);
    assert.equal((await get(sy, '/1')).headers.get('x-cache'), 'HIT');
    await get(sy, '/4'); // evicts /2
    await eventually('/2 evicted', async () => (await inStore()) === 'GET /1,GET /3,GET /4');
    // /1 was the last one touched, but /4 came after it: this hit must move /1 again.
    assert.equal((await get(sy, '/1')).headers.get('x-cache'), 'HIT');
    await get(sy, '/5'); // evicts /3
    await eventually('/3 evicted', async () => (await inStore()) === 'GET /1,GET /4,GET /5');
    await get(sy, '/6'); // evicts /4, not /1
    await eventually('/4 evicted', async () => (await inStore()) === 'GET /1,GET /5,GET /6');
  });

  test('the store keeps at most maxBytes of bodies per route', async () => {
    const up = await upstream((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(Buffer.alloc(400, (req.url ?? 'x').slice(-1)));
    });
    const sy = await yard(up, { ttl: 60, persistent: { maxBytes: 1000 } }, sqliteUrl().url);
    for (const path of ['/a', '/b']) await get(sy, path);
    await stored(sy, 2);
    await get(sy, '/c');
    await eventually('the oldest entry made room', async () => {
      const disk = (await keys(sy)).keys.filter((k) => k.tiers.includes('persistent'));
      return disk.map((k) => k.key).join(',') === 'GET /b,GET /c';
    });
    assert.ok((await info(sy)).persistent!.bytes <= 1000);
  });

  test('a corrupted entry in the store is a miss, is removed, and is never served', async () => {
    const { sy, id, outside } = await victimInStore();
    await outside.set(`e:${id}`, { v: 1, id, key: 'GET /victim', body: '!!not base64!!' });
    await outside.disconnect();

    const res = await get(sy, '/victim');
    assert.equal(res.headers.get('x-cache'), 'MISS');
    assert.equal(res.json().n, 2);
    assert.equal((await info(sy)).persistent!.corrupted, 1);
    assert.ok(sy.logs.some((l) => String(l.msg).includes('corrupted cache entry')));
    await get(sy, '/other');
    assert.equal((await get(sy, '/victim')).json().n, 2, 'the fresh answer was stored in place of the damaged one');
  });

  test('a stored entry with a header no response may carry (a CR LF in a value) is a miss too, never written out', async () => {
    const { sy, id, outside } = await victimInStore();
    const entry = await outside.get(`e:${id}`) as { headers: Record<string, string> };
    assert.ok(entry?.headers, 'the entry is in the store as written');
    entry.headers['x-note'] = 'fine\r\nset-cookie: planted=1';
    await outside.set(`e:${id}`, entry);
    await outside.disconnect();

    const res = await get(sy, '/victim');
    assert.equal(res.headers.get('x-cache'), 'MISS');
    assert.equal(res.headers.get('set-cookie'), null);
    assert.equal(res.json().n, 2);
    assert.equal((await info(sy)).persistent!.corrupted, 1);
  });
});

describe('expiry and stale answers', () => {
  let clock: ReturnType<typeof fakeClock> | undefined;
  afterEach(() => clock?.restore());

  test('an expired entry is fetched again (X-Cache: EXPIRED), then served fresh', async () => {
    clock = fakeClock();
    const up = await upstream();
    const sy = await yard(up, { ttl: 60 }, 'memory://');
    await get(sy, '/e');
    clock.advance(59);
    assert.equal((await get(sy, '/e')).headers.get('x-cache'), 'HIT');
    clock.advance(2);
    const expired = await get(sy, '/e');
    assert.equal(expired.headers.get('x-cache'), 'EXPIRED');
    assert.equal(expired.json().n, 2);
    assert.equal((await get(sy, '/e')).headers.get('x-cache'), 'HIT');
  });

  test("a hit's Age follows the clock, and a HIT and a STALE answer each carry their own X-Cache", async () => {
    clock = fakeClock();
    const up = await upstream();
    const sy = await yard(up, { ttl: 60, staleWhileRevalidate: 30 }, 'memory://');
    await get(sy, '/age');
    // The fake clock moves with real time too: a second may tick over between two requests.
    const ageOf = async (xCache: string) => {
      const res = await get(sy, '/age');
      assert.equal(res.headers.get('x-cache'), xCache);
      return Number(res.headers.get('age'));
    };
    clock.advance(10);
    const ten = await ageOf('HIT');
    assert.ok(ten === 10 || ten === 11, `age ${ten}`);
    clock.advance(5);
    const fifteen = await ageOf('HIT');
    assert.ok(fifteen === ten + 5 || fifteen === ten + 6, `age ${fifteen} after ${ten}`);
    clock.advance(50);
    const stale = await ageOf('STALE');
    assert.ok(stale >= 65 && stale <= 67, `age ${stale}`);
  });

  test('stale-if-error: with the upstream stopped, an expired entry inside the window is served STALE', async () => {
    clock = fakeClock();
    const up = await upstream();
    const sy = await yard(up, { ttl: 60, staleIfError: 300 }, 'memory://');
    const original = await get(sy, '/sie');
    await up.close();
    clock.advance(120);
    const stale = await get(sy, '/sie');
    assert.equal(stale.status, 200);
    assert.equal(stale.headers.get('x-cache'), 'STALE');
    assert.equal(stale.text, original.text);
    assert.ok(Number(stale.headers.get('age')) >= 120);
    clock.advance(400);
    const tooOld = await get(sy, '/sie');
    assert.equal(tooOld.status, 502, 'past the window the failure shows');
  });

  test('stale-if-error also covers an upstream 5xx', async () => {
    clock = fakeClock();
    let failing = false;
    const up = await upstream((_req, res, n) => {
      res.writeHead(failing ? 503 : 200, { 'content-type': 'text/plain' });
      res.end(failing ? 'down' : `v${n}`);
    });
    const sy = await yard(up, { ttl: 60, staleIfError: 300 }, 'memory://');
    await get(sy, '/five');
    failing = true;
    clock.advance(61);
    const res = await get(sy, '/five');
    assert.equal(res.status, 200);
    assert.equal(res.text, 'v1');
    assert.equal(res.headers.get('x-cache'), 'STALE');
    assert.equal(up.count('/five'), 2);
  });

  test('without staleIfError, the upstream failure reaches the client', async () => {
    clock = fakeClock();
    const up = await upstream();
    const sy = await yard(up, { ttl: 60 }, 'memory://');
    await get(sy, '/no-sie');
    await up.close();
    clock.advance(61);
    assert.equal((await get(sy, '/no-sie')).status, 502);
  });

  test('stale-while-revalidate serves the old entry at once and refreshes it once in the background', async () => {
    clock = fakeClock();
    // The refresh's answer is held until the stale answers are in: in-process, a refresh can be
    // quicker than a client's next request, and this test is about what the waiting clients get.
    let releaseRefresh!: () => void;
    const refreshHeld = new Promise<void>((resolve) => {
      releaseRefresh = resolve;
    });
    const up = await upstream((_req, res, n) => {
      const answer = () => {
        const body = JSON.stringify({ n });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      if (n === 1) answer();
      else void refreshHeld.then(answer);
    });
    const sy = await yard(up, { ttl: 60, staleWhileRevalidate: 600 }, 'memory://');
    await get(sy, '/swr');
    clock.advance(90);
    const stale = await Promise.all([get(sy, '/swr'), get(sy, '/swr'), get(sy, '/swr')]);
    assert.ok(stale.every((r) => r.headers.get('x-cache') === 'STALE' && r.json().n === 1), JSON.stringify(stale.map((r) => [r.headers.get('x-cache'), r.json().n])));
    releaseRefresh();
    await eventually('the background refresh stored a new entry', async () => (await get(sy, '/swr')).headers.get('x-cache') === 'HIT');
    assert.equal((await get(sy, '/swr')).json().n, 2);
    assert.equal(up.count('/swr'), 2, 'one refresh for three stale answers');
  });

  test('the sweep removes entries past any use from both tiers', async () => {
    clock = fakeClock();
    const up = await upstream();
    const sy = await yard(up, { ttl: 60, sweepInterval: 0.05 }, sqliteUrl().url);
    await get(sy, '/old');
    await stored(sy, 1);
    // Fresh for 60 s; with its ETag it is kept 600 s more, to be revalidated.
    clock.advance(661);
    await eventually('both tiers are empty', async () => {
      const now = await info(sy);
      return now.memory[0]!.entries === 0 && now.persistent!.entries === 0;
    });
    assert.equal((await keys(sy)).total, 0);
  });
});

describe('warm-up', () => {
  test('warm-up fetches the configured paths at start, and POST /cache/warm fetches them again', async () => {
    const up = await upstream();
    const sy = await yard(up, { ttl: 60, warmup: ['/hot/1', '/hot/2?lang=en'], warmupHost: 'api.example' }, 'memory://');
    await eventually('the start warm-up fetched both paths', () => up.count() === 2);
    const warmed = await get(sy, '/cache/warm', { method: 'POST', headers: ADMIN });
    assert.deepEqual(warmed.json(), { warmed: { main: [{ path: '/hot/1', status: 200 }, { path: '/hot/2?lang=en', status: 200 }] } });
    assert.equal(up.count(), 4, 'a warm-up refreshes what is stored');
    const asServed = { headers: { host: 'API.example:80' } };
    assert.equal((await get(sy, '/hot/1', asServed)).headers.get('x-cache'), 'HIT', 'the host as warmed, in other case and with the default port');
    assert.equal((await get(sy, '/hot/2?lang=en', asServed)).headers.get('x-cache'), 'HIT');
    assert.equal(up.count(), 4);
    assert.equal((await get(sy, '/hot/1', { headers: { host: 'other.example' } })).headers.get('x-cache'), 'MISS', 'another host is another entry');
  });

  test('a client cannot pass for the cache\'s own refresh with its header', async () => {
    const up = await upstream();
    const sy = await yard(up, { ttl: 60 }, 'memory://');
    await get(sy, '/own');
    const forged = await get(sy, '/own', { headers: { 'x-switchyard-cache-refresh': '1' } });
    assert.equal(forged.headers.get('x-cache'), 'HIT', 'the header means nothing on a client\'s request');
    assert.equal(up.count('/own'), 1);
  });

  test('on a fixed port, as deployed, warm-up fetches the paths at start, before any request arrives', async () => {
    const up = await upstream();
    const port = await closedPort();
    const sy = await startSwitchyard(cacheConfig(up.url, { ttl: 60, warmup: ['/early', '/also?x=1'], warmupHost: `127.0.0.1:${port}`, persistent: { timeoutMs: 10000 } }, { store: 'memory://' }), { port });
    running.push(sy);
    assert.equal(sy.yard.port, port);
    await until(() => up.count('/early') === 1 && up.count('/also') === 1, up.server, 'request');
    await eventually('both are cached', async () => (await keys(sy)).keys.length === 2);
    assert.equal((await get(sy, '/early')).headers.get('x-cache'), 'HIT');
    assert.equal((await get(sy, '/also?x=1')).headers.get('x-cache'), 'HIT');
    assert.equal(up.count(), 2, 'the upstream was asked once per path');
  });

  test('with the port chosen at start (0), warm-up needs no request to find the proxy', async () => {
    const up = await upstream();
    const sy = await yard(up, { ttl: 60, warmup: ['/early'], warmupHost: 'api.example' }, 'memory://');
    await eventually('/early was fetched', () => up.count('/early') === 1);
    await eventually('/early is cached', async () => (await keys(sy)).keys.some((k) => k.key === 'GET /early'));
    assert.equal((await get(sy, '/early', { headers: { host: 'api.example' } })).headers.get('x-cache'), 'HIT');
  });
});
