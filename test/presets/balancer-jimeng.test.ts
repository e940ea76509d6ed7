// The balancer preset as a user of the Jimeng Cloudflare-worker balancer meets it: the worker's
// BACKEND_SERVERS JSON (the README's own example, pointed at local backends), its POST-only API
// failing over when the preferred backend is down, RETRY_METHODS, HEALTH_TIMEOUT, the algorithm
// that spreads traffic as the worker did, and a backend added at run time without a priority.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { loadConfig, Switchyard } from '../../core/index.js';
import { ADMIN_KEY, admin, checksArrive, get, many, startFleet, tally, type Fleet } from '../helpers/fleet.js';
import { catalogs } from '../helpers/servers.js';

const silent = pino({ level: 'silent' });
const running: Switchyard[] = [];
const fleets: Fleet[] = [];

async function presetFromEnv(env: NodeJS.ProcessEnv): Promise<string> {
  const yard = await Switchyard.start({
    source: { preset: 'balancer', port: 0, host: '127.0.0.1' },
    catalogs,
    env: { STORE_URL: 'memory://', ADMIN_KEY, HEALTH_INTERVAL: '60s', ...env },
    logger: silent,
    watch: false,
  });
  running.push(yard);
  return `http://127.0.0.1:${yard.port}`;
}

async function fleetOf(...names: string[]): Promise<Fleet> {
  const fleet = await startFleet(names);
  fleets.push(fleet);
  return fleet;
}

afterEach(async () => {
  for (const yard of running.splice(0)) await yard.stop();
  for (const fleet of fleets.splice(0)) await fleet.close();
});

/** The worker README's CONFIG.BACKEND_SERVERS, as users stored it with `wrangler secret put BACKEND_SERVERS`. */
function workerBackends(primary: string, backup: string): string {
  return JSON.stringify([
    { url: primary, priority: 1, region: 'default', weight: 3 },
    { url: backup, priority: 2, region: 'backup', weight: 2 },
  ]);
}

const chat = (i: number): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model: 'jimeng-3.0', messages: [{ role: 'user', content: `draw ${i}` }] }),
});

describe('balancer preset for users of the Jimeng worker', { timeout: 60000 }, () => {
  test("the worker's JSON BACKEND_SERVERS is read: priorities, weights and regions as the worker meant them", async () => {
    const fleet = await fleetOf('primary', 'backup');
    const url = await presetFromEnv({ BACKEND_SERVERS: workerBackends(fleet.urls[0]!, fleet.urls[1]!) });
    const health = (await (await fetch(`${url}/health`)).json()) as { backends: { url: string; priority: number; weight: number; region: string }[] };
    assert.deepEqual(health.backends.map((b) => [b.url, b.priority, b.weight, b.region]), [
      [fleet.urls[0], 1, 3, 'default'],
      [fleet.urls[1], 2, 2, 'backup'],
    ]);
    assert.deepEqual(tally(await many(`${url}/v1/models`, 6)), { primary: 6 });
  });

  test('with the priority-1 backend refusing connections, POST /v1/chat/completions is served by the backup with its body intact', async () => {
    const fleet = await fleetOf('primary', 'backup');
    const url = await presetFromEnv({ BACKEND_SERVERS: workerBackends(fleet.urls[0]!, fleet.urls[1]!) });
    await fleet.byName('primary').kill();
    const answers = await many(`${url}/v1/chat/completions`, 4, { init: chat });
    assert.deepEqual(answers.map((a) => [a.status, a.upstream]), Array(4).fill([200, 'backup']));
    assert.deepEqual(answers.map((a) => JSON.parse((JSON.parse(a.text) as { body: string }).body).messages[0].content), ['draw 0', 'draw 1', 'draw 2', 'draw 3']);
  });

  test('a POST the backend read and then dropped is retried only when RETRY_METHODS lists POST', async () => {
    const fleet = await fleetOf('primary', 'backup');
    const env = { BACKEND_SERVERS: workerBackends(fleet.urls[0]!, fleet.urls[1]!) };
    fleet.byName('primary').mode = 'reset';
    const plain = await presetFromEnv(env);
    assert.equal((await get(`${plain}/v1/images/generations`, chat(0))).status, 502);
    const withPost = await presetFromEnv({ ...env, RETRY_METHODS: 'get,head,post' });
    const answer = await get(`${withPost}/v1/images/generations`, chat(1));
    assert.deepEqual([answer.status, answer.upstream], [200, 'backup']);
  });

  test('LB_ALGORITHM=weighted spreads traffic by weight over every healthy backend, as the worker did', async () => {
    const fleet = await fleetOf('primary', 'backup');
    const url = await presetFromEnv({ BACKEND_SERVERS: workerBackends(fleet.urls[0]!, fleet.urls[1]!), LB_ALGORITHM: 'weighted' });
    assert.deepEqual(tally(await many(`${url}/v1/models`, 10)), { primary: 6, backup: 4 });
  });

  test('HEALTH_TIMEOUT bounds the active health check', async () => {
    const fleet = await fleetOf('primary');
    const primary = fleet.byName('primary');
    primary.checkMode = 'hang';
    const url = await presetFromEnv({ BACKEND_SERVERS: primary.url, HEALTH_INTERVAL: '50ms', HEALTH_TIMEOUT: '120ms' });
    // Checks never overlap: the fourth starts after the third timed out, past the unhealthy threshold (3).
    await checksArrive(primary, 4);
    const rows = (await (await admin(url, 'GET', '/api/v1/backends')).json()) as { backends: { healthy: boolean; healthReason: string }[] };
    assert.equal(rows.backends[0]!.healthy, false);
    assert.match(rows.backends[0]!.healthReason, /within 120 ms/);
  });

  test("a backend added through the admin API without a priority joins the configured backends' last tier", async () => {
    const fleet = await fleetOf('primary', 'backup', 'added');
    const url = await presetFromEnv({ BACKEND_SERVERS: workerBackends(fleet.urls[0]!, fleet.urls[1]!) });
    const added = await admin(url, 'POST', '/api/v1/backends/add', { url: fleet.byName('added').url, weight: 5 });
    assert.equal(added.status, 201);
    assert.equal(((await added.json()) as { upstream: { priority: number } }).upstream.priority, 2);
    assert.deepEqual(tally(await many(`${url}/v1/models`, 6)), { primary: 6 });
  });

  test('a malformed JSON BACKEND_SERVERS or RETRY_METHODS fails at start, naming the variable and the item', async () => {
    const cases: [NodeJS.ProcessEnv, RegExp][] = [
      [{ BACKEND_SERVERS: '[{"url": "http://127.0.0.1:1",}]' }, /BACKEND_SERVERS starts with \[ but is not valid JSON/],
      [{ BACKEND_SERVERS: '{"url": "http://127.0.0.1:1"}' }, /BACKEND_SERVERS entry "\{"url": "http:\/\/127\.0\.0\.1:1"\}" does not start with an http\(s\) URL/],
      [{ BACKEND_SERVERS: '[{"url": "http://127.0.0.1:1", "wieght": 3}]' }, /BACKEND_SERVERS item 0 has unknown key "wieght"/],
      [{ BACKEND_SERVERS: '[{"url": "http://127.0.0.1:1"}, {"url": "http://127.0.0.1:2", "priority": "high"}]' }, /BACKEND_SERVERS item 1: priority "high"/],
      [{ BACKEND_SERVERS: '[{"url": "http://127.0.0.1:1", "weight": 0}]' }, /BACKEND_SERVERS item 0: weight "0" is not a number above 0/],
      [{ BACKEND_SERVERS: '[]' }, /BACKEND_SERVERS lists no backend/],
      [{ BACKEND_SERVERS: 'http://127.0.0.1:1', RETRY_METHODS: 'GET,FETCH' }, /RETRY_METHODS has "FETCH"/],
      [{ BACKEND_SERVERS: 'http://127.0.0.1:1', HEALTH_TIMEOUT: 'long' }, /HEALTH_TIMEOUT is "long"/],
    ];
    for (const [env, message] of cases) await assert.rejects(loadConfig({ preset: 'balancer' }, catalogs, env), message);
  });
});
