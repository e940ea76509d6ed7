// Forwarding, end to end: real upstreams on 127.0.0.1, a real Switchyard in this process, real
// clients. Every wait is on an event (a 'close', a byte arriving, a counter reaching N), never on a
// timer; the per-test timeouts only turn a hang into a failure.
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import type { EngineName } from '../../core/engine.js';
import { echoHandler, pluginSource, routeConfig, startSwitchyard, startUpstream, until, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';
import { cleanup, closed, closedPort, deferred, exchange, logEvents, parseResponse, rawExchange, readAll, responseOf, startRawUpstream } from '../helpers/wire.js';
import { createTestCa, noOpenssl } from '../helpers/tls.js';
import { missing } from '../helpers/tools.js';

// python3 listens with a full accept queue that never accepts (Node always accepts on its own).
const noPython = missing('python3');

/** Long enough for any honest run; only there so a hang fails instead of stalling the suite. */
const T = { timeout: 30_000 };

/** Every forwarding test runs once per engine: the engines must not differ in anything tested here. */
const ENGINES: readonly EngineName[] = ['http-proxy', 'undici'];
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;


/** The status, JSON error body and X-Request-Id every Switchyard failure answers with. */
async function assertErrorReply(res: Response, status: number, code: string): Promise<void> {
  assert.equal(res.status, status);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await res.json()) as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), ['code', 'error', 'requestId']);
  assert.equal(body.code, code);
  assert.equal(typeof body.error, 'string');
  assert.ok((body.error as string).length > 0);
  assert.equal(body.requestId, res.headers.get('x-request-id'));
  assert.ok(typeof body.requestId === 'string' && body.requestId.length > 0);
}

/** 1 MiB blocks of one random pattern, each stamped with its index so order and loss both show. */
function* stampedBlocks(count: number): Generator<Buffer> {
  const pattern = randomBytes(MiB);
  for (let i = 0; i < count; i++) {
    const block = Buffer.from(pattern);
    block.writeUInt32BE(i, 0);
    yield block;
  }
}


/** Parses a text/event-stream body into `{ id, data }` events as they arrive. */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<Record<string, string>> {
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffered.indexOf('\n\n')) !== -1) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      yield Object.fromEntries(block.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trimStart()]));
    }
  }
}

// ---- WebSockets ------------------------------------------------------------------------------

interface WsUpstream {
  url: string;
  /** Server-side sockets, in connection order. */
  connections: WebSocket[];
  events: EventEmitter;
  close(): Promise<void>;
}

/** An upstream that greets each WebSocket with 'welcome' and echoes messages back ('echo:' + text, binary as is). */
async function startWsUpstream(): Promise<WsUpstream> {
  const upstream = await startUpstream((_req, res) => {
    res.writeHead(426);
    res.end();
  });
  const wss = new WebSocketServer({ server: upstream.server });
  const connections: WebSocket[] = [];
  const events = new EventEmitter();
  wss.on('connection', (ws) => {
    connections.push(ws);
    ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${String(data)}`));
    ws.send('welcome');
    events.emit('connection');
  });
  return {
    url: upstream.url,
    connections,
    events,
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await upstream.close();
    },
  };
}

/** Queues a WebSocket's messages from the start, so none is missed between awaits. */
function inbox(ws: WebSocket): () => Promise<{ data: RawData; isBinary: boolean }> {
  const queue: { data: RawData; isBinary: boolean }[] = [];
  const arrived = new EventEmitter();
  ws.on('message', (data, isBinary) => {
    queue.push({ data, isBinary });
    arrived.emit('message');
  });
  return async () => {
    await until(() => queue.length > 0, arrived, 'message');
    return queue.shift()!;
  };
}

function wsUrl(sy: RunningSwitchyard, path: string): string {
  return `${sy.url.replace(/^http/, 'ws')}${path}`;
}

for (const engine of ENGINES) {
  describe(`forwarding on the ${engine} engine`, () => forwardingSuite({ shutdownTimeout: 2000, engine }));
}

/** The forwarding tests, against Switchyards started with these `server` settings. */
function forwardingSuite(SERVER: { shutdownTimeout: number; engine: EngineName }): void {
  /** Starts an upstream with `handler` and a Switchyard whose one route (prefix `/`) goes to it. */
  async function proxyTo(defer: (close: () => unknown) => void, handler: RequestListener, route: Record<string, unknown> = {}): Promise<{ upstream: RunningUpstream; sy: RunningSwitchyard }> {
    const upstream = await startUpstream(handler);
    defer(() => upstream.close());
    const sy = await startSwitchyard(routeConfig([upstream.url], route, SERVER));
    defer(() => sy.stop());
    return { upstream, sy };
  }
  describe('request bodies stream to the upstream', () => {
    const defer = cleanup();

    test('a chunked upload reaches the upstream chunk by chunk, before the client has sent the rest', T, async () => {
      const arrived = new EventEmitter();
      let received = '';
      const { sy } = await proxyTo(defer, (req, res) => {
        req.setEncoding('utf8');
        req.on('data', (chunk: string) => {
          received += chunk;
          arrived.emit('data');
        });
        req.on('end', () => res.end(JSON.stringify({ body: received, transferEncoding: req.headers['transfer-encoding'] })));
      });

      const req = http.request(`${sy.url}/upload`, { method: 'POST', agent: false });
      const response = responseOf(req);
      req.write('first chunk;');
      // Only the first chunk is out: the upstream seeing it proves the proxy did not wait for the end.
      await until(() => received === 'first chunk;', arrived, 'data');
      req.end('second chunk');

      const res = await response;
      assert.equal(res.statusCode, 200);
      assert.deepEqual(JSON.parse((await readAll(res)).toString()), { body: 'first chunk;second chunk', transferEncoding: 'chunked' });
    });

    test('a 50 MiB upload with a Content-Length arrives intact', T, async () => {
      const { sy } = await proxyTo(defer, (req, res) => {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          bytes += chunk.length;
        });
        req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex'), contentLength: req.headers['content-length'] })));
      });

      const sent = createHash('sha256');
      const body = Readable.from((function* () {
        for (const block of stampedBlocks(50)) {
          sent.update(block);
          yield block;
        }
      })());
      const req = http.request(`${sy.url}/upload`, { method: 'PUT', agent: false, headers: { 'content-length': 50 * MiB } });
      const response = responseOf(req);
      await pipeline(body, req);

      const res = await response;
      assert.equal(res.statusCode, 200);
      assert.deepEqual(JSON.parse((await readAll(res)).toString()), { bytes: 50 * MiB, sha256: sent.digest('hex'), contentLength: String(50 * MiB) });
    });
  });

  describe('responses stream to the client', () => {
    const defer = cleanup();

    for (const framing of ['chunked', 'fixed-length'] as const) {
      test(`a ${framing} response reaches the client part by part and arrives intact`, T, async () => {
        const part1 = randomBytes(256 * KiB);
        const part2 = randomBytes(256 * KiB);
        const clientHasPart1 = deferred();
        const { sy } = await proxyTo(defer, (req, res) => {
          req.resume();
          res.writeHead(200, framing === 'fixed-length' ? { 'content-length': part1.length + part2.length } : {});
          res.write(part1);
          // Part 2 is held back until the client holds part 1: a buffering proxy would hang here.
          void clientHasPart1.promise.then(() => res.end(part2));
        });

        const res = await responseOf(http.get(`${sy.url}/download`, { agent: false }));
        assert.equal(res.statusCode, 200);
        if (framing === 'fixed-length') {
          assert.equal(res.headers['content-length'], String(part1.length + part2.length));
          assert.equal(res.headers['transfer-encoding'], undefined);
        } else {
          assert.equal(res.headers['transfer-encoding'], 'chunked');
          assert.equal(res.headers['content-length'], undefined);
        }
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of res as AsyncIterable<Buffer>) {
          chunks.push(chunk);
          size += chunk.length;
          if (size === part1.length) {
            assert.ok(Buffer.concat(chunks).equals(part1));
            clientHasPart1.resolve();
          }
        }
        assert.ok(res.complete);
        assert.ok(Buffer.concat(chunks).equals(Buffer.concat([part1, part2])), 'the body arrived changed');
      });
    }

    test('server-sent events arrive one by one while the upstream is still sending', T, async () => {
      const upstreamRes = deferred<ServerResponse>();
      const { sy } = await proxyTo(defer, (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('id: 1\ndata: tick 1\n\n');
        upstreamRes.resolve(res);
      });

      const response = await fetch(`${sy.url}/events`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type'), 'text/event-stream');
      const events = sseEvents(response.body!);
      const upstream = await upstreamRes.promise;
      for (let n = 1; n <= 5; n++) {
        // Event n+1 is written only once event n came out of the proxy.
        if (n > 1) upstream.write(`id: ${n}\ndata: tick ${n}\n\n`);
        const { value, done } = await events.next();
        assert.equal(done, false);
        assert.deepEqual(value, { id: String(n), data: `tick ${n}` });
      }
      upstream.end();
      assert.equal((await events.next()).done, true);
    });

    test('the response head reaches the client as soon as the upstream sent it, before any body byte', T, async () => {
      const upstreamRes = deferred<ServerResponse>();
      // The idle timeout only bounds the failure: with the bug, the proxy cuts the connection (still
      // without a head) once the upstream has been silent this long, and fetch rejects.
      const { sy } = await proxyTo(defer, (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
        upstreamRes.resolve(res);
      }, { timeouts: { idle: 2000 } });

      const response = await fetch(`${sy.url}/events`);
      assert.equal(response.status, 200);
      const upstream = await upstreamRes.promise;
      upstream.end('data: bye\n\n');
      assert.equal(await response.text(), 'data: bye\n\n');
    });

    test('a 1 GiB response passes through with flat memory', { timeout: 120_000 }, async (t) => {
      const block = Buffer.alloc(64 * KiB, 'switchyard');
      const { sy } = await proxyTo(defer, (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': GiB });
        let sent = 0;
        const pump = () => {
          while (sent < GiB) {
            sent += block.length;
            if (!res.write(block)) {
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        pump();
      });

      const before = process.memoryUsage.rss();
      let peak = before;
      let bytes = 0;
      let chunks = 0;
      const res = await responseOf(http.get(`${sy.url}/huge`, { agent: false }));
      assert.equal(res.headers['content-length'], String(GiB));
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        // Sampled as the bytes flow (Switchyard runs in this process), every 16th chunk.
        if (++chunks % 16 === 0) peak = Math.max(peak, process.memoryUsage.rss());
      });
      await once(res, 'end');
      const growth = peak - before;
      t.diagnostic(`RSS growth during the transfer: ${(growth / MiB).toFixed(1)} MiB`);
      assert.equal(bytes, GiB);
      assert.ok(growth < 150 * MiB, `RSS grew by ${(growth / MiB).toFixed(1)} MiB while streaming`);
    });
  });

  describe('WebSocket upgrades', () => {
    const defer = cleanup();
    let sy: RunningSwitchyard;
    let echo: WsUpstream;
    let refusing: RunningUpstream;
    const refusingSockets: net.Socket[] = [];

    // An echo upstream, one that refuses upgrades, one that is down, and a plain HTTP route.
    before(async () => {
      echo = await startWsUpstream();
      defer(() => echo.close());
      refusing = await startUpstream((req, res) => {
        req.resume();
        res.writeHead(403, { 'content-type': 'text/plain' });
        res.end('no websockets here');
      });
      refusing.server.on('connection', (socket: net.Socket) => refusingSockets.push(socket));
      // It never closes an idle keep-alive connection itself: any close comes from the proxy.
      refusing.server.keepAliveTimeout = 0;
      defer(() => refusing.close());
      const plain = await startUpstream(echoHandler('plain'));
      defer(() => plain.close());
      sy = await startSwitchyard({
        server: { store: 'memory://', ...SERVER },
        routes: [
          { name: 'echo', match: { pathPrefix: '/chat' }, upstreams: [{ url: echo.url }] },
          { name: 'refusing', match: { pathPrefix: '/refused' }, upstreams: [{ url: refusing.url }] },
          { name: 'dead', match: { pathPrefix: '/dead' }, upstreams: [{ url: `http://127.0.0.1:${await closedPort()}` }] },
          { name: 'plain', match: { pathPrefix: '/plain' }, upstreams: [{ url: plain.url }] },
        ],
      });
      defer(() => sy.stop());
    });

    test('messages pass both ways, text and binary', T, async () => {
      const ws = new WebSocket(wsUrl(sy, '/chat'));
      const next = inbox(ws);
      await once(ws, 'open');
      try {
        assert.equal(String((await next()).data), 'welcome');
        ws.send('hello');
        assert.deepEqual(await next().then((m) => [String(m.data), m.isBinary]), ['echo:hello', false]);
        const bytes = randomBytes(100 * KiB);
        ws.send(bytes);
        const reply = await next();
        assert.equal(reply.isBinary, true);
        assert.ok(Buffer.from(reply.data as Buffer).equals(bytes));
      } finally {
        ws.terminate();
      }
    });

    test('closing the client closes the upstream socket with the same close code', T, async () => {
      const ws = new WebSocket(wsUrl(sy, '/chat'));
      const next = inbox(ws);
      await once(ws, 'open');
      await next();
      const upstreamWs = echo.connections.at(-1)!;
      const upstreamClosed = once(upstreamWs, 'close');
      ws.close(4000, 'bye');
      const [code, reason] = (await upstreamClosed) as [number, Buffer];
      assert.equal(code, 4000);
      assert.equal(String(reason), 'bye');
      await once(ws, 'close');
    });

    test('a client that drops its connection without a close frame closes the upstream socket', T, async () => {
      const ws = new WebSocket(wsUrl(sy, '/chat'));
      const next = inbox(ws);
      await once(ws, 'open');
      await next();
      const upstreamWs = echo.connections.at(-1)!;
      const upstreamClosed = once(upstreamWs, 'close');
      ws.terminate();
      const [code] = (await upstreamClosed) as [number];
      assert.equal(code, 1006);
    });

    test('the upstream closing its socket closes the client', T, async () => {
      const ws = new WebSocket(wsUrl(sy, '/chat'));
      const next = inbox(ws);
      await once(ws, 'open');
      await next();
      const clientClosed = once(ws, 'close');
      echo.connections.at(-1)!.close(4001, 'server bye');
      const [code, reason] = (await clientClosed) as [number, Buffer];
      assert.equal(code, 4001);
      assert.equal(String(reason), 'server bye');
    });

    test('a client that resets its connection mid-session leaves the proxy up and closes the upstream socket', T, async () => {
      // A raw handshake, so the client can end with a TCP reset instead of a clean close.
      const socket = net.connect(sy.yard.port, '127.0.0.1');
      await once(socket, 'connect');
      const known = echo.connections.length;
      socket.write([
        'GET /chat HTTP/1.1', `Host: 127.0.0.1:${sy.yard.port}`, 'Connection: Upgrade', 'Upgrade: websocket',
        'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`, '', '',
      ].join('\r\n'));
      let head = '';
      while (!head.includes('\r\n\r\n')) head += String((await once(socket, 'data'))[0]);
      assert.match(head, /^HTTP\/1\.1 101 /);
      await until(() => echo.connections.length > known, echo.events, 'connection');
      const upstreamClosed = once(echo.connections.at(-1)!, 'close');
      // Switchyard runs in this process: an exception it lets escape would end a real one.
      const uncaught: unknown[] = [];
      const onUncaught = (err: unknown) => uncaught.push(err);
      process.on('uncaughtException', onUncaught);
      try {
        socket.resetAndDestroy();
        await upstreamClosed;
      } finally {
        process.off('uncaughtException', onUncaught);
      }
      assert.deepEqual(uncaught, []);
      const res = await fetch(`${sy.url}/plain/still-up`);
      assert.equal(res.status, 200);
    });

    test('an upgrade the upstream refuses with a plain 403 reaches the client as that 403, and both connections close', T, async () => {
      const ws = new WebSocket(wsUrl(sy, '/refused'));
      ws.on('error', () => {});
      const [, res] = (await once(ws, 'unexpected-response')) as [http.ClientRequest, IncomingMessage];
      const clientSocket = res.socket;
      assert.equal(res.statusCode, 403);
      assert.equal((await readAll(res)).toString(), 'no websockets here');
      await closed(clientSocket);
      assert.ok(refusingSockets.length > 0);
      for (const socket of refusingSockets) await closed(socket);
    });

    test('an upgrade to an upstream that is down answers 502 and the proxy keeps serving', T, async () => {
      const ws = new WebSocket(wsUrl(sy, '/dead'));
      ws.on('error', () => {});
      const [, res] = (await once(ws, 'unexpected-response')) as [http.ClientRequest, IncomingMessage];
      const clientSocket = res.socket;
      assert.equal(res.statusCode, 502);
      const body = JSON.parse((await readAll(res)).toString()) as Record<string, unknown>;
      assert.equal(body.code, 'SY_ERR_UPSTREAM_UNREACHABLE');
      assert.equal(body.requestId, res.headers['x-request-id']);
      await closed(clientSocket);
      const after = await fetch(`${sy.url}/plain/still-up`);
      assert.equal(after.status, 200);
      assert.equal(((await after.json()) as { upstream: string }).upstream, 'plain');
    });
  });

  // ---- Client aborts ---------------------------------------------------------------------------

  describe('a client that goes away aborts the upstream request', () => {
    const defer = cleanup();
    // Timeouts far beyond the test's own: only the abort can end these upstream requests.
    const patient = { timeouts: { firstByte: 600_000, idle: 600_000 } };

    test('while waiting for the response head', T, async () => {
      const upstreamReq = deferred<{ req: IncomingMessage; res: ServerResponse }>();
      const { sy } = await proxyTo(defer, (req, res) => upstreamReq.resolve({ req, res }), patient);

      const client = http.get(`${sy.url}/slow`, { agent: false });
      client.on('error', () => {});
      const { req, res } = await upstreamReq.promise;
      const upstreamClosed = Promise.all([closed(req), closed(res)]);
      client.destroy();
      await upstreamClosed;
      assert.equal(res.headersSent, false);
    });

    test('in the middle of an upload', T, async () => {
      const arrived = new EventEmitter();
      let received = 0;
      const upstreamReq = deferred<IncomingMessage>();
      const { sy } = await proxyTo(defer, (req) => {
        req.on('data', (chunk: Buffer) => {
          received += chunk.length;
          arrived.emit('data');
        });
        req.on('error', () => {});
        upstreamReq.resolve(req);
      }, patient);

      const client = http.request(`${sy.url}/upload`, { method: 'POST', agent: false, headers: { 'content-length': 1000 } });
      client.on('error', () => {});
      client.write(Buffer.alloc(100, 'a'));
      const req = await upstreamReq.promise;
      await until(() => received === 100, arrived, 'data');
      client.destroy();
      await closed(req);
      assert.equal(req.complete, false);
      assert.equal(received, 100);
    });

    test('in the middle of a streamed response', T, async () => {
      const upstreamRes = deferred<ServerResponse>();
      const { sy } = await proxyTo(defer, (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first part, more to come');
        upstreamRes.resolve(res);
      }, patient);

      const client = http.get(`${sy.url}/stream`, { agent: false });
      client.on('error', () => {});
      const res = await responseOf(client);
      res.on('error', () => {});
      assert.equal(String((await once(res, 'data'))[0]), 'first part, more to come');
      const upstream = await upstreamRes.promise;
      client.destroy();
      await closed(upstream);
      assert.equal(upstream.writableEnded, false);
    });
  });

  // ---- Failures --------------------------------------------------------------------------------

  describe('failures answer a status and a JSON body with the request id', () => {
    const defer = cleanup();

    test('no matching route answers 404 SY_ERR_NO_ROUTE', T, async () => {
      const upstream = await startUpstream(echoHandler());
      defer(() => upstream.close());
      const sy = await startSwitchyard({ server: { store: 'memory://', ...SERVER }, routes: [{ name: 'api', match: { pathPrefix: '/api' }, upstreams: [{ url: upstream.url }] }] });
      defer(() => sy.stop());
      await assertErrorReply(await fetch(`${sy.url}/elsewhere`), 404, 'SY_ERR_NO_ROUTE');
    });

    test('an upstream port with nothing listening answers 502 SY_ERR_UPSTREAM_UNREACHABLE', T, async () => {
      const sy = await startSwitchyard(routeConfig([`http://127.0.0.1:${await closedPort()}`], {}, SERVER));
      defer(() => sy.stop());
      await assertErrorReply(await fetch(`${sy.url}/x`), 502, 'SY_ERR_UPSTREAM_UNREACHABLE');
    });

    test('an upstream that drops the connection without answering gets 502 SY_ERR_UPSTREAM_UNREACHABLE', T, async () => {
      const { sy } = await proxyTo(defer, (req) => req.socket.destroy());
      await assertErrorReply(await fetch(`${sy.url}/x`), 502, 'SY_ERR_UPSTREAM_UNREACHABLE');
    });

    test('an upstream that resets the connection (TCP RST) gets 502 SY_ERR_UPSTREAM_UNREACHABLE', T, async () => {
      const { sy } = await proxyTo(defer, (req) => req.socket.resetAndDestroy());
      await assertErrorReply(await fetch(`${sy.url}/x`), 502, 'SY_ERR_UPSTREAM_UNREACHABLE');
    });

    test('an upstream that never answers gets 504 SY_ERR_UPSTREAM_TIMEOUT after timeouts.firstByte, and its request is aborted', T, async () => {
      const upstreamRes = deferred<ServerResponse>();
      const { sy } = await proxyTo(defer, (_req, res) => upstreamRes.resolve(res), { timeouts: { firstByte: 200 } });
      await assertErrorReply(await fetch(`${sy.url}/x`), 504, 'SY_ERR_UPSTREAM_TIMEOUT');
      await closed(await upstreamRes.promise);
    });

    test('an upstream that stalls mid-body past timeouts.idle gets the client connection cut, not cleanly ended', T, async () => {
      const { sy } = await proxyTo(defer, (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 100 });
        res.write('only ten b');
      }, { timeouts: { idle: 200 } });
      const lines = logEvents(sy);

      const res = await responseOf(http.get(`${sy.url}/x`, { agent: false }));
      assert.equal(res.statusCode, 200);
      let error: (Error & { code?: string }) | undefined;
      res.on('error', (err) => (error = err));
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      await closed(res);
      assert.equal(body, 'only ten b');
      assert.equal(res.complete, false);
      assert.equal(error?.code, 'ECONNRESET');
      await until(() => sy.logs.some((line) => line.code === 'SY_ERR_UPSTREAM_IDLE_TIMEOUT'), lines, 'line');
    });

    test('a route whose upstreams are all unhealthy answers 503 SY_ERR_NO_HEALTHY_UPSTREAM', T, async () => {
      const upstream = await startUpstream(echoHandler());
      defer(() => upstream.close());
      const core = new URL('../../core/index.js', import.meta.url).href;
      const plugin = [
        `import { definePlugin } from ${JSON.stringify(core)};`,
        'export default definePlugin({',
        "  name: 'all-down',",
        "  schema: { type: 'object' },",
        '  setup(api) {',
        "    for (const upstream of api.route.upstreams) api.health.set(upstream, false, 'marked down by the test');",
        '  },',
        '});',
      ].join('\n');
      const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './all-down.mjs' }] }, SERVER), { files: { 'all-down.mjs': plugin } });
      defer(() => sy.stop());
      await assertErrorReply(await fetch(`${sy.url}/x`), 503, 'SY_ERR_NO_HEALTHY_UPSTREAM');
    });

    test('an upstream that never accepts the connection gets 504 SY_ERR_UPSTREAM_CONNECT_TIMEOUT after timeouts.connect', { ...T, skip: noPython }, async () => {
      // A listener with a full accept queue that never accepts: the kernel drops further SYNs, so
      // connecting hangs. Node accepts on its own, so the listener is a python3 socket (backlog 0).
      const python = spawn('python3', ['-c', [
        'import socket, sys',
        's = socket.socket()',
        "s.bind(('127.0.0.1', 0))",
        's.listen(0)',
        'print(s.getsockname()[1], flush=True)',
        'sys.stdin.read()',
      ].join('\n')], { stdio: ['pipe', 'pipe', 'ignore'] });
      const exited = once(python, 'exit');
      const sockets: net.Socket[] = [];
      try {
        const port = Number(String((await once(python.stdout!, 'data'))[0]).trim());
        // Backlog 0 holds one connection: fill it, and every later SYN is dropped.
        const filler = net.connect(port, '127.0.0.1');
        sockets.push(filler);
        await once(filler, 'connect');
        const sy = await startSwitchyard(routeConfig([`http://127.0.0.1:${port}`], { timeouts: { connect: 200, firstByte: 600_000 } }, SERVER));
        defer(() => sy.stop());
        await assertErrorReply(await fetch(`${sy.url}/x`), 504, 'SY_ERR_UPSTREAM_CONNECT_TIMEOUT');
      } finally {
        for (const socket of sockets) socket.destroy();
        python.stdin!.end();
        await exited;
      }
    });
  });

  // ---- Headers ---------------------------------------------------------------------------------

  describe('hop-by-hop and X-Forwarded headers', () => {
    const defer = cleanup();

    test('hop-by-hop request headers and those named in Connection stay behind; the rest reach the upstream', T, async () => {
      const { sy } = await proxyTo(defer, echoHandler());
      const res = await exchange(`${sy.url}/hop`, {
        headers: {
          host: 'front.example',
          connection: 'x-custom, close',
          'x-custom': 'connection-scoped',
          'keep-alive': 'timeout=77',
          te: 'trailers',
          'proxy-authorization': 'Basic c2VjcmV0OnNlY3JldA==',
          upgrade: 'h2c',
          'x-keep': 'yes',
          accept: 'application/json',
          authorization: 'Bearer end-to-end',
        },
      });
      assert.equal(res.status, 200);
      const seen = (JSON.parse(res.body.toString()) as { headers: Record<string, string> }).headers;
      for (const name of ['x-custom', 'keep-alive', 'te', 'proxy-authorization', 'upgrade']) {
        assert.equal(seen[name], undefined, `${name} reached the upstream`);
      }
      assert.doesNotMatch(seen.connection ?? '', /x-custom|close/i);
      assert.equal(seen['x-keep'], 'yes');
      assert.equal(seen.accept, 'application/json');
      assert.equal(seen.authorization, 'Bearer end-to-end');
    });

    test('from an untrusted client X-Forwarded-For is the peer; X-Forwarded-Proto and -Host say what this hop saw', T, async () => {
      const { sy } = await proxyTo(defer, echoHandler());
      const headersSeen = async (headers: Record<string, string>) =>
        (JSON.parse((await exchange(`${sy.url}/xf`, { headers })).body.toString()) as { headers: Record<string, string> }).headers;

      const chained = await headersSeen({ host: 'front.example:8443', 'x-forwarded-for': '203.0.113.7, 198.51.100.2', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'spoofed.example' });
      assert.equal(chained['x-forwarded-for'], '127.0.0.1');
      assert.equal(chained['x-forwarded-proto'], 'http');
      assert.equal(chained['x-forwarded-host'], 'front.example:8443');

      const first = await headersSeen({ host: 'front.example' });
      assert.equal(first['x-forwarded-for'], '127.0.0.1');
      assert.equal(first['x-forwarded-proto'], 'http');
      assert.equal(first['x-forwarded-host'], 'front.example');
    });

    test('hop-by-hop response headers and those named in Connection stay behind; every Set-Cookie reaches the client', T, async () => {
      const upstream = await startRawUpstream((socket) => socket.write([
        'HTTP/1.1 200 OK',
        'Content-Type: text/plain',
        'Connection: x-resp',
        'X-Resp: 1',
        'Keep-Alive: timeout=77, max=9',
        'Set-Cookie: a=1; Path=/',
        'Set-Cookie: b=2; HttpOnly',
        'Set-Cookie: c=3; Secure',
        'X-Other: kept',
        'Content-Length: 2',
        '', 'ok',
      ].join('\r\n')));
      defer(() => upstream.close());
      const sy = await startSwitchyard(routeConfig([upstream.url], {}, SERVER));
      defer(() => sy.stop());

      const res = await exchange(`${sy.url}/cookies`);
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), 'ok');
      assert.equal(res.headers['x-resp'], undefined);
      assert.doesNotMatch(String(res.headers['keep-alive'] ?? ''), /77|max=9/);
      assert.doesNotMatch(res.headers.connection ?? '', /x-resp/i);
      assert.equal(res.headers['x-other'], 'kept');
      assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly', 'c=3; Secure']);
      // Three separate header lines on the wire, not one joined value.
      assert.equal(res.rawHeaders.filter((_, i) => i % 2 === 0 && res.rawHeaders[i]!.toLowerCase() === 'set-cookie').length, 3);
    });

    test('a chunked request body keeps its framing on the way upstream, whatever the method', T, async () => {
      const requests: { method: string; url: string; body: string }[] = [];
      const { sy } = await proxyTo(defer, (req, res) => {
        readAll(req).then((body) => {
          requests.push({ method: req.method!, url: req.url!, body: body.toString() });
          res.end('done');
        }, () => res.destroy());
      });
      // A body that is itself a request: sent upstream without its framing, it would become one.
      const inner = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
      const methods = ['POST', 'GET', 'DELETE', 'OPTIONS'];
      for (const method of methods) {
        const raw = await rawExchange(sy.yard.port, `${method} /framed HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`);
        assert.equal(parseResponse(raw).status, 200, `${method}: ${raw.toString()}`);
      }
      assert.deepEqual(requests, methods.map((method) => ({ method, url: '/framed', body: inner })));
    });
  });

  describe('the Host header', () => {
    const defer = cleanup();

    test("is rewritten to the upstream's host and port, unless the route preserves it", T, async () => {
      const upstream = await startUpstream(echoHandler());
      defer(() => upstream.close());
      const sy = await startSwitchyard({
        server: { store: 'memory://', ...SERVER },
        routes: [
          { name: 'rewrite', match: { pathPrefix: '/rewrite' }, upstreams: [{ url: upstream.url }] },
          { name: 'preserve', match: { pathPrefix: '/preserve' }, preserveHost: true, upstreams: [{ url: upstream.url }] },
        ],
      });
      defer(() => sy.stop());
      const hostSeen = async (path: string) =>
        (JSON.parse((await exchange(`${sy.url}${path}`, { headers: { host: 'front.example:8080' } })).body.toString()) as { headers: Record<string, string> }).headers.host;

      assert.equal(await hostSeen('/rewrite'), `127.0.0.1:${upstream.port}`);
      assert.equal(await hostSeen('/preserve'), 'front.example:8080');
    });
  });

  // ---- Paths -----------------------------------------------------------------------------------

  describe('the request target is forwarded byte for byte, dot segments removed', () => {
    const defer = cleanup();
    let sy: RunningSwitchyard;

    // The upstream answers with the request target exactly as it arrived, and says whether the
    // proxy's private empty-query marker leaked into the headers.
    before(async () => {
      const upstream = await startUpstream((req, res) => {
        req.resume();
        res.setHeader('x-marker-seen', String('x-switchyard-empty-query' in req.headers));
        res.end(req.url);
      });
      defer(() => upstream.close());
      sy = await startSwitchyard({
        server: { store: 'memory://', ...SERVER },
        routes: [
          { name: 'root', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }] },
          { name: 'api', match: { pathPrefix: '/api' }, stripPrefix: true, upstreams: [{ url: upstream.url }] },
        ],
      });
      defer(() => sy.stop());
    });

    const unchanged = ['/x?', '/x?&', '/x??y', '//double//slash', '/p%2Fq?r=%2F&s=%20', '/q?a=1&&b=&c', '/%7Euser/%E2%82%AC', '/.well-known/x?a=/../b'];
    for (const path of unchanged) {
      test(`${path} reaches the upstream unchanged`, T, async () => {
        const raw = await rawExchange(sy.yard.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        const res = parseResponse(raw);
        assert.equal(res.status, 200);
        assert.equal(res.body.toString('latin1'), path);
        assert.deepEqual(res.headers.filter(([name]) => name === 'x-marker-seen'), [['x-marker-seen', 'false']]);
      });
    }

    // Dot segments are the one change (core/request-head.ts): routes, access checks and the
    // upstream must all see the same path.
    const normalised: [string, string][] = [['/a/../b', '/b'], ['/./c', '/c'], ['/a/b/..?q=/..', '/a/?q=/..'], ['/..', '/']];
    for (const [path, forwarded] of normalised) {
      test(`${path} reaches the upstream as ${forwarded}`, T, async () => {
        const res = parseResponse(await rawExchange(sy.yard.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
        assert.equal(res.status, 200);
        assert.equal(res.body.toString('latin1'), forwarded);
      });
    }

    const stripped: [string, string][] = [['/api/x?y', '/x?y'], ['/api', '/'], ['/api/', '/'], ['/api?', '/?'], ['/api?q=1', '/?q=1'], ['/api//x', '//x'], ['/api/a%2Fb?c=%2F', '/a%2Fb?c=%2F']];
    for (const [path, forwarded] of stripped) {
      test(`stripPrefix forwards ${path} as ${forwarded}`, T, async () => {
        const res = await exchange(`${sy.url}/`, { path });
        assert.equal(res.status, 200);
        assert.equal(res.body.toString('latin1'), forwarded);
        assert.equal(res.headers['x-marker-seen'], 'false');
      });
    }

    test('a client cannot make the proxy change the path with the private empty-query marker header', T, async () => {
      const res = await exchange(`${sy.url}/plain`, { headers: { 'x-switchyard-empty-query': '1' } });
      assert.equal(res.body.toString(), '/plain');
      assert.equal(res.headers['x-marker-seen'], 'false');
    });
  });

  // ---- Request ids -----------------------------------------------------------------------------

  describe('X-Request-Id', () => {
    const defer = cleanup();

    test('an incoming id is kept: the upstream gets it and the response carries it', T, async () => {
      const { sy } = await proxyTo(defer, echoHandler());
      const res = await fetch(`${sy.url}/id`, { headers: { 'x-request-id': 'trace-42.abc:def' } });
      assert.equal(res.headers.get('x-request-id'), 'trace-42.abc:def');
      assert.equal(((await res.json()) as { headers: Record<string, string> }).headers['x-request-id'], 'trace-42.abc:def');
    });

    test('without one, a fresh random UUID goes to both the upstream and the client, different each time', T, async () => {
      const { sy } = await proxyTo(defer, echoHandler());
      const ids = new Set<string>();
      // More than the 256 ids one fill of the random pool makes, so a refill is crossed.
      const count = 300;
      for (let i = 0; i < count; i++) {
        const res = await fetch(`${sy.url}/id`);
        const id = res.headers.get('x-request-id');
        assert.match(id ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        assert.equal(((await res.json()) as { headers: Record<string, string> }).headers['x-request-id'], id);
        ids.add(id!);
      }
      assert.equal(ids.size, count);
    });

    test('an unusable incoming id (spaces, too long) is replaced by a fresh one', T, async () => {
      const { sy } = await proxyTo(defer, echoHandler());
      for (const given of ['has spaces in it', 'x'.repeat(201)]) {
        const res = await fetch(`${sy.url}/id`, { headers: { 'x-request-id': given } });
        const id = res.headers.get('x-request-id');
        assert.notEqual(id, given);
        assert.match(id ?? '', /^[0-9a-f-]{36}$/);
        assert.equal(((await res.json()) as { headers: Record<string, string> }).headers['x-request-id'], id);
      }
    });

    test('an error reply carries the incoming id too', T, async () => {
      const sy = await startSwitchyard({ server: { store: 'memory://', ...SERVER }, routes: [] });
      defer(() => sy.stop());
      const res = await fetch(`${sy.url}/nowhere`, { headers: { 'x-request-id': 'trace-43' } });
      assert.equal(res.headers.get('x-request-id'), 'trace-43');
      assert.equal(((await res.json()) as { requestId: string }).requestId, 'trace-43');
    });
  });
  // ---- Protocol details ------------------------------------------------------------------------

  describe('protocol details', () => {
    const defer = cleanup();

    test('Expect: 100-continue: the client hears 100 Continue, then its body reaches the upstream', T, async () => {
      const { sy } = await proxyTo(defer, echoHandler());
      const req = http.request(`${sy.url}/continue`, { method: 'PUT', agent: false, headers: { expect: '100-continue', 'content-length': 5 } });
      const response = responseOf(req);
      // The body goes out only once the proxy said continue: without that 'continue' this hangs.
      await once(req, 'continue');
      req.end('hello');
      const res = await response;
      assert.equal(res.statusCode, 200);
      const seen = JSON.parse((await readAll(res)).toString()) as { method: string; body: string };
      assert.deepEqual([seen.method, seen.body], ['PUT', 'hello']);
    });

    test('trailers the upstream announces reach the client after a chunked body', T, async () => {
      const upstream = await startRawUpstream((socket) => socket.write([
        'HTTP/1.1 200 OK',
        'Content-Type: text/plain',
        'Transfer-Encoding: chunked',
        'Trailer: X-Checksum',
        '', '5', 'hello', '0', 'X-Checksum: abc123', '', '',
      ].join('\r\n')));
      defer(() => upstream.close());
      const sy = await startSwitchyard(routeConfig([upstream.url], {}, SERVER));
      defer(() => sy.stop());

      const res = await responseOf(http.get(`${sy.url}/trailers`, { agent: false, headers: { te: 'trailers' } }));
      assert.equal(res.statusCode, 200);
      assert.equal((await readAll(res)).toString(), 'hello');
      assert.deepEqual(res.trailers, { 'x-checksum': 'abc123' });
    });

    test('HEAD, 204 and 304 answers carry no body and leave the client connection usable', T, async () => {
      const { sy } = await proxyTo(defer, (req, res) => {
        req.resume();
        if (req.method === 'HEAD') res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1234 }).end();
        else if (req.url === '/no-content') res.writeHead(204, { 'x-kind': 'no-content' }).end();
        else if (req.url === '/not-modified') res.writeHead(304, { etag: '"v1"' }).end();
        else res.end('after');
      });
      // One connection for all four: a stray body byte from an earlier answer would corrupt the next.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      defer(() => agent.destroy());
      const sockets = new Set<net.Socket>();
      const send = async (path: string, method = 'GET') => {
        const res = await responseOf(http.request(`${sy.url}${path}`, { method, agent }).end());
        sockets.add(res.socket as net.Socket);
        return { res, body: (await readAll(res)).toString() };
      };

      const head = await send('/file', 'HEAD');
      assert.deepEqual([head.res.statusCode, head.res.headers['content-length'], head.body], [200, '1234', '']);
      const noContent = await send('/no-content');
      assert.deepEqual([noContent.res.statusCode, noContent.res.headers['x-kind'], noContent.body], [204, 'no-content', '']);
      const notModified = await send('/not-modified', 'GET');
      assert.deepEqual([notModified.res.statusCode, notModified.res.headers.etag, notModified.body], [304, '"v1"', '']);
      const after = await send('/after');
      assert.deepEqual([after.res.statusCode, after.body], [200, 'after']);
      assert.equal(sockets.size, 1);
    });

    test('https upstreams: a custom CA is trusted, an unknown one answers 502 SY_ERR_UPSTREAM_TLS, insecure skips the check', { ...T, skip: noOpenssl }, async () => {
      const ca = createTestCa();
      ca.issue(join(ca.dir, 'up.pem'), join(ca.dir, 'up.key'));
      const secure = https.createServer({ cert: readFileSync(join(ca.dir, 'up.pem')), key: readFileSync(join(ca.dir, 'up.key')) }, echoHandler('tls-upstream'));
      secure.listen(0, '127.0.0.1');
      await once(secure, 'listening');
      defer(() => new Promise((resolve) => {
        secure.closeAllConnections();
        secure.close(resolve);
      }));
      const target = `https://127.0.0.1:${(secure.address() as net.AddressInfo).port}`;
      const sy = await startSwitchyard({
        server: { store: 'memory://', ...SERVER },
        routes: [
          { name: 'ca', match: { pathPrefix: '/ca' }, upstreams: [{ url: target, tls: { ca: ca.caFile } }] },
          { name: 'unknown', match: { pathPrefix: '/unknown' }, upstreams: [{ url: target }] },
          { name: 'insecure', match: { pathPrefix: '/insecure' }, upstreams: [{ url: target, tls: { insecure: true } }] },
        ],
      });
      defer(() => sy.stop());

      for (const path of ['/ca/x', '/insecure/x']) {
        const res = await fetch(`${sy.url}${path}`);
        assert.equal(res.status, 200, path);
        const seen = (await res.json()) as { upstream: string; url: string };
        assert.deepEqual([seen.upstream, seen.url], ['tls-upstream', path]);
      }
      await assertErrorReply(await fetch(`${sy.url}/unknown/x`), 502, 'SY_ERR_UPSTREAM_TLS');
    });

    test('a streamed body over server.limits.maxBodySize answers 413 and cuts the upstream request off', T, async () => {
      const upstreamReq = deferred<IncomingMessage>();
      const upstream = await startUpstream((req) => {
        req.on('error', () => {});
        upstreamReq.resolve(req);
      });
      defer(() => upstream.close());
      const limited = await startSwitchyard(routeConfig([upstream.url], {}, { ...SERVER, limits: { maxBodySize: 1000 } }));
      defer(() => limited.stop());

      // Chunked: no length to refuse up front, so the bytes are counted as they pass.
      const client = http.request(`${limited.url}/up`, { method: 'POST', agent: false });
      const response = responseOf(client);
      client.write('y'.repeat(600));
      const req = await upstreamReq.promise;
      client.write('y'.repeat(600));
      const res = await response;
      assert.equal(res.statusCode, 413);
      assert.equal((JSON.parse((await readAll(res)).toString()) as { code: string }).code, 'SY_ERR_BODY_TOO_LARGE');
      await closed(req);
      assert.equal(req.complete, false);
      client.destroy();
    });

    test('a body-less request an error tap retries is sent again: after a refused connection and after a 5xx', T, async () => {
      const failing = await startUpstream((req, res) => {
        req.resume();
        res.writeHead(503, { 'content-type': 'text/plain' });
        res.end('busy, and a body to drain');
      });
      defer(() => failing.close());
      const good = await startUpstream(echoHandler('good'));
      defer(() => good.close());
      const retry = pluginSource('retry', "    api.hooks.error.tap('retry', (ctx) => ctx.tried.length < 3 ? RETRY : undefined);");
      const sy = await startSwitchyard(
        routeConfig([`http://127.0.0.1:${await closedPort()}`, failing.url, good.url], { plugins: [{ path: './retry.mjs' }] }, SERVER),
        { files: { 'retry.mjs': retry } },
      );
      defer(() => sy.stop());
      const lines = logEvents(sy);

      const res = await fetch(`${sy.url}/again`);
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { upstream: string }).upstream, 'good');
      await until(() => sy.logs.some((line) => line.msg === 'request'), lines, 'line');
      assert.equal(sy.logs.find((line) => line.msg === 'request')?.attempts, 3);
    });
  });
}

/** Routing happens before any engine is involved: these run once. */
const SERVER = { shutdownTimeout: 2000 };

// ---- Route matching --------------------------------------------------------------------------

describe('route matching', () => {
  const defer = cleanup();
  let sy: RunningSwitchyard;

  // One upstream per route, named after it.
  before(async () => {
    const names = ['fallback', 'api', 'api-v2', 'exact', 'tenant', 'wildcard', 'post-only'];
    const upstreams: Record<string, string> = {};
    for (const name of names) {
      const upstream = await startUpstream(echoHandler(name));
      defer(() => upstream.close());
      upstreams[name] = upstream.url;
    }
    const route = (name: string, match: Record<string, unknown>) => ({ name, match, upstreams: [{ url: upstreams[name] }] });
    // Less specific routes first, so the config's order cannot be what decides.
    sy = await startSwitchyard({
      server: { store: 'memory://', ...SERVER },
      routes: [
        route('fallback', { pathPrefix: '/' }),
        route('api', { pathPrefix: '/api' }),
        route('api-v2', { pathPrefix: '/api/v2' }),
        route('exact', { path: '/api/v2/ping' }),
        route('tenant', { pathPrefix: '/h', host: 'tenant.example' }),
        route('wildcard', { pathPrefix: '/w', host: '*.example.org' }),
        route('post-only', { pathPrefix: '/m', methods: ['POST', 'PUT'] }),
      ],
    });
    defer(() => sy.stop());
  });

  async function routedTo(path: string, options: http.RequestOptions = {}): Promise<string> {
    const res = await exchange(`${sy.url}${path}`, options);
    assert.equal(res.status, 200);
    return (JSON.parse(res.body.toString()) as { upstream: string }).upstream;
  }

  test('an exact path beats every prefix', T, async () => {
    assert.equal(await routedTo('/api/v2/ping'), 'exact');
    assert.equal(await routedTo('/api/v2/ping?x=1'), 'exact');
    assert.equal(await routedTo('/api/v2/ping/more'), 'api-v2');
  });

  test('a longer prefix beats a shorter one', T, async () => {
    assert.equal(await routedTo('/api/v2'), 'api-v2');
    assert.equal(await routedTo('/api/v2/items'), 'api-v2');
    assert.equal(await routedTo('/api/v1/items'), 'api');
    assert.equal(await routedTo('/api'), 'api');
    assert.equal(await routedTo('/other'), 'fallback');
  });

  test('a prefix matches only at a segment boundary: /api does not take /apiary', T, async () => {
    assert.equal(await routedTo('/apiary'), 'fallback');
    assert.equal(await routedTo('/api/v2x'), 'api');
  });

  test('a host condition matches the Host header without its port, wildcards only subdomains', T, async () => {
    assert.equal(await routedTo('/h/x', { headers: { host: 'tenant.example' } }), 'tenant');
    assert.equal(await routedTo('/h/x', { headers: { host: 'TENANT.example:8080' } }), 'tenant');
    assert.equal(await routedTo('/h/x', { headers: { host: 'other.example' } }), 'fallback');
    assert.equal(await routedTo('/w', { headers: { host: 'a.example.org' } }), 'wildcard');
    assert.equal(await routedTo('/w', { headers: { host: 'example.org' } }), 'fallback');
  });

  test('a methods condition matches only those methods', T, async () => {
    assert.equal(await routedTo('/m', { method: 'POST' }), 'post-only');
    assert.equal(await routedTo('/m', { method: 'PUT' }), 'post-only');
    assert.equal(await routedTo('/m', { method: 'GET' }), 'fallback');
  });

  test('with no route left to match, the answer is 404 SY_ERR_NO_ROUTE', T, async () => {
    const only = await startSwitchyard({ server: { store: 'memory://', ...SERVER }, routes: [{ name: 'api', match: { pathPrefix: '/api' }, upstreams: [{ url: 'http://127.0.0.1:9' }] }] });
    defer(() => only.stop());
    await assertErrorReply(await fetch(`${only.url}/apiary`), 404, 'SY_ERR_NO_ROUTE');
  });
});