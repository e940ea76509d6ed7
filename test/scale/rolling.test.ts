// Long-lived connections under churn with `--workers 2`: config reloads drop no WebSocket and no
// SSE stream, and fail no ordinary request; a rolling restart (SIGUSR2, or POST /workers/roll)
// replaces the workers one at a time, each drained before it stops, so ordinary traffic never
// fails and long-lived connections on a replaced worker are closed only once its drain timed out.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import http, { type ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import YAML from 'yaml';
import { startLoad } from '../helpers/load.js';
import { pluginSource, startSwitchyard, startUpstream, type RunningUpstream } from '../helpers/servers.js';
import { request, startProcess, writeConfig } from './support.js';

const WHOAMI = pluginSource('whoami', `
    api.hooks.postResponse.tap('whoami', (ctx) => {
      ctx.response.headers['x-worker-pid'] = String(process.pid);
      ctx.response.headers['x-config-tag'] = options.tag;
    });`, { type: 'object', properties: { tag: { type: 'string' } }, required: ['tag'], additionalProperties: false });

const ADMIN_KEY = 'rolling-admin-key';
const SHUTDOWN_TIMEOUT = 1500;
const WEBSOCKETS = 100;
const STREAMS = 20;
const RELOADS = 10;

/** `/` answers at once, `/events` is an SSE stream that ticks every 100 ms until the client leaves, upgrades echo. */
let upstream: RunningUpstream;
const streams = new Set<ServerResponse>();
let ticker: NodeJS.Timeout;
before(async () => {
  upstream = await startUpstream((req, res) => {
    if (req.url === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.write(': open\n\n');
      streams.add(res);
      res.on('close', () => streams.delete(res));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  });
  const wss = new WebSocketServer({ server: upstream.server });
  wss.on('connection', (ws) => ws.on('message', (data) => ws.send(`echo:${String(data)}`)));
  ticker = setInterval(() => { for (const res of streams) res.write('data: tick\n\n'); }, 100);
});
after(async () => {
  clearInterval(ticker);
  for (const res of streams) res.destroy();
  await upstream?.close();
});

const config = (tag: string) => ({
  server: { store: 'memory://', host: '127.0.0.1', shutdownTimeout: SHUTDOWN_TIMEOUT, admin: { key: ADMIN_KEY } },
  routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }], plugins: [{ path: './whoami.mjs', options: { tag } }] }],
});

interface LongLived {
  /** When it closed (Date.now()), or undefined while open. */
  closedAt: number | undefined;
}

/** A WebSocket through the proxy, open and echoing. */
async function openWebSocket(port: number): Promise<WebSocket & LongLived> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/chat`) as WebSocket & LongLived;
  ws.closedAt = undefined;
  ws.on('error', () => {});
  ws.once('close', () => { ws.closedAt = Date.now(); });
  await once(ws, 'open');
  return ws;
}

async function echoes(ws: WebSocket, text: string): Promise<boolean> {
  ws.send(text);
  const [data] = await once(ws, 'message');
  return String(data) === `echo:${text}`;
}

/** An SSE stream through the proxy, on a connection of its own; `ticks` counts the events read. */
async function openStream(port: number): Promise<LongLived & { ticks: number; ended: string | undefined; req: http.ClientRequest }> {
  const stream = { closedAt: undefined as number | undefined, ticks: 0, ended: undefined as string | undefined, req: undefined as unknown as http.ClientRequest };
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    stream.req = http.get({ host: '127.0.0.1', port, path: '/events', agent: false, headers: { accept: 'text/event-stream' } }, resolve).on('error', reject);
  });
  assert.equal(res.statusCode, 200);
  res.on('data', (chunk: Buffer) => { stream.ticks += chunk.toString('utf8').split('data: tick').length - 1; });
  const end = (how: string) => {
    stream.ended ??= how;
    stream.closedAt ??= Date.now();
  };
  res.on('end', () => end('end'));
  res.on('error', (err) => end(`error: ${err.message}`));
  res.on('close', () => end('close'));
  return stream;
}

describe('rolling restart', () => {
  test('POST /workers/roll answers 202 and replaces every worker, one at a time, each after its replacement listens', async () => {
    const configFile = writeConfig(config('v1'), { 'whoami.mjs': WHOAMI });
    const cluster = await startProcess(['start', '--config', configFile, '--port', '0', '--workers', '2', '--no-watch']);
    try {
      const before = (cluster.lines.find((line) => line.msg === 'cluster listening')!.workers as number[]).sort();
      const answer = await request(cluster.port, '/workers/roll', { method: 'POST', headers: { 'x-api-key': ADMIN_KEY } });
      assert.equal(answer.status, 202, answer.body);
      assert.deepEqual(JSON.parse(answer.body), { rolling: true });
      const done = await cluster.waitForLine((line) => line.msg === 'rolling restart done');
      assert.equal(done.trigger, 'admin');
      const after = (done.workers as number[]).sort();
      assert.equal(after.length, 2);
      assert.ok(after.every((pid) => !before.includes(pid)), 'both workers are new');
      // One at a time: the second replacement started only after the first old worker was gone.
      const steps = cluster.lines.filter((line) => line.msg === 'rolling restart: worker replaced');
      assert.deepEqual(steps.map((s) => s.worker), [0, 1]);
      assert.ok(steps.every((s) => s.clean === true), 'each old worker drained and exited 0');
      for (let i = 0; i < 4; i++) assert.equal((await request(cluster.port, '/')).status, 200);
    } finally {
      assert.equal(await cluster.stop(), 0);
    }
  });

  test('without --workers, POST /workers/roll answers 404 SY_ERR_ADMIN_NOT_FOUND', async () => {
    const sy = await startSwitchyard(config('v1'), { files: { 'whoami.mjs': WHOAMI } });
    try {
      const res = await fetch(`${sy.url}/workers/roll`, { method: 'POST', headers: { 'x-api-key': ADMIN_KEY } });
      assert.equal(res.status, 404);
      assert.equal(((await res.json()) as { code: string }).code, 'SY_ERR_ADMIN_NOT_FOUND');
    } finally {
      await sy.stop();
    }
  });
});

describe('churn: reloads every second and a rolling restart under long-lived connections and steady traffic', { timeout: 120000 }, () => {
  test(`${WEBSOCKETS} WebSockets and ${STREAMS} SSE streams survive ${RELOADS} config reloads with 0 failed requests; the rolling restart closes them only after the drain timeout, and fails no request`, async () => {
    const configFile = writeConfig(config('v0'), { 'whoami.mjs': WHOAMI });
    const cluster = await startProcess(['start', '--config', configFile, '--port', '0', '--workers', '2']);
    const load = startLoad(cluster.url, { clients: 4, maxRequests: 50_000, check: (status, body) => (status === 200 && body === 'ok' ? undefined : `${status} ${body}`) });
    const sockets: (WebSocket & LongLived)[] = [];
    const sse: Awaited<ReturnType<typeof openStream>>[] = [];
    try {
      for (let i = 0; i < WEBSOCKETS; i++) sockets.push(await openWebSocket(cluster.port));
      for (let i = 0; i < STREAMS; i++) sse.push(await openStream(cluster.port));

      // One reload a second, each awaited until every worker applied it.
      for (let n = 1; n <= RELOADS; n++) {
        const from = cluster.lines.length;
        const paced = new Promise((resolve) => setTimeout(resolve, 1000));
        writeFileSync(configFile, YAML.stringify(config(`v${n}`)));
        const line = await cluster.waitForLine((l) => l.msg === 'config reloaded by every worker' || l.msg?.startsWith('config reload rejected') === true, from);
        assert.equal(line.msg, 'config reloaded by every worker');
        await paced;
      }
      assert.equal((await request(cluster.port, '/')).headers['x-config-tag'], `v${RELOADS}`);
      assert.deepEqual(sockets.filter((ws) => ws.closedAt !== undefined).length, 0, 'no WebSocket closed during the reloads');
      assert.deepEqual(sse.filter((s) => s.ended !== undefined).map((s) => s.ended), [], 'no SSE stream ended during the reloads');
      const alive = await Promise.all(sockets.map((ws, i) => echoes(ws, `after-reloads-${i}`)));
      assert.ok(alive.every(Boolean), 'every WebSocket still echoes');
      const ticksBefore = sse.map((s) => s.ticks);
      assert.ok(load.result.sent > 0);
      assert.deepEqual(load.result.failures, [], 'no ordinary request failed during the reloads');
      assert.deepEqual(load.result.wrong, []);

      // The rolling restart.
      const from = cluster.lines.length;
      const rollStarted = Date.now();
      cluster.child.kill('SIGUSR2');
      const done = await cluster.waitForLine((l) => l.msg === 'rolling restart done' || l.msg?.startsWith('rolling restart stopped') === true, from);
      assert.equal(done.msg, 'rolling restart done');
      const firstDrain = await cluster.waitForLine((l) => l.msg === 'shutting down: draining in-flight requests', from);
      assert.ok(Number(firstDrain.time) >= rollStarted - 5);
      await Promise.all(sse.map((s) => (s.ended !== undefined ? undefined : once(s.req, 'close'))));
      assert.ok(sse.every((s, i) => s.ticks > ticksBefore[i]!), 'every stream kept flowing until its worker was replaced');
      for (const long of [...sockets, ...sse]) {
        assert.ok(long.closedAt !== undefined, 'every long-lived connection on a replaced worker was closed');
        assert.ok(long.closedAt >= Number(firstDrain.time) + SHUTDOWN_TIMEOUT - 50, `closed ${long.closedAt - Number(firstDrain.time)} ms after the first drain began, before the drain timeout`);
      }
      assert.ok(sse.every((s) => s.ended === 'end'), `every SSE stream ended cleanly: ${sse.map((s) => s.ended).join(', ')}`);
      const result = await load.stop();
      assert.deepEqual(result.failures, [], 'no ordinary request failed during the roll');
      assert.deepEqual(result.wrong, []);
      const newWorkers = done.workers as number[];
      const reopened = await openWebSocket(cluster.port);
      assert.ok(await echoes(reopened, 'again'));
      reopened.close();
      assert.equal(newWorkers.length, 2);
    } finally {
      await load.stop();
      for (const ws of sockets) ws.terminate();
      for (const s of sse) s.req.destroy();
      await cluster.stop();
    }
  });
});
