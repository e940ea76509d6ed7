// Clients misbehaving: aborting mid-upload and mid-download, a slowloris head, and 1,000 clients
// at once of which a third abort at random points. Afterwards no connection is left open, no
// request is counted as in flight, and memory is back near where it was.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { connectionsOf, noConnectionsLeft, trackSockets } from '../helpers/load.js';
import { echoHandler, routeConfig, startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';
import { closed, deferred, responseOf, type Deferred } from '../helpers/wire.js';

/** The upstream's view of the requests it got: each one's close, and whether its body came whole. */
const upstreamRequests: { req: IncomingMessage; res: ServerResponse; closed: Promise<void> }[] = [];
let nextRequest: Deferred<{ req: IncomingMessage; res: ServerResponse }> = deferred();
let upstream: RunningUpstream;
const echo = echoHandler();

before(async () => {
  upstream = await startUpstream((req, res) => {
    const entry = { req, res, closed: closed(res) };
    upstreamRequests.push(entry);
    nextRequest.resolve({ req, res });
    if (req.url!.startsWith('/upload')) return; // the test watches the body arrive
    if (req.url!.startsWith('/download')) {
      // An endless body, written as fast as the client reads it.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
      return;
    }
    if (req.url!.startsWith('/body')) {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 16384 });
      res.end(Buffer.alloc(16384, 0x62));
      return;
    }
    echo(req, res);
  });
});
after(() => upstream.close());

function expectRequest(): Promise<{ req: IncomingMessage; res: ServerResponse }> {
  nextRequest = deferred();
  return nextRequest.promise;
}

async function stillServing(sy: RunningSwitchyard): Promise<void> {
  const res = await fetch(`${sy.url}/ok`);
  assert.equal(res.status, 200);
  await res.arrayBuffer();
}

describe('a client that leaves early', { timeout: 60000 }, () => {
  let sy: RunningSwitchyard;
  before(async () => {
    sy = await startSwitchyard(routeConfig([upstream.url]));
  });
  after(() => sy.stop());

  test('aborting mid-upload aborts the upstream request and is logged as 499', async () => {
    const arrived = expectRequest();
    const req = http.request(`${sy.url}/upload`, { method: 'POST', agent: false, headers: { 'content-length': 1024 * 1024 } });
    req.on('error', () => {});
    req.write(Buffer.alloc(64 * 1024));
    const { req: upstreamReq } = await arrived;
    await once(upstreamReq, 'data');
    req.destroy();
    await closed(upstreamReq);
    assert.equal(upstreamReq.complete, false, 'the upstream never got the whole body');
    await stillServing(sy);
    const line = sy.logs.find((l) => l.msg === 'request' && l.path === '/upload');
    assert.equal(line?.status, 499);
    assert.equal(line?.code, 'SY_ERR_CLIENT_ABORTED');
  });

  test('aborting mid-download closes the upstream response', async () => {
    const arrived = expectRequest();
    const req = http.get(`${sy.url}/download`, { agent: false });
    req.on('error', () => {});
    const res = await responseOf(req);
    const { res: upstreamRes } = await arrived;
    await once(res, 'data');
    res.destroy();
    await closed(upstreamRes);
    assert.equal(upstreamRes.writableFinished, false, 'the upstream was cut off, not drained to the end');
    await stillServing(sy);
  });
});

describe('slowloris', { timeout: 60000 }, () => {
  test('a head dribbled byte by byte is cut off at headersTimeout, not before and not long after, while others are served', async () => {
    const headersTimeout = 500;
    const sy = await startSwitchyard(routeConfig([upstream.url], {}, { limits: { headersTimeout } }));
    try {
      const socket = net.connect(sy.yard.port, '127.0.0.1');
      socket.on('error', () => {});
      await once(socket, 'connect');
      // Taken before the first byte goes out: the server's clock for this head cannot start earlier.
      const started = performance.now();
      // Stamped by the close event itself, not when the test gets round to looking: the requests
      // below may take longer than the timeout on a busy machine and would hide a cut that came early.
      const cutAt = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
      socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n');
      let received = '';
      socket.on('data', (c: Buffer) => { received += c.toString('latin1'); });
      // Keep dribbling a header byte each time the server lets a moment pass; stop when it closes us.
      const dribble = setInterval(() => socket.writable && socket.write('X-A: b\r\n'), 100);
      try {
        for (let i = 0; i < 5; i++) await stillServing(sy);
        await closed(socket);
      } finally {
        clearInterval(dribble);
      }
      const cutAfter = (await cutAt) - started;
      assert.ok(cutAfter >= headersTimeout, `cut after ${Math.round(cutAfter)} ms, before headersTimeout (${headersTimeout} ms)`);
      // The server checks every headersTimeout / 4; four times the timeout leaves room for a busy machine.
      assert.ok(cutAfter < headersTimeout * 4, `cut after ${Math.round(cutAfter)} ms, long after headersTimeout (${headersTimeout} ms)`);
      assert.ok(received === '' || (received.startsWith('HTTP/1.1 408') && received.includes('SY_ERR_REQUEST_TIMEOUT')), `got ${received.slice(0, 120)}`);
      await stillServing(sy);
    } finally {
      await sy.stop();
    }
  });
});

/** A seeded generator, so a failing run can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
}

function heapAfterGc(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe('1,000 concurrent clients with random aborts', { timeout: 120000 }, () => {
  test('afterwards no socket is left open, nothing counts as in flight, and memory is back near baseline', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], {}, { pool: { maxSockets: 64 } }));
    try {
      const sockets = trackSockets(sy.yard.server);
      await stillServing(sy);
      const baseline = heapAfterGc();
      const next = random(8);
      const outcomes = { completed: 0, aborted: 0, failed: [] as string[] };
      const clients = Array.from({ length: 1000 }, (_, i) => new Promise<void>((resolve) => {
        const fate = next();
        const req = http.get(`${sy.url}/body/${i}`, { agent: false });
        const abort = () => {
          outcomes.aborted++;
          req.destroy();
          resolve();
        };
        req.on('error', (err) => {
          if (fate >= 0.33) outcomes.failed.push(err.message);
          resolve();
        });
        if (fate < 0.15) return void req.once('socket', (s) => s.once('connect', abort));
        req.once('response', (res) => {
          if (fate < 0.33) return abort();
          res.resume();
          res.once('end', () => {
            if (res.statusCode === 200) outcomes.completed++;
            else outcomes.failed.push(`status ${res.statusCode}`);
            resolve();
          });
        });
      }));
      await Promise.all(clients);
      assert.deepEqual(outcomes.failed, []);
      assert.equal(outcomes.completed + outcomes.aborted, 1000);
      assert.ok(outcomes.aborted > 200 && outcomes.completed > 500, JSON.stringify(outcomes));

      await noConnectionsLeft(sy.yard.server, sockets);
      assert.equal(await connectionsOf(sy.yard.server), 0);
      const status = (await (await fetch(`${sy.url}/status`)).json()) as { activeRequests: number };
      assert.equal(status.activeRequests, 1, 'only the /status request itself');
      // The pool keeps at most maxSockets connections to the upstream: both of their ends live in this process.
      const tcp = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
      assert.ok(tcp <= 2 * 64 + 16, `${tcp} TCP sockets open`);
      const growth = heapAfterGc() - baseline;
      assert.ok(growth < 32 * 1024 * 1024, `heap grew by ${Math.round(growth / 1024 / 1024)} MB`);
      await stillServing(sy);
    } finally {
      await sy.stop();
    }
  });
});
