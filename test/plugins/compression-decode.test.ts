// An upstream that encodes its bodies itself (gzip, brotli), whatever the client asks, behind the
// cache and the compression plugin: a client that accepts the coding gets the bytes as sent, one
// that does not gets them decoded, once per variant, then from the cache; a body that does not
// decode is a clear failure.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import { request } from 'undici';
import { startProxy, type RunningProxy } from '../../testing/index.js';
import { routeConfig, startUpstream, type RunningUpstream } from '../helpers/servers.js';

const JSON_BODY = JSON.stringify({ items: Array.from({ length: 300 }, (_, i) => ({ id: i, name: `item number ${i}`, tags: ['alpha', 'beta'] })) });
const GZIPPED = zlib.gzipSync(JSON_BODY);
const BROTLI = zlib.brotliCompressSync(JSON_BODY);
/** Large enough that its decoded bytes go out before the gzip trailer is checked. */
const LARGE_BODY = Array.from({ length: 20000 }, (_, i) => `line ${i} of a long answer ${(i * 7919) % 10007}\n`).join('');
/** A whole gzip stream whose CRC in the trailer is wrong: it fails only at its very end. */
const BAD_TRAILER = (() => {
  const good = zlib.gzipSync(LARGE_BODY);
  const bad = Buffer.from(good);
  bad.writeUInt32LE((good.readUInt32LE(good.length - 8) ^ 0xffffffff) >>> 0, good.length - 8);
  return bad;
})();
const ADMIN = { 'x-api-key': 'admin-secret-for-decode' };
const BROWSER = 'gzip, deflate, br';

/** The bytes as they came off the wire (http.get: nothing decodes them); rejects when the connection is cut mid-body. */
function rawGet(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

let upstream: RunningUpstream;
let yard: RunningProxy;
/** Requests that reached the upstream, by path. */
const asked = new Map<string, number>();

before(async () => {
  upstream = await startUpstream((req, res) => {
    const path = req.url ?? '/';
    asked.set(path, (asked.get(path) ?? 0) + 1);
    const encoded = (coding: string, body: Buffer, extra: Record<string, string> = {}) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': coding, 'content-length': body.length, ...extra });
      res.end(body);
    };
    // Like a store of precompressed files: the same encoded bytes for everyone, Accept-Encoding or not.
    if (path.startsWith('/gz')) return encoded('gzip', GZIPPED, { etag: '"g1"' });
    if (path.startsWith('/br')) return encoded('br', BROTLI, { etag: '"b1"', vary: 'Accept-Encoding' });
    if (path === '/not-gzip') return encoded('gzip', Buffer.from('this was never gzip, whatever the header says'));
    if (path === '/bad-trailer') return encoded('gzip', BAD_TRAILER);
    res.writeHead(404).end();
  });
  yard = await startProxy({
    ...routeConfig([upstream.url], {
      plugins: [
        { name: 'cache', options: { ttl: 60, persistent: { enabled: false } } },
        { name: 'compression', options: { threshold: 256 } },
      ],
    }, { admin: { key: ADMIN['x-api-key'] } }),
    plugins: [{ name: 'metrics' }],
  });
});
after(async () => {
  await yard?.stop();
  await upstream?.close();
});

/** How many responses the compression plugin decoded for `coding` (its counter on /metrics). */
async function decodes(coding: string): Promise<number> {
  const text = await (await fetch(`${yard.url}/metrics`, { headers: ADMIN })).text();
  const line = text.split('\n').find((l) => l.startsWith('switchyard_compression_decoded_total{') && l.includes(`coding="${coding}"`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('an upstream that encodes itself', () => {
  test('gzip: a browser gets the stored bytes as sent; a client without Accept-Encoding gets them decoded once, then hits', async () => {
    const before = await decodes('gzip');
    const browser = await rawGet(`${yard.url}/gz`, { 'accept-encoding': BROWSER });
    assert.equal(browser.headers['x-cache'], 'MISS');
    assert.equal(browser.headers['content-encoding'], 'gzip');
    assert.deepEqual(browser.body, GZIPPED, "the upstream's bytes, not decoded and encoded again");
    assert.match(String(browser.headers.vary), /accept-encoding/i, 'the answer depended on Accept-Encoding');
    assert.equal(browser.headers.etag, '"g1"', 'passed as sent: the same representation');

    // undici's request sends no Accept-Encoding and decodes nothing.
    const first = await request(`${yard.url}/gz`);
    const firstBody = Buffer.from(await first.body.arrayBuffer());
    assert.equal(first.headers['x-cache'], 'MISS', 'no stored variant this client can read');
    assert.equal(firstBody.toString(), JSON_BODY);
    assert.equal(first.headers['content-encoding'], undefined);
    assert.equal(first.headers['content-length'], undefined, "the upstream's length was the encoded one");
    assert.equal(first.headers.etag, 'W/"g1"', 'a decoded body is another representation');
    assert.match(String(first.headers.vary), /accept-encoding/i);
    assert.equal(await decodes('gzip'), before + 1);

    const second = await request(`${yard.url}/gz`);
    const secondBody = Buffer.from(await second.body.arrayBuffer());
    assert.equal(second.headers['x-cache'], 'HIT');
    assert.equal(secondBody.toString(), JSON_BODY);
    assert.equal(second.headers['content-encoding'], undefined);
    assert.equal(second.headers['content-length'], String(Buffer.byteLength(JSON_BODY)), 'the stored decoded body has a length');
    assert.equal(second.headers.etag, 'W/"g1"');
    assert.match(String(second.headers.vary), /accept-encoding/i);

    // Accept-Encoding: identity is the same variant as none at all.
    const identity = await rawGet(`${yard.url}/gz`, { 'accept-encoding': 'identity' });
    assert.equal(identity.headers['x-cache'], 'HIT');
    assert.equal(identity.body.toString(), JSON_BODY);

    const head = await rawGet(`${yard.url}/gz`, {}, 'HEAD');
    assert.equal(head.headers['x-cache'], 'HIT');
    assert.equal(head.headers['content-encoding'], undefined);
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(JSON_BODY)), "HEAD names the decoded variant's length");
    assert.equal(head.body.length, 0);

    const notModified = await rawGet(`${yard.url}/gz`, { 'if-none-match': 'W/"g1"' });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.etag, 'W/"g1"');
    assert.equal(notModified.body.length, 0);

    const part = await rawGet(`${yard.url}/gz`, { range: 'bytes=5-14' });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-encoding'], undefined);
    assert.equal(part.headers['content-range'], `bytes 5-14/${Buffer.byteLength(JSON_BODY)}`, 'a range of the decoded bytes');
    assert.equal(part.body.toString(), JSON_BODY.slice(5, 15));

    const browserAgain = await rawGet(`${yard.url}/gz`, { 'accept-encoding': BROWSER });
    assert.equal(browserAgain.headers['x-cache'], 'HIT');
    assert.deepEqual(browserAgain.body, GZIPPED);

    assert.equal(asked.get('/gz'), 2, 'the upstream was asked once per variant');
    assert.equal(await decodes('gzip'), before + 1, 'hits are not decoded again');
  });

  test('brotli: a fetch client sending Accept-Encoding: identity gets the decoded body, then hits; a gzip-only client is one more variant', async () => {
    const before = await decodes('br');
    const browser = await rawGet(`${yard.url}/br`, { 'accept-encoding': BROWSER });
    assert.equal(browser.headers['content-encoding'], 'br');
    assert.deepEqual(browser.body, BROTLI);
    for (const expected of ['MISS', 'HIT']) {
      const res = await fetch(`${yard.url}/br`, { headers: { 'accept-encoding': 'identity' } });
      assert.equal(res.headers.get('x-cache'), expected);
      assert.equal(res.headers.get('content-encoding'), null);
      assert.equal(res.headers.get('etag'), 'W/"b1"');
      assert.equal(res.headers.get('vary'), 'Accept-Encoding', "the upstream's Vary, not a second one");
      assert.equal(await res.text(), JSON_BODY);
    }
    const gzipOnly = await rawGet(`${yard.url}/br`, { 'accept-encoding': 'gzip' });
    assert.equal(gzipOnly.headers['content-encoding'], undefined, 'brotli is not what it reads');
    assert.equal(gzipOnly.body.toString(), JSON_BODY);
    assert.equal(asked.get('/br'), 3);
    assert.equal(await decodes('br'), before + 2);
  });

  test('uncached, HEAD gets the decoded head: no Content-Encoding, no Content-Length, a weak ETag', async () => {
    const head = await rawGet(`${yard.url}/gz-head`, { 'x-cache-bypass': '1' }, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-encoding'], undefined);
    assert.equal(head.headers['content-length'], undefined);
    assert.equal(head.headers.etag, 'W/"g1"');
    const get = await rawGet(`${yard.url}/gz-head`, { 'x-cache-bypass': '1' });
    assert.equal(get.body.toString(), JSON_BODY);
  });
});

describe('an encoded body that does not decode', () => {
  test('failing before any byte went out, the client gets a 502 with a stable code, and nothing is stored', async () => {
    for (let round = 1; round <= 2; round++) {
      const res = await fetch(`${yard.url}/not-gzip`, { headers: { 'accept-encoding': 'identity' } });
      assert.equal(res.status, 502);
      const body = await res.json() as { code: string; requestId: string };
      assert.equal(body.code, 'SY_ERR_COMPRESSION_CORRUPT_BODY');
      assert.equal(res.headers.get('x-request-id'), body.requestId);
      assert.equal(asked.get('/not-gzip'), round, 'a failed answer is not stored');
    }
    const browser = await rawGet(`${yard.url}/not-gzip`, { 'accept-encoding': BROWSER });
    assert.equal(browser.status, 200, 'a client that accepts gzip gets what the upstream sent, as it is');
  });

  test('failing after the head went out, the connection is cut, the code is logged, and nothing is stored', async () => {
    for (let round = 1; round <= 2; round++) {
      await assert.rejects(rawGet(`${yard.url}/bad-trailer`), /aborted|ECONNRESET|socket hang up/);
      assert.equal(asked.get('/bad-trailer'), round);
    }
    const logged = await yard.waitForLog((l) => l.code === 'SY_ERR_COMPRESSION_CORRUPT_BODY' && /connection cut/.test(String(l.msg)));
    assert.match(String(logged.err), /gzip body does not decode/);
    const access = await yard.waitForLog((l) => l.path === '/bad-trailer' && l.status === 502);
    assert.equal(access.code, 'SY_ERR_COMPRESSION_CORRUPT_BODY');
  });
});
