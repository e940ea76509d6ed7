// The cache over a real redis-server (started here on a free port, nothing saved to disk): a
// store shared by two instances, and a Redis that stops mid-run and comes back.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { noRedis } from '../helpers/redis.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { cacheConfig, countingUpstream, eventually, get, info, keys, type CountingUpstream } from './cache-support.js';

const skip = noRedis;

/** A redis-server of our own; `start` resolves once it accepts connections. */
class RedisProcess {
  private child: ChildProcess | undefined;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${output}`)));
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    this.child = undefined;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('the cache on Redis', { skip }, () => {
  let redis: RedisProcess;
  let up: CountingUpstream;
  const running: RunningSwitchyard[] = [];

  before(async () => {
    redis = new RedisProcess(await freePort());
    await redis.start();
    up = await countingUpstream();
  });
  afterEach(async () => {
    for (const sy of running.splice(0)) await sy.stop();
  });
  after(async () => {
    await redis?.stop();
    await up?.close();
  });

  // A store call slower than timeoutMs marks the store unavailable and the cache skips it for a
  // while. 500 ms was too short when the suite ran two files at once on a busy machine: one slow
  // answer from a healthy Redis turned the expected persistent HIT into a MISS. The outages below
  // are a killed process, refused at once, so a long bound does not slow their detection.
  async function yard(store = redis.url): Promise<RunningSwitchyard> {
    const sy = await startSwitchyard(cacheConfig(up.url, { ttl: 600, persistent: { timeoutMs: 10_000 } }, { store }));
    running.push(sy);
    return sy;
  }

  test('two instances share one Redis: what one stored, the other serves', { timeout: 60_000 }, async () => {
    const one = await yard();
    const two = await yard();
    // Behind one name, as instances behind a load balancer are: keys hold the Host.
    const asServed = { headers: { host: 'api.example' } };
    assert.equal((await get(one, '/shared', asServed)).headers.get('x-cache'), 'MISS');
    await eventually('the entry reached Redis', async () => (await info(one)).persistent!.entries === 1);
    const res = await get(two, '/shared', asServed);
    assert.equal(res.headers.get('x-cache'), 'HIT');
    assert.equal(res.json().n, 1);
    assert.equal((await info(two)).routes.main!.hits.persistent, 1);
    assert.equal(up.count('/shared'), 1);
  });

  test("an unsafe method through one instance makes the other's next GET a miss, its memory copy included", { timeout: 60_000 }, async () => {
    const one = await yard();
    const two = await yard();
    // Behind one name, as instances behind a load balancer are: keys hold the Host.
    const asServed = (method = 'GET') => ({ method, headers: { host: 'api.example' } });
    await eventually('both instances hear invalidations', async () => (await info(one)).invalidations.listening && (await info(two)).invalidations.listening);
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const path = `/changed-by-${method}`;
      assert.equal((await get(one, path, asServed())).headers.get('x-cache'), 'MISS');
      await eventually('the entry reached Redis', async () => (await keys(one)).keys.some((k) => k.key === `GET ${path}` && k.tiers.includes('persistent')));
      assert.equal((await get(two, path, asServed())).headers.get('x-cache'), 'HIT');
      const before = (await info(two)).routes.main!.hits.memory;
      assert.equal((await get(two, path, asServed())).headers.get('x-cache'), 'HIT');
      assert.equal((await info(two)).routes.main!.hits.memory, before + 1, 'the second instance holds it in memory');

      assert.equal((await get(one, path, asServed(method))).status, 200);
      const after = await get(two, path, asServed());
      assert.equal(after.headers.get('x-cache'), 'MISS', method);
      assert.equal(up.count(path), 3, 'the GET after the change went to the origin');
    }
  });

  test('with Redis stopped mid-run requests keep flowing from memory, and the store is used again once it is back', { timeout: 60_000 }, async () => {
    const sy = await yard();
    await get(sy, '/before');
    await eventually('the entry reached Redis', async () => (await keys(sy)).keys.some((k) => k.key === 'GET /before' && k.tiers.includes('persistent')));

    await redis.stop();
    assert.equal((await get(sy, '/before')).headers.get('x-cache'), 'HIT', 'memory still answers');
    const during = await get(sy, '/during');
    assert.equal(during.status, 200);
    assert.equal(during.headers.get('x-cache'), 'MISS');
    await eventually('the store is marked unavailable', async () => {
      await get(sy, `/probe-down-${Math.random()}`);
      return (await info(sy)).persistent!.available === false;
    });
    assert.equal((await get(sy, '/during')).headers.get('x-cache'), 'HIT');
    assert.ok(sy.logs.some((l) => l.level === 40 && String(l.msg).includes('serving from memory only')));

    await redis.start(); // empty: nothing was saved
    let i = 0;
    await eventually('the store is used again', async () => {
      await get(sy, `/probe-up-${i++}`);
      return (await info(sy)).persistent!.available;
    }, 15_000);
    assert.ok(sy.logs.some((l) => String(l.msg).includes('reachable again')));
    const asServed = { headers: { host: 'api.example' } };
    await get(sy, '/after', asServed);
    await eventually('/after reached the restarted Redis', async () => (await keys(sy)).keys.some((k) => k.key === 'GET /after' && k.tiers.includes('persistent')));
    const other = await yard();
    const res = await get(other, '/after', asServed);
    assert.equal(res.headers.get('x-cache'), 'HIT', 'another instance finds it in Redis');
    assert.equal(up.count('/after'), 1);
  });

  test('a Redis that is down at start is waited for: the cache serves from memory, then uses it once it is up', { timeout: 60_000 }, async () => {
    const late = new RedisProcess(await freePort());
    try {
      const sy = await yard(late.url);
      assert.equal((await get(sy, '/early')).status, 200);
      assert.equal((await get(sy, '/early')).headers.get('x-cache'), 'HIT');
      await eventually('the store is marked unavailable', async () => {
        await get(sy, `/probe-${Math.random()}`);
        return (await info(sy)).persistent!.available === false;
      });
      await late.start();
      let i = 0;
      await eventually('the store is used', async () => {
        await get(sy, `/late-${i++}`);
        return (await info(sy)).persistent!.available && (await info(sy)).persistent!.entries > 0;
      }, 15_000);
    } finally {
      await late.stop();
    }
  });
});
