// Prepared response heads (core/response-head.ts): what PreparedHead.of() keeps and refuses, and a
// Reply written with one over real connections, with head splicing on and with it off (the
// writeHead fallback), which must put the same header lines on the wire.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PreparedHead } from '../../core/index.js';
import { headSplicing, writePreparedHead } from '../../core/response-head.js';
import { echoHandler, pluginSource, routeConfig, startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';
import { createTestCa, noOpenssl } from '../helpers/tls.js';
import { parseResponse, readAll } from '../helpers/wire.js';

/** What the probe found when the module loaded, before any test below switches splicing. */
const PROBED = headSplicing.enabled;

describe('PreparedHead.of', () => {
  test('keeps headers as lines with lower-case names, one line per value of a list', () => {
    const head = PreparedHead.of({ 'Content-Type': 'text/plain', 'x-list': ['a', 'b'], 'x-number': 7, 'x-gone': undefined });
    assert.equal(head.lines, 'content-type: text/plain\r\nx-list: a\r\nx-list: b\r\nx-number: 7\r\n');
    assert.deepEqual(head.headers, { 'content-type': 'text/plain', 'x-list': ['a', 'b'], 'x-number': 7 });
  });

  test('leaves out what Node or the core writes itself: framing, connection, Date, X-Request-Id', () => {
    const head = PreparedHead.of({
      'content-length': '5', 'Transfer-Encoding': 'chunked', connection: 'close', 'keep-alive': 'timeout=5',
      date: 'Thu, 01 Jan 2026 00:00:00 GMT', trailer: 'x-t', expect: '100-continue', 'x-request-id': 'theirs', etag: '"v1"',
    });
    assert.equal(head.lines, 'etag: "v1"\r\n');
  });

  test('refuses a name or value Node would refuse, with Node\'s error codes', () => {
    assert.throws(() => PreparedHead.of({ 'bad name': 'x' }), { code: 'ERR_INVALID_HTTP_TOKEN' });
    assert.throws(() => PreparedHead.of({ 'x-injected': 'a\r\nset-cookie: planted=1' }), { code: 'ERR_INVALID_CHAR' });
    assert.throws(() => PreparedHead.of({ etag: '"v1"' }).with({ age: 'one\ntwo' }), { code: 'ERR_INVALID_CHAR' });
  });

  test('keeps a Date when asked to, and a reply with that head has that Date line and no other, spliced or not', async () => {
    const date = 'Thu, 01 Jan 2026 00:00:00 GMT';
    const head = PreparedHead.of({ date, etag: '"v1"' }, true).with({ age: '3' });
    assert.equal(head.lines, `date: ${date}\r\netag: "v1"\r\nage: 3\r\n`);
    const server = http.createServer((_req, res) => {
      writePreparedHead(res, 200, head, { 'content-length': 2 }, 'req-1');
      res.end('ok');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      for (const enabled of [true, false]) {
        headSplicing.enabled = enabled && PROBED;
        const raw = await pipelined((server.address() as net.AddressInfo).port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        const [answer] = responsesIn(raw, ['GET']);
        assert.deepEqual(answer!.lines.filter(([name]) => name === 'date'), [['date', date]], `splicing ${enabled}`);
      }
    } finally {
      headSplicing.enabled = PROBED;
      server.close();
    }
  });

  test('with() adds headers after the head and leaves the head as it was', () => {
    const head = PreparedHead.of({ etag: '"v1"' });
    const more = head.with({ Age: '3' });
    assert.equal(more.lines, 'etag: "v1"\r\nage: 3\r\n');
    assert.deepEqual(more.headers, { etag: '"v1"', age: '3' });
    assert.equal(head.lines, 'etag: "v1"\r\n');
  });
});

/** The responses in `raw` (several, pipelined): status, header lines (names lower-cased) and body. */
function responsesIn(raw: Buffer, methods: string[]): { status: number; lines: [string, string][]; body: Buffer }[] {
  const out: { status: number; lines: [string, string][]; body: Buffer }[] = [];
  let at = 0;
  for (const method of methods) {
    const end = raw.indexOf('\r\n\r\n', at);
    assert.notEqual(end, -1, `response ${out.length + 1} has a whole head`);
    const [statusLine, ...rest] = raw.subarray(at, end).toString('latin1').split('\r\n');
    const lines = rest.map((line): [string, string] => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]);
    if (lines.some(([name, value]) => name === 'transfer-encoding' && value === 'chunked')) {
      const { body } = parseResponse(raw.subarray(at));
      out.push({ status: Number(statusLine!.split(' ')[1]), lines, body });
      return out; // a chunked answer is the last one these tests read
    }
    const length = method === 'HEAD' ? 0 : Number(lines.find(([name]) => name === 'content-length')?.[1] ?? 0);
    out.push({ status: Number(statusLine!.split(' ')[1]), lines, body: raw.subarray(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  assert.equal(at, raw.length, 'nothing after the last response');
  return out;
}

async function pipelined(port: number, requests: string): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(requests);
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'close');
  return Buffer.concat(chunks);
}

// A plugin answering every request from a prepared head, as the cache does; `?proxy` also sets a
// proxy response header whose name the head carries too, `?res` a header on the ServerResponse.
const PREPARED = pluginSource('prepared', `
    const head = PreparedHead.of({ 'content-type': 'application/octet-stream', 'x-list': ['a', 'b'], etag: '"v1"' });
    // Every byte value, CR and LF and bytes no UTF-8 text holds among them.
    const small = Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 7) % 256));
    const big = Buffer.alloc(20 * 1024, small);
    api.hooks.access.tap('prepared', (ctx) => {
      if (ctx.url.endsWith('?proxy')) ctx.setResponseHeader('etag', '"proxy"');
      if (ctx.url.endsWith('?res')) ctx.res.setHeader('x-list', 'set on res');
      if (ctx.url.endsWith('?stream')) return { status: 200, head, body: Readable.from([small.subarray(0, 512), small.subarray(512)]) };
      return { status: 200, head: head.with({ age: '4' }), headers: { 'x-own': 'yes' }, body: ctx.url.endsWith('?big') ? big : small };
    });`).replace('import { definePlugin,', "import { Readable } from 'node:stream';\nimport { PreparedHead, definePlugin,");
const SMALL = Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 7) % 256));
const BIG = Buffer.alloc(20 * 1024, SMALL);

describe('a Reply with a prepared head, on the wire', () => {
  let upstream: RunningUpstream;
  let sy: RunningSwitchyard;
  const port = () => Number(new URL(sy.url).port);
  before(async () => {
    upstream = await startUpstream(echoHandler());
    sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './prepared.mjs' }] }), { files: { 'prepared.mjs': PREPARED } });
  });
  after(async () => {
    headSplicing.enabled = true;
    await sy.stop();
    await upstream.close();
  });

  const THREE = 'GET /a HTTP/1.1\r\nHost: t\r\n\r\nHEAD /a HTTP/1.1\r\nHost: t\r\n\r\nGET /a?proxy HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n';

  /** Header names in order, with the values that do not change between answers. */
  function shapeOf(lines: [string, string][]): string[] {
    return lines.map(([name, value]) => (name === 'date' || name === 'x-request-id' ? name : `${name}: ${value}`));
  }

  const seen = new Map<boolean, string[][]>();
  for (const splicing of [true, false]) {
    test(`pipelined GET, HEAD and a closing GET on one connection (splicing ${splicing ? 'on' : 'off'})`, async () => {
      headSplicing.enabled = splicing;
      const [get, head, closing] = responsesIn(await pipelined(port(), THREE), ['GET', 'HEAD', 'GET']);
      for (const answer of [get!, head!, closing!]) {
        assert.equal(answer.status, 200);
        const names = answer.lines.map(([name]) => name);
        for (const once of ['content-type', 'etag', 'age', 'x-own', 'x-request-id', 'content-length', 'date']) {
          assert.equal(names.filter((n) => n === once).length, 1, `one ${once} in ${names.join(', ')}`);
        }
        assert.deepEqual(answer.lines.filter(([name]) => name === 'x-list').map(([, value]) => value), ['a', 'b']);
        assert.equal(answer.lines.find(([name]) => name === 'content-length')?.[1], String(SMALL.length));
        assert.match(answer.lines.find(([name]) => name === 'x-request-id')![1], /^[0-9a-f-]{36}$/);
      }
      assert.deepEqual(get!.body, SMALL, 'the body byte for byte');
      assert.deepEqual(closing!.body, SMALL);
      assert.equal(head!.body.length, 0);
      assert.deepEqual(get!.lines.find(([name]) => name === 'connection'), ['connection', 'keep-alive']);
      // setResponseHeader wins over the head's value of the same name, and only its value is sent.
      assert.equal(closing!.lines.find(([name]) => name === 'etag')![1], '"proxy"');
      assert.deepEqual(closing!.lines.find(([name]) => name === 'connection'), ['connection', 'close']);
      assert.notEqual(get!.lines.find(([n]) => n === 'x-request-id')![1], head!.lines.find(([n]) => n === 'x-request-id')![1]);
      seen.set(splicing, [get!, head!, closing!].map((answer) => shapeOf(answer.lines)));
    });
  }

  test('splicing and the writeHead fallback put the same lines on the wire', () => {
    assert.ok(seen.has(true) && seen.has(false), 'both runs above ran');
    assert.deepEqual(seen.get(true), seen.get(false));
  });

  test('with a header set on the ServerResponse by a plugin, the head still carries each name once', async () => {
    headSplicing.enabled = true;
    const [answer] = responsesIn(await pipelined(port(), 'GET /a?res HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'), ['GET']);
    // As writeHead always did: the answer's own value over the one set on the response.
    assert.deepEqual(answer!.lines.filter(([name]) => name === 'x-list').map(([, value]) => value), ['a', 'b']);
    assert.equal(answer!.lines.filter(([name]) => name === 'etag').length, 1);
  });

  test('a body past the one-write size, and one after it on the same connection, arrive whole', async () => {
    headSplicing.enabled = true;
    const raw = await pipelined(port(), 'GET /a?big HTTP/1.1\r\nHost: t\r\n\r\nGET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    const [big, small] = responsesIn(raw, ['GET', 'GET']);
    assert.deepEqual(big!.body, BIG);
    assert.deepEqual(small!.body, SMALL);
  });

  test('a streamed body after a prepared head goes chunked, with the head intact', async () => {
    headSplicing.enabled = true;
    const [answer] = responsesIn(await pipelined(port(), 'GET /a?stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'), ['GET']);
    assert.deepEqual(answer!.lines.find(([name]) => name === 'transfer-encoding'), ['transfer-encoding', 'chunked']);
    assert.equal(answer!.lines.filter(([name]) => name === 'etag').length, 1);
    assert.deepEqual(answer!.body, SMALL);
  });

  test('the access log counts every byte written, head and body', async () => {
    headSplicing.enabled = true;
    const raw = await pipelined(port(), 'GET /a?counted HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    const line = sy.logs.find((l) => l.msg === 'request' && l.path === '/a?counted');
    assert.ok(line, 'an access log line for the request');
    assert.equal(line.bytes, raw.length);
  });

  test('an HTTP/1.0 request without keep-alive gets Connection: close and the connection ends', async () => {
    headSplicing.enabled = true;
    const [answer] = responsesIn(await pipelined(port(), 'GET /a HTTP/1.0\r\n\r\n'), ['GET']);
    assert.deepEqual(answer!.body, SMALL);
    assert.deepEqual(answer!.lines.find(([name]) => name === 'connection'), ['connection', 'close']);
  });

  test('this Node keeps the serialised head where splicing expects it', () => {
    // If a Node upgrade moves it, hits fall back to writeHead (slower, still right): this says so.
    assert.equal(PROBED, true);
  });
});

test('over HTTPS too, a small prepared answer and a large one arrive whole on one connection', { skip: noOpenssl }, async () => {
  const ca = createTestCa();
  ca.issue(join(ca.dir, 'server.pem'), join(ca.dir, 'server.key'));
  const upstream = await startUpstream(echoHandler());
  const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './prepared.mjs' }] }, { tls: { cert: join(ca.dir, 'server.pem'), key: join(ca.dir, 'server.key') } }), { files: { 'prepared.mjs': PREPARED } });
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca.ca });
  try {
    const fetchBody = (path: string) => new Promise<{ body: Buffer; socket: unknown }>((resolve, reject) => {
      https.get(`https://127.0.0.1:${sy.yard.port}${path}`, { agent }, (res) => {
        readAll(res).then((body) => resolve({ body, socket: res.socket }), reject);
      }).on('error', reject);
    });
    const small = await fetchBody('/a');
    const big = await fetchBody('/a?big');
    const again = await fetchBody('/a');
    assert.deepEqual(small.body, SMALL);
    assert.deepEqual(big.body, BIG);
    assert.deepEqual(again.body, SMALL);
    assert.equal(again.socket, small.socket, 'one kept-alive connection');
  } finally {
    agent.destroy();
    await sy.stop();
    await upstream.close();
  }
});
