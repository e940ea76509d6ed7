// WebSocket upgrades run through the same plan as requests: with one of two upstreams dead, a
// failed upgrade is seen by passive health checks and the circuit breaker, is counted in metrics
// and the access log, is retried on the other upstream when nothing was sent yet, and ip-hash does
// not pin a client to the dead upstream.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { startSwitchyard, startUpstream, until, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';
import { closedPort, logEvents, readAll } from '../helpers/wire.js';

const ADMIN_KEY = 'upgrade-judged-admin-key';

let live: RunningUpstream;
let dead: string;
let upgradesServed = 0;
before(async () => {
  live = await startUpstream((_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({ server: live.server });
  wss.on('connection', (ws) => {
    upgradesServed++;
    ws.on('message', (data) => ws.send(`echo:${String(data)}`));
  });
  dead = `http://127.0.0.1:${await closedPort()}`;
});
after(() => live?.close());

type Outcome = { opened: true } | { opened: false; status: number; code: unknown };

/** Opens a WebSocket, exchanges one message and closes it; or reads the refusal. */
async function tryUpgrade(sy: RunningSwitchyard, path: string, headers: Record<string, string> = {}): Promise<Outcome> {
  const ws = new WebSocket(`${sy.url.replace(/^http/, 'ws')}${path}`, { headers });
  ws.on('error', () => {}); // a refusal is read from 'unexpected-response'
  const refused = once(ws, 'unexpected-response').then(async ([, res]) => {
    const response = res as IncomingMessage;
    const body = JSON.parse((await readAll(response)).toString('utf8')) as Record<string, unknown>;
    return { opened: false as const, status: response.statusCode!, code: body.code };
  });
  const opened = once(ws, 'open').then(async () => {
    ws.send('hi');
    assert.equal(String((await once(ws, 'message'))[0]), 'echo:hi');
    const closed = once(ws, 'close');
    ws.close();
    await closed;
    return { opened: true as const };
  });
  return Promise.race([refused, opened]);
}

async function admin(sy: RunningSwitchyard, path: string): Promise<string> {
  const res = await fetch(`${sy.url}${path}`, { headers: { 'x-api-key': ADMIN_KEY } });
  assert.equal(res.status, 200);
  return res.text();
}

const accessLines = (sy: RunningSwitchyard) => sy.logs.filter((l) => l.msg === 'request' && l.route !== undefined);

const config = (routes: object[]) => ({ server: { store: 'memory://', admin: { key: ADMIN_KEY } }, plugins: [{ name: 'metrics' }], routes });

describe('a failed WebSocket upgrade is judged like a failed request', { timeout: 60000 }, () => {
  test('passive health checks take the dead upstream out, retries reach the live one, and metrics and the access log count every attempt', async () => {
    const sy = await startSwitchyard(config([{
      name: 'chat', match: { pathPrefix: '/chat' }, upstreams: [{ url: dead }, { url: live.url }],
      plugins: [{ name: 'balancer', options: { algorithm: 'round-robin' } }, { name: 'health-check', options: { passive: { failures: 3 } } }, { name: 'retry', options: { backoff: { base: 0, max: 0 } } }],
    }]));
    try {
      const before = upgradesServed;
      const outcomes = [];
      for (let i = 0; i < 12; i++) outcomes.push(await tryUpgrade(sy, '/chat'));
      await until(() => accessLines(sy).length === 12, logEvents(sy), 'line');
      assert.deepEqual(outcomes, Array.from({ length: 12 }, () => ({ opened: true })), 'every upgrade opened, on the live upstream');
      assert.equal(upgradesServed - before, 12);

      const checks = JSON.parse(await admin(sy, '/health-checks')) as { upstreams: { name: string; healthy: boolean; reason: string | null }[] };
      const deadCheck = checks.upstreams.find((u) => u.name === dead)!;
      assert.equal(deadCheck.healthy, false, 'the dead upstream is out');
      assert.match(String(deadCheck.reason), /3 consecutive failures \(last: SY_ERR_UPSTREAM_UNREACHABLE\)/);
      assert.equal(checks.upstreams.find((u) => u.name === live.url)!.healthy, true);

      const lines = accessLines(sy);
      assert.equal(lines.length, 12, 'one access log line per upgrade');
      assert.ok(lines.every((l) => l.status === 101 && l.upstream === live.url));
      assert.equal(lines.filter((l) => l.attempts === 2).length, 3, 'three upgrades were retried after the dead upstream failed');
      assert.ok(sy.logs.some((l) => l.msg === 'retrying' && l.code === 'SY_ERR_UPSTREAM_UNREACHABLE'));

      const metrics = await admin(sy, '/metrics');
      assert.match(metrics, /switchyard_http_requests_total\{route="chat",upstream="[^"]+",method="GET",status_class="1xx"\} 12/);
      assert.match(metrics, new RegExp(`switchyard_upstream_up\\{route="chat",upstream="${dead.replace(/[.:/]/g, '\\$&')}"\\} 0`));
    } finally {
      await sy.stop();
    }
  });

  test('without retries the failures answer 502 and open the circuit breaker, after which every upgrade reaches the live upstream', async () => {
    const sy = await startSwitchyard(config([{
      name: 'chat', match: { pathPrefix: '/chat' }, upstreams: [{ url: dead }, { url: live.url }],
      plugins: [{ name: 'balancer', options: { algorithm: 'round-robin' } }, { name: 'circuit-breaker', options: { minimumRequests: 2, failureRatio: 0.5 } }],
    }]));
    try {
      const first = [];
      for (let i = 0; i < 4; i++) first.push(await tryUpgrade(sy, '/chat'));
      // An upgrade is judged a success when its connection closes: wait for the fourth to be over.
      await until(() => accessLines(sy).length === 4, logEvents(sy), 'line');
      const refused = first.filter((o) => !o.opened);
      assert.equal(refused.length, 2, 'round-robin sent two of four to the dead upstream');
      assert.deepEqual(refused, [{ opened: false, status: 502, code: 'SY_ERR_UPSTREAM_UNREACHABLE' }, { opened: false, status: 502, code: 'SY_ERR_UPSTREAM_UNREACHABLE' }]);
      const breakers = JSON.parse(await admin(sy, '/circuit-breakers')) as { breakers: { name: string; state: string }[] };
      assert.equal(breakers.breakers.find((b) => b.name === dead)?.state, 'open');
      for (let i = 0; i < 6; i++) assert.deepEqual(await tryUpgrade(sy, '/chat'), { opened: true });
      const failedLines = sy.logs.filter((l) => l.msg === 'request' && l.status === 502);
      assert.equal(failedLines.length, 2);
      assert.ok(failedLines.every((l) => l.code === 'SY_ERR_UPSTREAM_UNREACHABLE' && l.upstream === dead));
    } finally {
      await sy.stop();
    }
  });

  test('ip-hash for streams does not pin a client to the dead upstream: its upgrades are retried on the live one until passive health takes the dead one out', async () => {
    const sy = await startSwitchyard({
      ...config([{
        name: 'chat', match: { pathPrefix: '/chat' }, upstreams: [{ url: dead }, { url: live.url }],
        plugins: [{ name: 'balancer', options: { algorithm: 'round-robin', streamingAlgorithm: 'ip-hash' } }, { name: 'health-check', options: { passive: { failures: 2 } } }, { name: 'retry', options: { backoff: { base: 0, max: 0 } } }],
      }]),
      // Sixteen client addresses (told by a trusted peer): about half of them hash to the dead upstream.
      server: { store: 'memory://', admin: { key: ADMIN_KEY }, trustedProxies: ['127.0.0.1'] },
    });
    try {
      const clients = Array.from({ length: 16 }, (_, i) => `10.0.0.${i + 1}`);
      for (const round of [1, 2]) {
        for (const ip of clients) assert.deepEqual(await tryUpgrade(sy, '/chat', { 'x-forwarded-for': ip }), { opened: true }, `client ${ip}, round ${round}`);
      }
      await until(() => accessLines(sy).length === 32, logEvents(sy), 'line');
      const lines = accessLines(sy);
      assert.ok(lines.every((l) => l.status === 101 && l.upstream === live.url), 'every upgrade was served by the live upstream');
      assert.equal(lines.filter((l) => l.attempts === 2).length, 2, 'two upgrades hashed to the dead upstream were retried; then it was out');
      const checks = JSON.parse(await admin(sy, '/health-checks')) as { upstreams: { name: string; healthy: boolean }[] };
      assert.equal(checks.upstreams.find((u) => u.name === dead)?.healthy, false);
    } finally {
      await sy.stop();
    }
  });
});
