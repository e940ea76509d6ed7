// The store failing under load: the SQLite database locked by another process, Redis stopped. The cache (and a shared rate limit that may degrade) keep
// answering: not one request fails; the failure is logged once and, once the fault is cleared, so
// is the store's return. (Unlinking the database file is no fault on Linux: SQLite keeps reading
// and writing the file it holds open, so no test pretends it is one.)
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startLoad } from '../helpers/load.js';
import { noRedis, startRedis } from '../helpers/redis.js';
import { startSwitchyard, startUpstream, until, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';
import { lockSqlite, type SqliteLock } from '../helpers/sqlite-lock.js';
import { logEvents } from '../helpers/wire.js';

let upstream: RunningUpstream;
before(async () => {
  upstream = await startUpstream((req, res) => {
    const body = JSON.stringify({ url: req.url });
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=60', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
after(() => upstream.close());

function config(store: string, withRateLimit = false): Record<string, unknown> {
  const plugins: unknown[] = [
    // A tiny memory tier, so most lookups reach the store.
    { name: 'cache', options: { ttl: 60, memory: { maxEntries: 2 }, persistent: { timeoutMs: 200 } } },
  ];
  if (withRateLimit) plugins.unshift({ name: 'rate-limit', options: { limits: [{ count: 1_000_000, window: '1h' }], store: 'shared', allowDegradation: true } });
  return { server: { store }, routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }], plugins }] };
}

let n = 0;
const spread = () => `/item/${n++ % 40}`;
/** Each request a new item: a lookup (a read) and a store (a write) every time, for as long as the load runs. */
const fresh = () => `/fresh/${n++}`;
const only200 = (status: number) => (status === 200 ? undefined : `status ${status}`);

/**
 * Load before, during and after `fault`; every request must be answered 200. With `lines`, the
 * load goes on (bounded) until the cache logs a failure after this point, so that a return logged
 * later can only come from a retry, not from a call that was under way when the fault hit. A
 * fresh failure, not merely a last line that is one: the lock holder blocks writes, but in WAL
 * mode reads go on, so a retry that happens to be a read brings the store back for a moment. So
 * the load asks for new items, whose stores keep failing, and the next retry comes a second
 * (RETRY_AFTER) after the failure: the load stops well within it.
 */
async function underLoad(sy: RunningSwitchyard, fault: () => Promise<void> | void, lines?: ReturnType<typeof logEvents>): Promise<void> {
  const load = startLoad(sy.url, { clients: 8, path: lines ? fresh : spread, check: only200, maxRequests: 20_000 });
  try {
    await load.completed(300);
    await fault();
    const after = load.result.sent;
    await load.completed(after + 600);
    const logged = outages(sy).length;
    if (lines) await Promise.race([until(() => outages(sy).length > logged && outages(sy).at(-1) === 'failed', lines, 'line'), load.completed(20_000)]);
    const result = await load.stop();
    assert.deepEqual(result.failures, []);
    assert.deepEqual(result.wrong, []);
    if (lines) assert.equal(outages(sy).at(-1), 'failed', `the store is down when the load stops: ${outages(sy).join(', ')}`);
  } finally {
    await load.stop();
  }
}

const FAILED = 'the persistent cache store failed; serving from memory only until it is back';
const BACK = 'the persistent cache store is reachable again; both tiers are in use';
/** The cache's store failure and return lines, in order: one per outage and one per return. */
function outages(sy: RunningSwitchyard): string[] {
  return sy.logs.filter((l) => l.msg === FAILED || l.msg === BACK).map((l) => (l.msg === FAILED ? 'failed' : 'back'));
}

/** Each outage logged once and each return once: the lines alternate, starting with a failure. */
function assertLoggedOncePerOutage(sy: RunningSwitchyard): void {
  const seen = outages(sy);
  assert.ok(seen.length > 0, 'the fault was felt');
  seen.forEach((what, i) => assert.equal(what, i % 2 === 0 ? 'failed' : 'back', `the store lines alternate: ${seen.join(', ')}`));
}

/** Load after the fault is cleared until the cache logs that the store is back (bounded). */
async function backAfterRepair(sy: RunningSwitchyard, lines: ReturnType<typeof logEvents>): Promise<void> {
  const load = startLoad(sy.url, { clients: 2, path: spread, check: only200, maxRequests: 5000 });
  try {
    await Promise.race([until(() => outages(sy).at(-1) === 'back', lines, 'line'), load.completed(5000)]);
    assert.equal(outages(sy).at(-1), 'back', 'the store\'s return is logged');
    assertLoggedOncePerOutage(sy);
    const result = await load.stop();
    assert.deepEqual(result.failures, []);
    assert.deepEqual(result.wrong, []);
  } finally {
    await load.stop();
  }
}

describe('SQLite store failing', { timeout: 60000 }, () => {
  test('the database locked by another process during load: requests keep flowing, each outage is logged once, the store is back once the lock is gone', async () => {
    const sy = await startSwitchyard(config('sqlite://./data/store.sqlite'));
    const lines = logEvents(sy);
    let lock: SqliteLock | undefined;
    try {
      await underLoad(sy, async () => {
        lock = await lockSqlite(join(sy.dir, 'data', 'store.sqlite'));
      }, lines);
      assertLoggedOncePerOutage(sy);
      await lock?.release();
      await backAfterRepair(sy, lines);
    } finally {
      // Unlocked first: stopping flushes the cache's index to the store, which would wait on the lock.
      await lock?.release();
      await sy.stop();
    }
  });
});

describe('Redis store failing', { timeout: 60000, skip: noRedis }, () => {
  test('Redis stopped during load: the cache and a degradable shared rate limit keep answering', async () => {
    const redis = await startRedis();
    const sy = await startSwitchyard(config(redis.url, true));
    try {
      await underLoad(sy, () => redis.stop());
      assert.ok(sy.logs.some((l) => l.msg === 'the persistent cache store failed; serving from memory only until it is back'), 'the cache felt it');
      assert.ok(sy.logs.some((l) => String(l.msg).startsWith('rate-limit store failed')), 'the rate limit felt it');
    } finally {
      await sy.stop();
      await redis.stop();
    }
  });
});
