// Revalidation of expired entries (nginx's proxy_cache_revalidate): the cache asks the upstream
// with If-None-Match / If-Modified-Since built from the stored entry; a 304 renews the entry and
// the client gets the stored response (X-Cache: REVALIDATED). Real upstreams on 127.0.0.1 that
// honour conditionals, the cache's clock moved instead of sleeping.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { ADMIN, cacheConfig, countingUpstream, eventually, fakeClock, get, info, keys, type CountingUpstream } from './cache-support.js';

const running: { stop(): Promise<void> }[] = [];
let clock: ReturnType<typeof fakeClock> | undefined;
afterEach(async () => {
  clock?.restore();
  clock = undefined;
  for (const r of running.splice(0).reverse()) await r.stop();
});

/** How the origin behaves; tests change it between requests. */
interface Origin {
  /** The representation's version: its ETag is `"v<version>"`, its Last-Modified day <version> of 2024. */
  version: number;
  etag: boolean;
  lastModified: boolean;
  /** Extra headers on 200s, and on 304s. */
  headers: Record<string, string>;
  notModifiedHeaders: Record<string, string>;
  /** How long a 304 takes. */
  notModifiedDelayMs: number;
}

/**
 * An upstream that honours conditionals: a matching If-None-Match (or, without one, an
 * If-Modified-Since not older than Last-Modified) gets a 304. Every answer carries `x-asked: n`
 * (how many times this path was asked), so a header updated by a 304 is visible.
 */
async function origin(given: Partial<Origin> = {}): Promise<{ up: CountingUpstream; conf: Origin }> {
  const conf: Origin = { version: 1, etag: true, lastModified: false, headers: {}, notModifiedHeaders: {}, notModifiedDelayMs: 0, ...given };
  const up = await countingUpstream((req, res, n) => {
    const etag = `"v${conf.version}"`;
    const lastModified = new Date(Date.UTC(2024, 0, conf.version)).toUTCString();
    const validators: Record<string, string> = {};
    if (conf.etag) validators.etag = etag;
    if (conf.lastModified) validators['last-modified'] = lastModified;
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    const unchanged = inm !== undefined
      ? conf.etag && inm.split(',').map((t) => t.trim()).includes(etag)
      : ims !== undefined && conf.lastModified && Date.parse(ims) >= Date.parse(lastModified);
    if (unchanged) {
      setTimeout(() => {
        res.writeHead(304, { ...validators, ...conf.notModifiedHeaders, 'x-asked': String(n) });
        res.end();
      }, conf.notModifiedDelayMs);
      return;
    }
    const body = JSON.stringify({ version: conf.version, n });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...validators, ...conf.headers, 'x-asked': String(n) });
    res.end(body);
  });
  running.push({ stop: () => up.close() });
  return { up, conf };
}

async function yard(up: CountingUpstream, options: Record<string, unknown>, store = 'memory://', extra: Record<string, unknown> = {}, port?: number): Promise<RunningSwitchyard> {
  // A slow machine must not turn a store write into a store failure (see cache-tiers.test.ts).
  const persistent = { timeoutMs: 10000, ...(options.persistent as Record<string, unknown> | undefined) };
  // A restart takes the same port: keys hold the Host, which names it.
  const sy = await startSwitchyard(cacheConfig(up.url, { ...options, persistent }, { store }, extra), port === undefined ? {} : { port });
  running.push(sy);
  return sy;
}

function sqliteUrl(): string {
  return `sqlite://${join(mkdtempSync(join(tmpdir(), 'switchyard-cache-')), 'cache.sqlite')}`;
}

interface Counters {
  expired: number;
  revalidated: number;
  notModified: number;
  hits: { memory: number; persistent: number; coalesced: number };
}

async function counters(sy: RunningSwitchyard): Promise<Counters> {
  return (await info(sy)).routes.main! as unknown as Counters;
}

describe('revalidating an expired entry', () => {
  for (const engine of ['undici', 'http-proxy']) {
    test(`ETag (${engine}): the upstream gets If-None-Match, its 304 renews the entry and the client gets the stored 200 with the updated headers`, async () => {
      clock = fakeClock();
      const { up } = await origin();
      const sy = await yard(up, { ttl: 60 }, 'memory://', { engine });
      const first = await get(sy, '/doc');
      assert.equal(first.headers.get('x-cache'), 'MISS');
      assert.equal(first.headers.get('x-asked'), '1');
      clock.advance(61);

      const renewed = await get(sy, '/doc');
      assert.equal(renewed.status, 200);
      assert.equal(renewed.headers.get('x-cache'), 'REVALIDATED');
      assert.equal(renewed.text, first.text, 'the stored body, not the empty 304');
      assert.equal(renewed.headers.get('content-length'), String(Buffer.byteLength(first.text)));
      assert.equal(renewed.headers.get('content-type'), 'application/json', 'stored headers the 304 did not repeat');
      assert.equal(renewed.headers.get('etag'), '"v1"');
      assert.equal(renewed.headers.get('x-asked'), '2', "the 304's headers replace the stored ones");
      assert.equal(up.count(), 2);
      assert.equal(up.seen[1]!.headers['if-none-match'], '"v1"');
      assert.equal(up.seen[1]!.headers['if-modified-since'], undefined);

      const hit = await get(sy, '/doc');
      assert.equal(hit.headers.get('x-cache'), 'HIT', 'fresh again');
      assert.equal(hit.text, first.text);
      assert.equal(hit.headers.get('x-asked'), '2', 'the updated headers were stored');
      clock.advance(59);
      assert.equal((await get(sy, '/doc')).headers.get('x-cache'), 'HIT', 'a whole new TTL from the revalidation');
      assert.equal(up.count(), 2, 'no upstream contact for the hits');
      const c = await counters(sy);
      assert.deepEqual([c.expired, c.revalidated], [1, 1]);
    });
  }

  test('Last-Modified: the upstream gets If-Modified-Since from the stored entry, and its 304 renews it', async () => {
    clock = fakeClock();
    const { up } = await origin({ etag: false, lastModified: true });
    const sy = await yard(up, { ttl: 60 });
    const first = await get(sy, '/lm');
    const lastModified = first.headers.get('last-modified');
    assert.ok(lastModified);
    clock.advance(61);
    const renewed = await get(sy, '/lm');
    assert.equal(renewed.status, 200);
    assert.equal(renewed.headers.get('x-cache'), 'REVALIDATED');
    assert.equal(renewed.text, first.text);
    assert.equal(up.seen[1]!.headers['if-modified-since'], lastModified);
    assert.equal(up.seen[1]!.headers['if-none-match'], undefined);
    assert.equal((await get(sy, '/lm')).headers.get('x-cache'), 'HIT');
    assert.equal(up.count(), 2);
  });

  test('an entry with both validators sends both conditionals', async () => {
    clock = fakeClock();
    const { up } = await origin({ lastModified: true });
    const sy = await yard(up, { ttl: 60 });
    const first = await get(sy, '/both');
    clock.advance(61);
    assert.equal((await get(sy, '/both')).headers.get('x-cache'), 'REVALIDATED');
    assert.equal(up.seen[1]!.headers['if-none-match'], '"v1"');
    assert.equal(up.seen[1]!.headers['if-modified-since'], first.headers.get('last-modified'));
  });

  test('a changed representation: the upstream answers the conditional request with 200, which is served and stored (EXPIRED)', async () => {
    clock = fakeClock();
    const { up, conf } = await origin();
    const sy = await yard(up, { ttl: 60 });
    assert.equal((await get(sy, '/changing')).json().version, 1);
    conf.version = 2;
    clock.advance(61);
    const changed = await get(sy, '/changing');
    assert.equal(changed.status, 200);
    assert.equal(changed.headers.get('x-cache'), 'EXPIRED');
    assert.equal(changed.json().version, 2);
    assert.equal(changed.headers.get('etag'), '"v2"');
    assert.equal(up.seen[1]!.headers['if-none-match'], '"v1"');
    const hit = await get(sy, '/changing');
    assert.equal(hit.headers.get('x-cache'), 'HIT');
    assert.equal(hit.json().version, 2);
    assert.equal(up.count(), 2);
    assert.equal((await counters(sy)).revalidated, 0);
  });

  test('revalidate: false sends no conditional headers: the expired entry is fetched whole', async () => {
    clock = fakeClock();
    const { up } = await origin({ lastModified: true });
    const sy = await yard(up, { ttl: 60, revalidate: false });
    await get(sy, '/plain');
    clock.advance(61);
    const again = await get(sy, '/plain', { headers: { 'if-none-match': '"v1"' } });
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('x-cache'), 'EXPIRED');
    assert.equal(again.json().n, 2);
    assert.equal(up.seen[1]!.headers['if-none-match'], undefined, "neither the cache's nor the client's");
    assert.equal(up.seen[1]!.headers['if-modified-since'], undefined);
  });

  // The http-proxy engine hands the outgoing headers (the cache's conditionals) to ctx.req: the
  // client's own must have been kept aside.
  for (const engine of ['undici', 'http-proxy']) {
    test(`the client's own matching If-None-Match gets a 304 after the upstream's 304; a non-matching one the stored 200 (${engine})`, async () => {
      clock = fakeClock();
      const { up } = await origin();
      const sy = await yard(up, { ttl: 60 }, 'memory://', { engine });
      const first = await get(sy, '/cond');
      clock.advance(61);
      const notModified = await get(sy, '/cond', { headers: { 'if-none-match': 'W/"v0", "v1"' } });
      assert.equal(notModified.status, 304);
      assert.equal(notModified.text, '');
      assert.equal(notModified.headers.get('etag'), '"v1"');
      assert.equal(notModified.headers.get('x-cache'), 'REVALIDATED');
      assert.equal(up.seen[1]!.headers['if-none-match'], '"v1"', "the cache's conditional, not the client's");
      assert.equal((await get(sy, '/cond')).headers.get('x-cache'), 'HIT', 'the entry was renewed all the same');

      clock.advance(61);
      const other = await get(sy, '/cond', { headers: { 'if-none-match': '"v0"' } });
      assert.equal(other.status, 200);
      assert.equal(other.headers.get('x-cache'), 'REVALIDATED');
      assert.equal(other.text, first.text);
      assert.equal(up.count(), 3);
      assert.equal((await counters(sy)).notModified, 1);
    });
  }

  test("with honourUpstreamCacheControl the 304's own Cache-Control sets the new lifetime", async () => {
    clock = fakeClock();
    const { up } = await origin({ headers: { 'cache-control': 'max-age=60' }, notModifiedHeaders: { 'cache-control': 'max-age=600' } });
    const sy = await yard(up, { ttl: 10, honourUpstreamCacheControl: true });
    await get(sy, '/told');
    clock.advance(61);
    const renewed = await get(sy, '/told');
    assert.equal(renewed.headers.get('x-cache'), 'REVALIDATED');
    assert.equal(renewed.headers.get('cache-control'), 'max-age=600');
    clock.advance(300);
    const hit = await get(sy, '/told');
    assert.equal(hit.headers.get('x-cache'), 'HIT', 'fresh for 600 s, not 60');
    assert.equal(hit.headers.get('cache-control'), 'max-age=600');
    assert.equal(up.count(), 2);
  });

  test('the renewed entry is written to the SQLite tier: a memory clear and a restart serve it', async () => {
    clock = fakeClock();
    const { up } = await origin();
    const store = sqliteUrl();
    const sy = await yard(up, { ttl: 60 }, store);
    const first = await get(sy, '/kept');
    await eventually('the entry is in the store', async () => (await info(sy)).persistent!.entries === 1);
    clock.advance(61);
    assert.equal((await get(sy, '/kept')).headers.get('x-cache'), 'REVALIDATED');
    // The listing shows the store's expiry when the store holds the entry: fresh again once written.
    await eventually('the renewed entry is in the store', async () => {
      const row = (await keys(sy)).keys[0];
      return row !== undefined && row.tiers.includes('persistent') && !row.expired;
    });
    const cleared = await get(sy, '/cache/clear?type=memory&confirm=yes', { method: 'POST', headers: ADMIN });
    assert.equal(cleared.status, 200);
    const fromStore = await get(sy, '/kept');
    assert.equal(fromStore.headers.get('x-cache'), 'HIT');
    assert.equal(fromStore.text, first.text);
    assert.equal(fromStore.headers.get('x-asked'), '2');
    assert.equal((await counters(sy)).hits.persistent, 1);
    const port = sy.yard.port;
    await sy.stop();
    running.splice(running.indexOf(sy), 1);

    const restarted = await yard(up, { ttl: 60 }, store, {}, port);
    const afterRestart = await get(restarted, '/kept');
    assert.equal(afterRestart.headers.get('x-cache'), 'HIT');
    assert.equal(afterRestart.text, first.text);
    assert.equal(afterRestart.headers.get('x-asked'), '2');
    assert.equal(up.count(), 2);
  });

  test('coalescing: concurrent requests for the expired key send one conditional request and all get the stored body', async () => {
    clock = fakeClock();
    const { up, conf } = await origin();
    const sy = await yard(up, { ttl: 60 });
    const first = await get(sy, '/busy');
    conf.notModifiedDelayMs = 200;
    clock.advance(61);
    const answers = await Promise.all(Array.from({ length: 20 }, () => get(sy, '/busy')));
    assert.ok(answers.every((a) => a.status === 200 && a.text === first.text));
    const xCache = answers.map((a) => a.headers.get('x-cache')).sort();
    assert.deepEqual([xCache.filter((x) => x === 'REVALIDATED').length, xCache.filter((x) => x === 'HIT').length], [1, 19]);
    assert.equal(up.count(), 2, 'one conditional request for twenty');
    assert.equal(up.seen[1]!.headers['if-none-match'], '"v1"');
    const c = await counters(sy);
    assert.deepEqual([c.revalidated, c.hits.coalesced], [1, 19]);
  });

  test("stale-while-revalidate: the background refresh is conditional, and the upstream's 304 renews the entry", async () => {
    clock = fakeClock();
    const { up } = await origin();
    const sy = await yard(up, { ttl: 60, staleWhileRevalidate: 600 });
    const first = await get(sy, '/swr');
    clock.advance(90);
    const stale = await get(sy, '/swr');
    assert.equal(stale.headers.get('x-cache'), 'STALE');
    await eventually('the background refresh renewed the entry', async () => (await get(sy, '/swr')).headers.get('x-cache') === 'HIT');
    const hit = await get(sy, '/swr');
    assert.equal(hit.text, first.text, 'the same body: the upstream said 304');
    assert.equal(hit.headers.get('x-asked'), '2');
    assert.equal(up.count(), 2);
    assert.equal(up.seen[1]!.headers['if-none-match'], '"v1"');
    assert.equal((await counters(sy)).revalidated, 1);
  });

  test('stale-if-error is unchanged: a 5xx answer to the conditional request serves the stale entry', async () => {
    clock = fakeClock();
    let failing = false;
    const up = await countingUpstream((_req, res, n) => {
      res.writeHead(failing ? 503 : 200, { 'content-type': 'text/plain', etag: `"e${n}"` });
      res.end(failing ? 'down' : `v${n}`);
    });
    running.push({ stop: () => up.close() });
    const sy = await yard(up, { ttl: 60, staleIfError: 300 });
    await get(sy, '/sie');
    failing = true;
    clock.advance(61);
    const res = await get(sy, '/sie');
    assert.equal(res.status, 200);
    assert.equal(res.text, 'v1');
    assert.equal(res.headers.get('x-cache'), 'STALE');
    assert.equal(up.seen[1]!.headers['if-none-match'], '"e1"');
  });

  test('each encoded variant is revalidated on its own: the 304 renews the stored gzip bytes, which decode to the identity body', async () => {
    clock = fakeClock();
    const { up } = await origin({ headers: { 'x-pad': 'p' } });
    const sy = await yard(up, { ttl: 60 }, 'memory://', { plugins: [{ name: 'compression', options: { threshold: 0 } }] });
    const first = await get(sy, '/z', { headers: { 'accept-encoding': 'identity' } });
    const encoded = await get(sy, '/z', { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(encoded.headers.get('x-cache'), 'MISS', 'the gzip variant is another entry');
    assert.equal(encoded.headers.get('etag'), 'W/"v1"');
    clock.advance(61);
    const renewed = await get(sy, '/z', { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(renewed.headers.get('x-cache'), 'REVALIDATED');
    assert.equal(renewed.headers.get('content-encoding'), 'gzip');
    assert.equal(renewed.headers.get('etag'), 'W/"v1"', "the variant's weak ETag, not the 304's strong one");
    assert.match(renewed.headers.get('vary') ?? '', /accept-encoding/i);
    assert.equal(renewed.text, encoded.text, 'fetch decoded the stored bytes');
    assert.notEqual(encoded.text, first.text, 'the gzip variant came from its own upstream answer');
    assert.equal(up.seen[2]!.headers['if-none-match'], '"v1", W/"v1"', 'the weak validator in both forms');
    const again = await get(sy, '/z', { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.equal(again.text, encoded.text);
    const notModified = await get(sy, '/z', { headers: { 'accept-encoding': 'gzip', 'if-none-match': 'W/"v1"' } });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.get('etag'), 'W/"v1"');
    assert.equal(up.count(), 3);
  });
});
