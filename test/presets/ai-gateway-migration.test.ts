// The ai-gateway preset as a user of the Go AI proxy meets it: API_PROXY_REDIS_URL read as the
// store, the mappings kept in the Redis hash apiproxy:mappings (written as the README's redis-cli
// lines do, in a real redis-server) imported once without overwriting a Switchyard mapping, and
// the performance block of /stats shown on the dashboard (headless Chromium).
import assert from 'node:assert/strict';
import { launchChromium, missing } from '../helpers/tools.js';
import { after, before, describe, test } from 'node:test';
import { createClient } from '@keyv/redis';
import { loadConfig } from '../../core/index.js';
import { startFakeProvider, type FakeProvider } from '../helpers/ai-providers.js';
import { noRedis, startRedis, type RunningRedis } from '../helpers/redis.js';
import { catalogs, startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

/** The Go proxy README's placeholder token, as users copy it into their environment. */
const ADMIN_TOKEN = 'your_secure_admin_token';

async function mappingsOf(gw: RunningSwitchyard): Promise<Record<string, string>> {
  const res = await fetch(`${gw.url}/api/mappings`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(res.status, 200);
  const { mappings } = (await res.json()) as { mappings: { prefix: string; target: string }[] };
  return Object.fromEntries(mappings.map((m) => [m.prefix, m.target]));
}

function gateway(env: NodeJS.ProcessEnv): Promise<RunningSwitchyard> {
  return startSwitchyard({ preset: 'ai-gateway' }, { env: { ADMIN_TOKEN, ...env } });
}

describe('ai-gateway preset for users of the Go AI proxy: mappings in Redis', { skip: noRedis, timeout: 60000 }, () => {
  let redis: RunningRedis;
  let fake: FakeProvider;
  let client: ReturnType<typeof createClient>;

  before(async () => {
    redis = await startRedis();
    fake = await startFakeProvider();
    client = createClient({ url: redis.url });
    await client.connect();
  });
  after(async () => {
    await client?.quit();
    await fake?.close();
    await redis?.stop();
  });

  test('with API_PROXY_REDIS_URL, the hash apiproxy:mappings is imported once, logged, and served', async () => {
    await client.flushAll();
    // The README's `redis-cli` initialisation, and one mapping of our own to a local provider.
    await client.hSet('apiproxy:mappings', '/openai', 'https://api.openai.com');
    await client.hSet('apiproxy:mappings', '/claude', 'https://api.anthropic.com');
    await client.hSet('apiproxy:mappings', '/local', fake.url);
    await client.hSet('apiproxy:mappings', 'bad prefix', 'https://x.example');
    const first = await gateway({ API_PROXY_REDIS_URL: `${redis.url}/0` });
    try {
      const mappings = await mappingsOf(first);
      assert.equal(mappings['/local'], fake.url);
      assert.equal(mappings['/openai'], 'https://api.openai.com');
      assert.equal(mappings['/claude'], 'https://api.anthropic.com');
      assert.equal(mappings['/gemini'], 'https://generativelanguage.googleapis.com', 'the defaults fill in what the hash did not name');
      const served = await fetch(`${first.url}/local/v1/models?from=import`);
      await served.arrayBuffer();
      assert.equal(fake.last('from=import')?.url, '/v1/models?from=import', 'the imported mapping reached the provider, prefix stripped');
      const line = first.logs.find((l) => l.action === 'import');
      assert.ok(line, 'the import is logged');
      assert.deepEqual((line.imported as { prefix: string }[]).map((m) => m.prefix).sort(), ['/claude', '/local', '/openai']);
      assert.equal((line.skipped as { field: string }[])[0]!.field, 'bad prefix');
    } finally {
      await first.stop();
    }
    // Once: a later change to the hash is not imported again.
    await client.hSet('apiproxy:mappings', '/local', 'http://127.0.0.1:1');
    const second = await gateway({ API_PROXY_REDIS_URL: `${redis.url}/0` });
    try {
      assert.equal((await mappingsOf(second))['/local'], fake.url);
      assert.equal(second.logs.some((l) => l.action === 'import'), false);
    } finally {
      await second.stop();
    }
  });

  test("a hash entry never overwrites a Switchyard mapping of the same name; the others are imported", async () => {
    await client.flushAll();
    const before = await gateway({ STORE_URL: redis.url });
    await before.stop();
    await client.hSet('apiproxy:mappings', '/openai', fake.url);
    await client.hSet('apiproxy:mappings', '/newapi', 'https://api.example.com');
    const after = await gateway({ API_PROXY_REDIS_URL: redis.url });
    try {
      const mappings = await mappingsOf(after);
      assert.equal(mappings['/openai'], 'https://api.openai.com', "Switchyard's mapping stays");
      assert.equal(mappings['/newapi'], 'https://api.example.com');
      assert.deepEqual(after.logs.find((l) => l.action === 'import')?.kept, ['openai']);
    } finally {
      await after.stop();
    }
  });

  test('API_PROXY_REDIS_URL that is not a Redis URL, or that differs from STORE_URL, stops the start naming it', async () => {
    await assert.rejects(loadConfig({ preset: 'ai-gateway' }, catalogs, { API_PROXY_REDIS_URL: 'localhost:6379' }), /API_PROXY_REDIS_URL is not a redis:\/\/ or rediss:\/\/ URL/);
    await assert.rejects(loadConfig({ preset: 'ai-gateway' }, catalogs, { API_PROXY_REDIS_URL: 'redis://a:6379', STORE_URL: 'redis://b:6379' }), /API_PROXY_REDIS_URL and STORE_URL are both set and differ/);
    const loaded = await loadConfig({ preset: 'ai-gateway' }, catalogs, { API_PROXY_REDIS_URL: 'redis://127.0.0.1:6390/0' });
    assert.equal(loaded.config.server!.store, 'redis://127.0.0.1:6390/0');
  });

  test("the Redis password in API_PROXY_REDIS_URL (redis://:password@host) never shows in GET /config", async () => {
    await client.configSet('requirepass', 'your_password');
    try {
      const gw = await gateway({ API_PROXY_REDIS_URL: `redis://:your_password@127.0.0.1:${redis.port}/0` });
      try {
        const res = await fetch(`${gw.url}/config`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
        assert.equal(res.status, 200);
        const text = await res.text();
        assert.equal(text.includes('your_password'), false);
        assert.match(text, /redis:\/\/:\*\*\*@127\.0\.0\.1/);
        assert.equal(JSON.stringify(gw.logs).includes('your_password'), false, 'nor in the logs');
      } finally {
        await gw.stop();
      }
    } finally {
      await client.sendCommand(['AUTH', 'your_password']);
      await client.configSet('requirepass', '');
    }
  });
});

describe('ai-gateway preset: the performance block of /stats', { timeout: 60000 }, () => {
  let fake: FakeProvider;
  let gw: RunningSwitchyard;

  before(async () => {
    fake = await startFakeProvider();
    gw = await gateway({ STORE_URL: 'memory://' });
    for (const [prefix, target] of [['/up', fake.url], ['/down', 'http://127.0.0.1:1']]) {
      const res = await fetch(`${gw.url}/api/mappings`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ prefix, target }) });
      assert.equal(res.status, 201);
    }
  });
  after(async () => {
    await gw?.stop();
    await fake?.close();
  });

  test("the gateway's own pages carry the security headers, and /robots.txt forbids crawlers", async () => {
    const robots = await fetch(`${gw.url}/robots.txt`);
    assert.equal(robots.status, 200);
    assert.match(await robots.text(), /Disallow: \//);
    for (const path of ['/', '/stats', '/admin']) {
      const res = await fetch(`${gw.url}${path}`);
      await res.arrayBuffer();
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
    }
  });

  test('/stats says requests per second, average latency, error rate and memory, and the dashboard shows them', async () => {
    for (const path of ['/up/v1/models', '/up/v1/models', '/up/v1/models', '/down/v1/models']) {
      const res = await fetch(`${gw.url}${path}`);
      await res.arrayBuffer();
    }
    // `done` runs once each response closed; poll /stats briefly until the fourth call shows.
    let performance: { requestsPerSecond: number; averageLatencyMs: number; errorRatePercent: number; memoryMB: number; windowSeconds: number } | undefined;
    for (let i = 0; i < 50; i++) {
      performance = ((await (await fetch(`${gw.url}/stats`)).json()) as { performance: typeof performance }).performance;
      if (performance!.errorRatePercent > 0) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(performance!.errorRatePercent, 25);
    assert.ok(performance!.requestsPerSecond > 0 && performance!.requestsPerSecond <= 4);
    assert.ok(performance!.averageLatencyMs > 0);
    assert.ok(performance!.memoryMB > 10 && performance!.memoryMB < 4096);

    // missing() throws under CI=true; on a developer's machine without Chromium the page check is left out.
    if (missing('chromium')) return;
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${gw.url}/`);
      await page.waitForSelector('#performance .card');
      const cards = await page.$$eval('#performance .card', (els) => els.map((el) => [el.querySelector('span')!.textContent, el.querySelector('b')!.textContent]));
      assert.deepEqual(cards.map(([label]) => label), ['Requests/s', 'Avg latency', 'Error rate', 'Memory']);
      assert.equal(cards[2]![1], '25.00 %');
      assert.match(cards[3]![1]!, /^\d+\.\d\d MB$/);
    } finally {
      await browser.close();
    }
  });
});
