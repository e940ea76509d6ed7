// The store failing under load: the SQLite file removed, the SQLite database locked by another
// process, Redis stopped. The cache (and a shared rate limit that may degrade) keep answering:
// not one request fails.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startLoad } from '../helpers/load.js';
import { noRedis, startRedis } from '../helpers/redis.js';
import { startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';

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
const only200 = (status: number) => (status === 200 ? undefined : `status ${status}`);

/** Load before, during and after `fault`; every request must be answered 200. */
async function underLoad(sy: RunningSwitchyard, fault: () => Promise<void> | void): Promise<void> {
  const load = startLoad(sy.url, { clients: 8, path: spread, check: only200 });
  try {
    await load.completed(300);
    await fault();
    const after = load.result.sent;
    await load.completed(after + 600);
    const result = await load.stop();
    assert.deepEqual(result.failures, []);
    assert.deepEqual(result.wrong, []);
  } finally {
    await load.stop();
  }
}

describe('SQLite store failing', { timeout: 60000 }, () => {
  test('the database file removed during load: requests keep flowing', async () => {
    const sy = await startSwitchyard(config('sqlite://./data/store.sqlite'));
    try {
      const file = join(sy.dir, 'data', 'store.sqlite');
      await underLoad(sy, () => {
        assert.ok(existsSync(file));
        for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${file}${suffix}`, { force: true });
      });
    } finally {
      await sy.stop();
    }
  });

  test('the database locked by another process during load: requests keep flowing', async () => {
    const sy = await startSwitchyard(config('sqlite://./data/store.sqlite'));
    let locker: ChildProcess | undefined;
    try {
      await underLoad(sy, async () => {
        locker = await lockDatabase(join(sy.dir, 'data', 'store.sqlite'));
      });
      assert.ok(sy.logs.some((l) => l.msg === 'the persistent cache store failed; serving from memory only until it is back'), 'the lock was felt');
    } finally {
      // Unlocked first: stopping flushes the cache's index to the store, which would wait on the lock.
      if (locker && locker.exitCode === null) {
        const exited = once(locker, 'exit');
        locker.kill('SIGKILL');
        await exited;
      }
      await sy.stop();
    }
  });
});

/** Another process holding an exclusive lock on the database until it is killed. */
async function lockDatabase(file: string): Promise<ChildProcess> {
  const script = `const sqlite3 = require(${JSON.stringify(createRequire(import.meta.url).resolve('sqlite3'))});
const db = new sqlite3.Database(${JSON.stringify(file)});
db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS lock_holder (x); INSERT INTO lock_holder VALUES (1);', (err) => {
  if (err) { console.error(err.message); process.exit(1); }
  console.log('locked');
});
setInterval(() => {}, 1 << 30);`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  assert.equal(chunk.toString().trim(), 'locked');
  return child;
}

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
