// The compression plugin through a real route: Accept-Encoding negotiation, the skip list, an
// event stream passing uncompressed and unbuffered, and a cached body encoded per client.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import { encodeWhole, fittedWindow } from '../../plugins/compression/encode.js';
import { compressible, negotiate } from '../../plugins/compression/index.js';
import { guard } from '../helpers/fleet.js';
import { routeConfig, startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';

const JSON_BODY = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ id: i, name: `item number ${i}`, tags: ['alpha', 'beta'] })) });

/** Raw GET: the body bytes as they came off the wire (fetch would decode them). */
function rawGet(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

let upstream: RunningUpstream;
let yard: RunningSwitchyard;
let upstreamHits = 0;
let lastAcceptEncoding: string | undefined;
/** SSE responses held open by the upstream, to write events into from the test. */
const streams: ServerResponse[] = [];
let streamOpened: (() => void) | undefined;

function handler(req: IncomingMessage, res: ServerResponse): void {
  upstreamHits++;
  lastAcceptEncoding = req.headers['accept-encoding'] as string | undefined;
  const path = req.url ?? '/';
  const json = (status: number, extra: Record<string, string> = {}, body = JSON_BODY) => {
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extra });
    res.end(body);
  };
  if (path === '/json' || path === '/cached') return json(200, path === '/cached' ? { etag: '"v1"' } : {});
  if (path === '/small') return json(200, {}, '{"ok":true}');
  if (path === '/png') return json(200, { 'content-type': 'image/png' });
  if (path === '/encoded') {
    const gzipped = zlib.gzipSync(JSON_BODY);
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': gzipped.length });
    return void res.end(gzipped);
  }
  if (path === '/no-transform') return json(200, { 'cache-control': 'no-transform' });
  if (path === '/empty') {
    res.writeHead(204);
    return void res.end();
  }
  if (path === '/chunked') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first chunk of text\n'.repeat(100));
    streams.push(res);
    return streamOpened?.();
  }
  if (path === '/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write('data: hello\n\n');
    streams.push(res);
    return streamOpened?.();
  }
  json(404, {}, '{"error":"no"}');
}

before(async () => {
  upstream = await startUpstream(handler);
  yard = await startSwitchyard(routeConfig([upstream.url], {
    plugins: [
      { name: 'cache', options: { ttl: 60, persistent: { enabled: false }, bypassPaths: ['/json', '/chunked', '/events', '/small', '/png', '/encoded', '/no-transform', '/empty'] } },
      { name: 'compression', options: { threshold: 256, identityUpstream: true } },
    ],
  }, { accessLog: false }));
});
after(async () => {
  for (const res of streams) res.end();
  await yard?.stop();
  await upstream?.close();
});

describe('compression: sanity', () => {
  test('negotiation follows q-values, * and q=0, with ties going to the offered order', () => {
    const offered = ['br', 'gzip'] as const;
    assert.equal(negotiate('gzip, deflate, br', offered), 'br');
    assert.equal(negotiate('gzip;q=1.0, br;q=0.5', offered), 'gzip');
    assert.equal(negotiate('br;q=0, gzip', offered), 'gzip');
    assert.equal(negotiate('*', offered), 'br');
    assert.equal(negotiate('*;q=0.1, br;q=0', offered), 'gzip');
    assert.equal(negotiate('identity', offered), undefined);
    assert.equal(negotiate('gzip;q=0, br;q=0', offered), undefined);
    assert.equal(negotiate(undefined, offered), undefined);
    assert.equal(negotiate('br, gzip', ['gzip', 'br']), 'gzip');
  });

  test('the skip rules: HEAD, 204/304, encoded, no-transform, SSE, media, small bodies', () => {
    const ok = { 'content-type': 'application/json' };
    assert.equal(compressible('GET', 200, ok, ['image/*'], 100), true);
    assert.equal(compressible('HEAD', 200, ok, [], 100), false);
    assert.equal(compressible('GET', 204, ok, [], 100), false);
    assert.equal(compressible('GET', 304, ok, [], 100), false);
    assert.equal(compressible('GET', 200, { ...ok, 'content-encoding': 'br' }, [], 100), false);
    assert.equal(compressible('GET', 200, { ...ok, 'cache-control': 'public, no-transform' }, [], 100), false);
    assert.equal(compressible('GET', 200, { 'content-type': 'text/event-stream; charset=utf-8' }, [], 100), false);
    assert.equal(compressible('GET', 200, { 'content-type': 'image/webp' }, ['image/*'], 100), false);
    assert.equal(compressible('GET', 200, { ...ok, 'content-length': '99' }, [], 100), false);
    assert.equal(compressible('GET', 200, { ...ok, 'content-length': '100' }, [], 100), true);
  });

  test('a body of known length is encoded in one call; brotli gets a window fitted to it, and every size decodes', () => {
    assert.equal(fittedWindow(100), 10, 'the smallest window brotli has');
    assert.equal(fittedWindow(64 * 1024), 17, '64 KiB (and the 16 bytes brotli keeps back) fit in 2^17');
    assert.equal(fittedWindow(1 << 30), 22, 'never more than the default');
    for (const size of [1, 1000, 1024, 65536, 300_000]) {
      const body = Buffer.from('{"id":1,"title":"a movie"},'.repeat(Math.ceil(size / 27)).slice(0, size));
      const settings = { gzipLevel: 6, brotliQuality: 4 };
      assert.deepEqual(zlib.brotliDecompressSync(encodeWhole('br', settings, body)), body, `br, ${size} bytes`);
      assert.deepEqual(zlib.gunzipSync(encodeWhole('gzip', settings, body)), body, `gzip, ${size} bytes`);
    }
  });
});

describe('compression through a route', () => {
  test('gzip or brotli as the client prefers, with Vary, and the body decodes to the original', async () => {
    const gz = await rawGet(`${yard.url}/json`, { 'accept-encoding': 'gzip' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.match(String(gz.headers.vary), /accept-encoding/i);
    assert.equal(gz.headers['content-length'], undefined);
    assert.equal(zlib.gunzipSync(gz.body).toString(), JSON_BODY);
    assert.ok(gz.body.length < JSON_BODY.length / 3);
    const br = await rawGet(`${yard.url}/json`, { 'accept-encoding': 'gzip;q=0.8, br' });
    assert.equal(br.headers['content-encoding'], 'br');
    assert.equal(zlib.brotliDecompressSync(br.body).toString(), JSON_BODY);
    const none = await rawGet(`${yard.url}/json`, { 'accept-encoding': 'identity' });
    assert.equal(none.headers['content-encoding'], undefined);
    assert.match(String(none.headers.vary), /accept-encoding/i);
    assert.equal(none.body.toString(), JSON_BODY);
    // identityUpstream: the upstream was never asked for an encoding.
    assert.equal(lastAcceptEncoding, undefined);
  });

  test('skipped: small bodies, images, already-encoded bodies, no-transform, HEAD and 204', async () => {
    const accept = { 'accept-encoding': 'gzip, br' };
    for (const path of ['/small', '/png', '/no-transform']) {
      const res = await rawGet(`${yard.url}${path}`, accept);
      assert.equal(res.headers['content-encoding'], undefined, path);
    }
    const encoded = await rawGet(`${yard.url}/encoded`, accept);
    assert.equal(encoded.headers['content-encoding'], 'gzip');
    assert.equal(zlib.gunzipSync(encoded.body).toString(), JSON_BODY); // encoded once, not twice
    const head = await rawGet(`${yard.url}/json`, accept, 'HEAD');
    assert.equal(head.headers['content-encoding'], undefined);
    const empty = await rawGet(`${yard.url}/empty`, accept);
    assert.equal(empty.status, 204);
    assert.equal(empty.headers['content-encoding'], undefined);
  });

  test('a chunked body is flushed per write: the first chunk decodes before the upstream ends', async () => {
    const opened = new Promise<void>((resolve) => (streamOpened = resolve));
    const req = http.get(`${yard.url}/chunked`, { headers: { 'accept-encoding': 'gzip' }, agent: false });
    const [res] = await once(req, 'response') as [IncomingMessage];
    await opened;
    assert.equal(res.headers['content-encoding'], 'gzip');
    const gunzip = zlib.createGunzip();
    res.pipe(gunzip);
    let text = '';
    gunzip.on('data', (c: Buffer) => (text += c.toString()));
    await guard(new Promise<void>((resolve) => gunzip.on('data', () => text.length >= 2000 && resolve())), 'the first chunk arrives decoded while the stream is open');
    assert.equal(text, 'first chunk of text\n'.repeat(100));
    const upstreamRes = streams.pop()!;
    upstreamRes.end('the end\n');
    await once(gunzip, 'end');
    assert.ok(text.endsWith('the end\n'));
  });

  test('an event stream passes uncompressed and unbuffered, event by event', async () => {
    const opened = new Promise<void>((resolve) => (streamOpened = resolve));
    const req = http.get(`${yard.url}/events`, { headers: { 'accept-encoding': 'gzip, br', accept: 'text/event-stream' }, agent: false });
    const [res] = await once(req, 'response') as [IncomingMessage];
    await opened;
    assert.equal(res.headers['content-encoding'], undefined);
    const received: string[] = [];
    const next = () => new Promise<string>((resolve) => res.once('data', (c: Buffer) => resolve(c.toString())));
    received.push(await guard(next(), 'the first event'));
    const upstreamRes = streams.pop()!;
    const second = next();
    upstreamRes.write('data: second\n\n');
    received.push(await guard(second, 'the second event, while the stream is still open'));
    assert.deepEqual(received, ['data: hello\n\n', 'data: second\n\n']);
    upstreamRes.end();
    await once(res, 'end');
  });

  test('a cached body is encoded once per coding: hits replay the stored gzip, brotli and identity bytes, each decoding to the body', async () => {
    const hitsBefore = upstreamHits;
    const miss = await rawGet(`${yard.url}/cached`, { 'accept-encoding': 'gzip' });
    assert.equal(miss.headers['x-cache'], 'MISS');
    assert.equal(miss.headers['content-encoding'], 'gzip');
    assert.equal(zlib.gunzipSync(miss.body).toString(), JSON_BODY);
    const plainMiss = await rawGet(`${yard.url}/cached`);
    assert.equal(plainMiss.headers['x-cache'], 'MISS', 'the identity variant is its own entry');
    const brMiss = await rawGet(`${yard.url}/cached`, { 'accept-encoding': 'br' });
    assert.equal(brMiss.headers['x-cache'], 'MISS');
    for (let round = 0; round < 2; round++) {
      const plain = await rawGet(`${yard.url}/cached`);
      assert.equal(plain.headers['x-cache'], 'HIT');
      assert.equal(plain.headers['content-encoding'], undefined);
      assert.equal(plain.body.toString(), JSON_BODY);
      assert.equal(plain.headers.etag, '"v1"');
      assert.equal(plain.headers['content-length'], String(Buffer.byteLength(JSON_BODY)));
      const gz = await rawGet(`${yard.url}/cached`, { 'accept-encoding': 'gzip' });
      assert.equal(gz.headers['x-cache'], 'HIT');
      assert.equal(gz.headers['content-encoding'], 'gzip');
      assert.match(String(gz.headers.vary), /accept-encoding/i);
      assert.equal(gz.headers.etag, 'W/"v1"');
      assert.deepEqual(gz.body, miss.body, 'the stored bytes, not a new encoding');
      assert.equal(gz.headers['content-length'], String(miss.body.length), 'a stored encoding has a length');
      const br = await rawGet(`${yard.url}/cached`, { 'accept-encoding': 'br' });
      assert.equal(br.headers['x-cache'], 'HIT');
      assert.equal(br.headers['content-encoding'], 'br');
      assert.equal(zlib.brotliDecompressSync(br.body).toString(), JSON_BODY);
    }
    assert.equal(upstreamHits - hitsBefore, 3, 'one upstream request per coding');
    const br = await rawGet(`${yard.url}/cached`, { 'accept-encoding': 'br' });
    const head = await rawGet(`${yard.url}/cached`, { 'accept-encoding': 'br' }, 'HEAD');
    assert.equal(head.headers['x-cache'], 'HIT');
    assert.equal(head.headers['content-encoding'], 'br');
    assert.equal(head.headers['content-length'], String(br.body.length), "HEAD names the variant's length");
    assert.equal(head.body.length, 0);
    const part = await rawGet(`${yard.url}/cached`, { 'accept-encoding': 'gzip', range: 'bytes=0-9' });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-encoding'], 'gzip');
    assert.equal(part.headers['content-range'], `bytes 0-9/${miss.body.length}`, 'a range of the stored gzip bytes');
    assert.deepEqual(part.body, miss.body.subarray(0, 10));
    const notModified = await rawGet(`${yard.url}/cached`, { 'accept-encoding': 'br', 'if-none-match': 'W/"v1"' });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.etag, 'W/"v1"');
    assert.match(String(notModified.headers.vary), /accept-encoding/i);
    assert.equal(upstreamHits - hitsBefore, 3);
  });
});
