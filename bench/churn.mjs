// The churn bench (issue 30): `switchyard start --workers 2` carrying CHURN_WS WebSockets and
// CHURN_SSE SSE streams plus CHURN_RATE ordinary requests/s, while its config is reloaded once a
// second for CHURN_SECONDS, with one rolling restart (SIGUSR2) half way. Reports WebSockets and
// streams dropped by reloads (the target is 0), ordinary requests failed (target 0), and the
// long-lived connections the roll closed once their worker's drain timed out (each one reopened,
// as a client would). Everything talks to 127.0.0.1; every loop is bounded in count and time.
//
//   npm run build && node bench/churn.mjs
//   CHURN_WS=100 CHURN_SSE=20 CHURN_RATE=100 CHURN_SECONDS=20 node bench/churn.mjs
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import YAML from 'yaml';

const WS_COUNT = Number(process.env.CHURN_WS ?? 1000);
const SSE_COUNT = Number(process.env.CHURN_SSE ?? 200);
const RATE = Number(process.env.CHURN_RATE ?? 500);
const SECONDS = Number(process.env.CHURN_SECONDS ?? 120);
const SHUTDOWN_TIMEOUT = Number(process.env.CHURN_DRAIN_MS ?? 3000);
const CLI = fileURLToPath(new URL('../dist/bin/switchyard.js', import.meta.url));

// ---- the upstream: `/` answers at once, `/events` ticks every second, upgrades echo ----
const streams = new Set();
const upstream = http.createServer((req, res) => {
  if (req.url === '/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(': open\n\n');
    streams.add(res);
    res.on('close', () => streams.delete(res));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
});
new WebSocketServer({ server: upstream }).on('connection', (ws) => ws.on('message', (data) => ws.send(data)));
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const ticker = setInterval(() => { for (const res of streams) res.write('data: tick\n\n'); }, 1000);

// ---- switchyard --workers 2 ----
const dir = mkdtempSync(join(tmpdir(), 'switchyard-churn-'));
const configFile = join(dir, 'switchyard.yaml');
// Written whole and renamed into place: a worker starting during the roll reads the file itself,
// and must never read half of it.
const writeConfig = (generation) => writeAtomically(configFile, YAML.stringify({
  server: { store: 'memory://', host: '127.0.0.1', accessLog: false, shutdownTimeout: SHUTDOWN_TIMEOUT },
  routes: [
    // A route that changes every time, so each write is a real reload.
    { name: 'generation', match: { pathPrefix: `/generation-${generation}` }, upstreams: [{ url: `http://127.0.0.1:${upstream.address().port}` }] },
    { name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: `http://127.0.0.1:${upstream.address().port}` }] },
  ],
}));
function writeAtomically(file, text) {
  writeFileSync(`${file}.next`, text);
  renameSync(`${file}.next`, file);
}
writeConfig(0);
const child = spawn(process.execPath, [CLI, 'start', '--config', configFile, '--port', '0', '--workers', '2'], { stdio: ['ignore', 'pipe', 'inherit'], env: { PATH: process.env.PATH } });
const lines = [];
const seen = new (await import('node:events')).EventEmitter();
createInterface({ input: child.stdout }).on('line', (text) => {
  try { lines.push(JSON.parse(text)); } catch { lines.push({ msg: text }); }
  seen.emit('line');
});
const waitForLine = (match, from = 0, timeoutMs = 60_000) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => { seen.off('line', check); reject(new Error('timed out waiting for a log line')); }, timeoutMs);
  const check = () => {
    const found = lines.slice(from).find(match);
    if (!found) return;
    clearTimeout(timer);
    seen.off('line', check);
    resolve(found);
  };
  seen.on('line', check);
  check();
});
const port = (await waitForLine((l) => l.msg === 'cluster listening')).port;

const started = Date.now();

// ---- long-lived clients: each one records why it closed and when ----
let rolling = false;
// Closes seen after the roll ended, by second since the start: a close the roll caused may be read
// after the primary's 'rolling restart done' line, so the roll's window ends ROLL_SETTLE_MS later.
const ROLL_SETTLE_MS = 2000;
const droppedAt = [];
const tally = { wsDroppedOutsideRoll: 0, wsClosedByRoll: 0, wsReopened: 0, sseDroppedOutsideRoll: 0, sseEndedByRoll: 0, sseCutByRoll: 0, sseReopened: 0 };
let finishing = false;
function openWebSocket() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('close', () => {
      if (finishing) return;
      if (rolling) tally.wsClosedByRoll++;
      else {
        tally.wsDroppedOutsideRoll++;
        droppedAt.push(Math.round((Date.now() - started) / 1000));
      }
      openWebSocket().then(() => tally.wsReopened++, () => {});
    });
  });
}
function openStream() {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/events', agent: false }, (res) => {
      resolve(req);
      let how;
      res.on('end', () => { how ??= 'end'; });
      res.on('error', () => { how ??= 'cut'; });
      res.on('close', () => {
        if (finishing) return;
        if (!rolling) tally.sseDroppedOutsideRoll++;
        else if ((how ?? 'cut') === 'end') tally.sseEndedByRoll++;
        else tally.sseCutByRoll++;
        openStream().then(() => tally.sseReopened++, () => {});
      });
      res.resume();
    });
    req.once('error', reject);
  });
}
const sockets = [];
for (let i = 0; i < WS_COUNT; i++) sockets.push(await openWebSocket());
const sse = [];
for (let i = 0; i < SSE_COUNT; i++) sse.push(await openStream());
console.log(`open: ${sockets.length} WebSockets, ${sse.length} SSE streams`);

// ---- paced ordinary traffic, RATE per second, on keep-alive connections ----
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
const traffic = { sent: 0, ok: 0, failed: 0, errors: new Map() };
const maxRequests = RATE * (SECONDS + 30);
const sendOne = () => new Promise((resolve) => {
  traffic.sent++;
  const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
    res.resume();
    res.on('end', () => { if (res.statusCode === 200) traffic.ok++; else { traffic.failed++; traffic.errors.set(`status ${res.statusCode}`, (traffic.errors.get(`status ${res.statusCode}`) ?? 0) + 1); } resolve(); });
  });
  req.on('error', (err) => { traffic.failed++; traffic.errors.set(err.message, (traffic.errors.get(err.message) ?? 0) + 1); resolve(); });
});
const trafficStarted = Date.now();
const tick = 50;
const perTick = RATE * tick / 1000;
let owed = 0;
const pacer = setInterval(() => {
  owed += perTick;
  while (owed >= 1 && traffic.sent < maxRequests) { owed--; void sendOne(); }
}, tick);

// ---- reloads once a second, the roll half way ----
let rollStartedAt;
let rollDoneAt;
let rollResult;
for (let second = 1; second <= SECONDS; second++) {
  const paced = new Promise((resolve) => setTimeout(resolve, 1000));
  if (second === Math.floor(SECONDS / 2)) {
    const from = lines.length;
    rolling = true;
    child.kill('SIGUSR2');
    rollStartedAt = Math.round((Date.now() - started) / 1000);
    rollResult = waitForLine((l) => l.msg === 'rolling restart done' || l.msg?.startsWith('rolling restart stopped'), from, 120_000).then(async (line) => {
      rollDoneAt = Math.round((Date.now() - started) / 1000);
      await new Promise((resolve) => setTimeout(resolve, ROLL_SETTLE_MS));
      rolling = false;
      return line;
    });
  }
  const from = lines.length;
  writeConfig(second);
  // During the roll a reload waits for it to end (the primary runs them one at a time): written, not awaited.
  if (!rolling) await waitForLine((l) => l.msg === 'config reloaded by every worker' || l.msg?.startsWith('config reload rejected'), from);
  await paced;
}
const roll = await rollResult;
const reloads = lines.filter((l) => l.msg === 'config reloaded by every worker').length;
const rejected = lines.filter((l) => l.msg?.startsWith('config reload rejected')).length;
clearInterval(pacer);
await new Promise((resolve) => setTimeout(resolve, 1000)); // the last paced requests finish
finishing = true;
const wall = (Date.now() - trafficStarted) / 1000;
const result = {
  workers: 2, websockets: WS_COUNT, sseStreams: SSE_COUNT, targetRate: RATE, seconds: SECONDS, wallSeconds: wall, reloads, rejected, drainTimeoutMs: SHUTDOWN_TIMEOUT,
  roll: roll?.msg, rollFromSecond: rollStartedAt, rollDoneAtSecond: rollDoneAt,
  wsDropsAtSecond: droppedAt.slice(0, 20),
  requests: { sent: traffic.sent, ok: traffic.ok, failed: traffic.failed, perSecond: Math.round(traffic.sent / wall), errors: Object.fromEntries(traffic.errors) },
  ...tally,
};
console.log(JSON.stringify(result, null, 2));
for (const ws of sockets) ws.terminate();
for (const req of sse) req.destroy();
agent.destroy();
clearInterval(ticker);
child.kill('SIGTERM');
await once(child, 'exit');
for (const res of streams) res.destroy();
upstream.close();
process.exit(result.requests.failed === 0 && result.wsDroppedOutsideRoll === 0 && result.sseDroppedOutsideRoll === 0 ? 0 : 1);
