// Many machines, simulated: a real redis-server and three Switchyard processes on their own ports
// sharing `server.store: redis://…`. A rate limit holds across all three, a cache entry stored by
// one is a hit on another, a mapping added on one is served by the others, the usage stats of all
// three add up on each, and a Redis restart mid-test is ridden out.
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { noRedis, startRedis, type RunningRedis } from '../helpers/redis.js';
import { startUpstream, type RunningUpstream } from '../helpers/servers.js';
import { request, startProcess, writeConfig, type Answer, type RunningProcess } from './support.js';

const ADMIN_TOKEN = 'fleet-admin-token-0123456789';
const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
const LIMIT = 5;
const USAGE = { prompt_tokens: 7, completion_tokens: 3 };

/** What ai-usage's GET /stats says about one mapping (route), in the fields this test reads. */
interface UsageMapping {
  calls: number;
  s2xx: number;
  inputTokens: number;
  outputTokens: number;
  endpoints: Record<string, { calls: number } | undefined>;
}
type UsageStats = { windows: Record<'total' | '24h', { mappings: Record<string, UsageMapping | undefined> }> };

/** Bounded polling of an HTTP endpoint (not a sleep standing in for an event): at most `tries` × 50 ms. */
async function poll(what: string, attempt: () => Promise<boolean>, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await attempt().catch(() => false)) return;
    await delay(50);
  }
  assert.fail(`gave up waiting: ${what}`);
}

describe('three instances sharing one Redis', { skip: noRedis }, () => {
  let redis: RunningRedis;
  let upstream: RunningUpstream;
  const hits = new Map<string, number>();
  const fleet: RunningProcess[] = [];

  before(async () => {
    redis = await startRedis();
    upstream = await startUpstream((req, res) => {
      hits.set(req.url!, (hits.get(req.url!) ?? 0) + 1);
      // An AI provider's answer: ai-usage reads the tokens from it.
      if (req.url!.startsWith('/counted')) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ usage: USAGE }));
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=600' }).end(`answer for ${req.url}`);
    });
    const configFile = writeConfig({
      server: { store: redis.url, host: '127.0.0.1', admin: { key: ADMIN_TOKEN } },
      plugins: [
        { name: 'ai-mappings', options: { seedDefaults: false, adminPage: false } },
        // Its default flush (1 s): the test waits for what a user would see, not a tuned interval.
        { name: 'ai-usage', options: { dashboard: false } },
      ],
      routes: [
        { name: 'limited', match: { pathPrefix: '/limited' }, upstreams: [{ url: upstream.url }], plugins: [{ name: 'rate-limit', options: { limits: [{ count: LIMIT, window: '1m' }], store: 'shared' } }] },
        { name: 'cached', match: { pathPrefix: '/cached' }, upstreams: [{ url: upstream.url }], plugins: [{ name: 'cache', options: { ttl: 600, persistent: { timeoutMs: 500 } } }] },
        { name: 'plain', match: { pathPrefix: '/plain' }, upstreams: [{ url: upstream.url }] },
        { name: 'counted', match: { pathPrefix: '/counted' }, upstreams: [{ url: upstream.url }] },
      ],
    });
    for (let i = 0; i < 3; i++) fleet.push(await startProcess(['start', '--config', configFile, '--port', '0', '--no-watch']));
  });
  after(async () => {
    for (const instance of fleet) await instance.stop();
    await redis?.stop();
    await upstream?.close();
  });

  test('the three listen on different ports', () => {
    assert.equal(new Set(fleet.map((f) => f.port)).size, 3);
  });

  test(`a rate limit of ${LIMIT}/minute holds across all three together`, async () => {
    // All at once, spread over the three: the counters are one atomic script in Redis, never a read-then-write.
    const answers = await Promise.all(Array.from({ length: LIMIT * 4 }, (_, i) => request(fleet[i % 3]!.port, '/limited')));
    const statuses = answers.map((a) => a.status);
    assert.equal(statuses.filter((s) => s === 200).length, LIMIT, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 429).length, LIMIT * 3);
    assert.equal((await request(fleet[2]!.port, '/limited')).status, 429, 'and it still holds afterwards');
  });

  test('a cache entry stored by one instance is a hit on another', async () => {
    // Behind one name, as instances behind a load balancer are: cache keys hold the Host.
    const asServed = { headers: { host: 'fleet.example' } };
    const first = await request(fleet[0]!.port, '/cached/item', asServed);
    assert.equal(first.headers['x-cache'], 'MISS');
    // The store write is an observer (it never holds the response up): wait until it landed.
    await poll('the entry reached Redis', async () => {
      const info = JSON.parse((await request(fleet[0]!.port, '/cache/info', { headers: ADMIN })).body) as { persistent: { entries: number } };
      return info.persistent.entries >= 1;
    });
    const second = await request(fleet[1]!.port, '/cached/item', asServed);
    assert.equal(second.status, 200);
    assert.equal(second.headers['x-cache'], 'HIT');
    assert.equal(second.body, 'answer for /cached/item');
    assert.equal(hits.get('/cached/item'), 1, 'the upstream was asked once for the whole fleet');
  });

  test('an ai mapping added on one instance is served by the other two', async () => {
    const created = await request(fleet[0]!.port, '/api/mappings', { method: 'POST', headers: ADMIN, body: JSON.stringify({ prefix: '/team', target: upstream.url }) });
    assert.equal(created.status, 201, created.body);
    for (const other of [fleet[1]!, fleet[2]!]) {
      let answer: Answer | undefined;
      await poll(`instance on ${other.port} serves /team`, async () => (answer = await request(other.port, '/team/hello')).status === 200);
      assert.equal(answer!.body, 'answer for /hello');
    }
  });

  test('usage stats add up: each instance\'s /stats shows the requests all three served', async () => {
    // Two endpoints, each spread over all three instances: 5 requests per instance and endpoint.
    const PER_INSTANCE = 10;
    const answers = await Promise.all(Array.from({ length: 3 * PER_INSTANCE }, (_, i) => request(fleet[i % 3]!.port, `/counted/${i % 2 ? 'b' : 'a'}`)));
    assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([200]));
    const expected = { calls: 3 * PER_INSTANCE, s2xx: 3 * PER_INSTANCE, inputTokens: 3 * PER_INSTANCE * USAGE.prompt_tokens, outputTokens: 3 * PER_INSTANCE * USAGE.completion_tokens };
    const figures = (summary: UsageMapping) => ({ calls: summary.calls, s2xx: summary.s2xx, inputTokens: summary.inputTokens, outputTokens: summary.outputTokens });
    // Each instance counts its own requests at once and the others' after their flush and its own
    // read-back (about a second each); every one of them must arrive at the fleet's total.
    for (const instance of fleet) {
      let counted: UsageMapping | undefined;
      await poll(`instance on ${instance.port} shows all ${expected.calls} calls`, async () => {
        const stats = JSON.parse((await request(instance.port, '/stats')).body) as UsageStats;
        counted = stats.windows.total.mappings.counted;
        return counted?.calls === expected.calls;
      });
      assert.deepEqual(figures(counted!), expected, `instance on ${instance.port}, total`);
      for (const endpoint of ['/counted/a', '/counted/b']) {
        assert.equal(counted!.endpoints[endpoint]?.calls, expected.calls / 2, `instance on ${instance.port}, ${endpoint}`);
      }
      const day = JSON.parse((await request(instance.port, '/stats')).body) as UsageStats;
      assert.deepEqual(figures(day.windows['24h'].mappings.counted!), expected, `instance on ${instance.port}, last 24 h`);
    }
  });

  test('with Redis restarted mid-test the instances keep serving and reconnect', async () => {
    await redis.stop();
    for (const instance of fleet) {
      assert.equal((await request(instance.port, '/plain/during')).status, 200, 'routes without the store are untouched');
      assert.equal((await request(instance.port, '/cached/during')).status, 200, 'the cache serves from memory');
    }
    redis = await startRedis(redis.port); // the same address, empty: nothing was saved
    // A write through one instance and a read through another, both through Redis, prove both reconnected.
    for (const [writer, reader] of [[0, 1], [1, 2], [2, 0]] as const) {
      const prefix = `/after-${writer}`;
      await poll(`instance ${writer} writes to Redis again`, async () =>
        (await request(fleet[writer]!.port, '/api/mappings', { method: 'POST', headers: ADMIN, body: JSON.stringify({ prefix, target: upstream.url }) })).status === 201);
      await poll(`instance ${reader} reads the mapping from Redis`, async () => (await request(fleet[reader]!.port, `${prefix}/x`)).status === 200);
    }
    const statuses: number[] = [];
    for (let i = 0; i < LIMIT + 1; i++) statuses.push((await request(fleet[i % 3]!.port, '/limited')).status);
    assert.deepEqual(statuses, [...Array(LIMIT).fill(200), 429], 'the shared limit counts afresh in the restarted Redis, for the whole fleet');
  });
});
