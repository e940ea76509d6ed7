// The cache as RFC 9111 asks an HTTP cache to behave (issue 31): each item of the issue has its
// tests here. A scripted origin on 127.0.0.1 answers what each test sets, a real fetch client
// asks the proxy, and the cache's clock is moved instead of sleeping.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { afterEach, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import YAML from 'yaml';
import { routeConfig, startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { cacheConfig, countingUpstream, fakeClock, get, type CountingUpstream } from './cache-support.js';

const ENGINES = ['undici', 'http-proxy'] as const;

const running: { stop(): Promise<void> }[] = [];
let clock: ReturnType<typeof fakeClock> | undefined;
afterEach(async () => {
  clock?.restore();
  clock = undefined;
  for (const r of running.splice(0).reverse()) await r.stop();
});

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

/** An origin whose answer each test sets (and changes between requests) through `respond`. */
async function scripted(respond: Handler): Promise<CountingUpstream & { respond: Handler }> {
  const script = { respond };
  const up = await countingUpstream((req, res, n) => script.respond(req, res, n));
  running.push({ stop: () => up.close() });
  return Object.defineProperty(up, 'respond', { get: () => script.respond, set: (next: Handler) => { script.respond = next; } }) as CountingUpstream & { respond: Handler };
}

/** A 200 with `body` and the given headers (Content-Length added). */
function ok(body: string, headers: Record<string, string> = {}): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
  };
}

async function yard(up: CountingUpstream, options: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<RunningSwitchyard> {
  const sy = await startSwitchyard(cacheConfig(up.url, { persistent: { enabled: false }, ...options }, {}, extra));
  running.push(sy);
  return sy;
}

describe('a revalidation whose 304 carries Content-Length (issue 31, item 1)', () => {
  for (const engine of ENGINES) {
    test(`the client gets the whole stored body, not a cut-off answer (${engine})`, async () => {
      clock = fakeClock();
      const body = 'the stored representation';
      const up = await scripted(ok(body, { etag: '"a"' }));
      const sy = await yard(up, { ttl: 60 }, { engine });
      assert.equal((await get(sy, '/doc')).text, body);
      clock.advance(61);
      // Legal (RFC 9110 §8.6): the length of the representation the 304 stands for.
      up.respond = (_req, res) => {
        res.writeHead(304, { etag: '"a"', 'content-length': String(Buffer.byteLength(body)) });
        res.end();
      };
      const renewed = await get(sy, '/doc');
      assert.equal(renewed.status, 200);
      assert.equal(renewed.headers.get('x-cache'), 'REVALIDATED');
      assert.equal(renewed.text, body);
      assert.equal(up.seen[1]!.headers['if-none-match'], '"a"');
      assert.equal((await get(sy, '/doc')).headers.get('x-cache'), 'HIT', 'the renewed entry was stored');
    });

    test(`a client's own conditional passed through gets the origin's 304 with Content-Length, and the proxy keeps answering (${engine})`, async () => {
      const up = await scripted((req, res) => {
        if (req.headers['if-none-match'] === '"b"') {
          res.writeHead(304, { etag: '"b"', 'content-length': '11' });
          res.end();
          return;
        }
        ok('hello world', { etag: '"b"' })(req, res, 0);
      });
      const sy = await startSwitchyard(routeConfig([up.url], { engine }));
      running.push(sy);
      for (let i = 0; i < 3; i++) {
        const answer = await get(sy, '/plain', { headers: { 'if-none-match': '"b"' } });
        assert.equal(answer.status, 304);
        assert.equal(answer.text, '');
      }
      assert.equal((await get(sy, '/plain')).text, 'hello world');
    });
  }
});

const STANDARDS = { ttl: 0, honourUpstreamCacheControl: true };

/** Asks twice: whether the second request was answered from the cache. */
async function servedTwice(sy: RunningSwitchyard, path: string): Promise<{ first: string | null; second: string | null }> {
  const first = (await get(sy, path)).headers.get('x-cache');
  const second = (await get(sy, path)).headers.get('x-cache');
  return { first, second };
}

describe('age on arrival counts against freshness (issue 31, item 2)', () => {
  test('max-age=3600 with Age: 7200 is stale on arrival: the next request goes to the origin', async () => {
    const up = await scripted(ok('old news', { 'cache-control': 'max-age=3600', age: '7200' }));
    const sy = await yard(up, STANDARDS);
    assert.deepEqual(await servedTwice(sy, '/old'), { first: 'MISS', second: 'MISS' });
    assert.equal(up.count(), 2);
  });

  test('max-age=3600 with Age: 1800 is fresh for the 1800 s left, and hits say the age it has', async () => {
    clock = fakeClock();
    const up = await scripted(ok('half-way', { 'cache-control': 'max-age=3600', age: '1800' }));
    const sy = await yard(up, STANDARDS);
    await get(sy, '/half');
    clock.advance(1000);
    const hit = await get(sy, '/half');
    assert.equal(hit.headers.get('x-cache'), 'HIT');
    assert.equal(Number(hit.headers.get('age')) >= 2800, true, `Age ${hit.headers.get('age')}`);
    clock.advance(801);
    assert.notEqual((await get(sy, '/half')).headers.get('x-cache'), 'HIT', '3601 s old now');
    assert.equal(up.count(), 2);
  });

  test('Expires one hour after Date, with Age: 7200, is stale on arrival', async () => {
    const up = await scripted((_req, res) => {
      const now = new Date();
      res.writeHead(200, { 'content-type': 'text/plain', date: now.toUTCString(), expires: new Date(now.getTime() + 3600_000).toUTCString(), age: '7200' });
      res.end('expired');
    });
    const sy = await yard(up, STANDARDS);
    assert.deepEqual(await servedTwice(sy, '/expires'), { first: 'MISS', second: 'MISS' });
  });

  test('a Date two hours in the past counts as age (apparent age) against max-age=3600', async () => {
    const up = await scripted((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', date: new Date(Date.now() - 7200_000).toUTCString(), 'cache-control': 'max-age=3600' });
      res.end('dated');
    });
    const sy = await yard(up, STANDARDS);
    assert.deepEqual(await servedTwice(sy, '/dated'), { first: 'MISS', second: 'MISS' });
  });

  test('a configured TTL (forcing mode) counts from arrival: the upstream Age is reported, not held against it', async () => {
    const up = await scripted(ok('forced', { age: '7200' }));
    const sy = await yard(up, { ttl: 60 });
    const { second } = await servedTwice(sy, '/forced');
    assert.equal(second, 'HIT');
    assert.equal(Number((await get(sy, '/forced')).headers.get('age')) >= 7200, true);
  });
});

describe('strict HTTP dates (issue 31, item 3)', () => {
  for (const expires of ['Sun, 06 Nov 2094 08:49:37 UTC', 'Sun 06 Nov 2094 08:49:37 GMT', 'Sun, 06-Nov-2094 08:49:37 GMT', 'Sun, 06 Nov 2094 8:49:37 GMT', '0']) {
    test(`an invalid Expires ("${expires}") means already expired: not served from the cache`, async () => {
      const up = await scripted(ok('invalid expires', { expires }));
      const sy = await yard(up, STANDARDS);
      assert.deepEqual(await servedTwice(sy, '/e'), { first: 'MISS', second: 'MISS' });
      assert.equal(up.count(), 2);
    });
  }

  for (const expires of ['Saturday, 01-Jan-50 00:00:00 GMT', 'Sat Jan  1 00:00:00 2050', 'Sat, 01 Jan 2050 00:00:00 GMT']) {
    test(`a valid far-future Expires ("${expires}") keeps the response fresh`, async () => {
      const up = await scripted(ok('valid expires', { expires }));
      const sy = await yard(up, STANDARDS);
      assert.deepEqual(await servedTwice(sy, '/e'), { first: 'MISS', second: 'HIT' });
    });
  }

  test('an invalid If-Modified-Since is ignored: the client gets the full 200, not a 304', async () => {
    const up = await scripted(ok('dated', { 'last-modified': 'Mon, 01 Jan 2024 00:00:00 GMT', 'cache-control': 'max-age=60' }));
    const sy = await yard(up, STANDARDS);
    await get(sy, '/ims');
    const valid = await get(sy, '/ims', { headers: { 'if-modified-since': 'Tue, 02 Jan 2024 00:00:00 GMT' } });
    assert.equal(valid.status, 304);
    const invalid = await get(sy, '/ims', { headers: { 'if-modified-since': 'Tue, 02 Jan 2024 00:00:00 UTC' } });
    assert.equal(invalid.status, 200);
    assert.equal(invalid.text, 'dated');
  });
});

describe('unsafe methods invalidate (issue 31, item 4)', () => {
  /** GET answers with the count of requests for the path; anything else with what the test sets. */
  async function writable(unsafe: Handler): Promise<CountingUpstream & { respond: Handler }> {
    return scripted((req, res, n) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') return unsafe(req, res, n);
      ok(`version ${n}`, { 'cache-control': 'max-age=600' })(req, res, n);
    });
  }

  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'PROPPATCH']) {
    test(`a successful ${method} makes the next GET of its URL go to the origin, in both tiers`, async () => {
      const up = await writable((_req, res) => {
        res.writeHead(204);
        res.end();
      });
      const sy = await yard(up, { ...STANDARDS, persistent: { enabled: true, timeoutMs: 10000 } });
      assert.deepEqual(await servedTwice(sy, '/item'), { first: 'MISS', second: 'HIT' });
      const changed = await fetch(`${sy.url}/item`, { method });
      assert.equal(changed.status, 204);
      const after = await get(sy, '/item');
      assert.equal(after.headers.get('x-cache'), 'MISS');
      assert.equal(after.text, 'version 3', 'asked again (GET, GET, the write, GET)');
    });
  }

  test('an unsuccessful POST (500) leaves the stored response alone', async () => {
    const up = await writable((_req, res) => {
      res.writeHead(500);
      res.end();
    });
    const sy = await yard(up, STANDARDS);
    await get(sy, '/kept');
    assert.equal((await fetch(`${sy.url}/kept`, { method: 'POST' })).status, 500);
    assert.equal((await get(sy, '/kept')).headers.get('x-cache'), 'HIT');
  });

  test('Location and Content-Location on the same host are invalidated too; another host is not', async () => {
    const up = await writable((req, res) => {
      res.writeHead(201, { location: '/created', 'content-location': `http://${req.headers.host}/described?x=1` });
      res.end();
    });
    const sy = await yard(up, STANDARDS);
    for (const path of ['/created', '/described?x=1', '/elsewhere']) await get(sy, path);
    await fetch(`${sy.url}/collection`, { method: 'POST' });
    assert.equal((await get(sy, '/created')).headers.get('x-cache'), 'MISS');
    assert.equal((await get(sy, '/described?x=1')).headers.get('x-cache'), 'MISS');
    assert.equal((await get(sy, '/elsewhere')).headers.get('x-cache'), 'HIT');

    up.respond = (_req, res) => {
      res.writeHead(201, { location: 'http://other.example/created' });
      res.end();
    };
    await fetch(`${sy.url}/collection`, { method: 'POST' });
    assert.equal((await get(sy, '/created')).headers.get('x-cache'), 'HIT', 'a Location on another host is not ours to drop');
  });
});

describe("the origin's directives decide stale answers (issue 31, item 5)", () => {
  function failing(): Handler {
    return (_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('down');
    };
  }

  for (const cacheControl of ['max-age=60, must-revalidate', 'max-age=60, proxy-revalidate', 's-maxage=60']) {
    test(`"${cacheControl}" is never served stale, whatever staleIfError and staleWhileRevalidate say`, async () => {
      clock = fakeClock();
      const up = await scripted(ok('strict', { 'cache-control': cacheControl }));
      const sy = await yard(up, { ...STANDARDS, staleIfError: 600, staleWhileRevalidate: 600 });
      await get(sy, '/strict');
      clock.advance(61);
      up.respond = failing();
      const answer = await get(sy, '/strict');
      assert.equal(answer.status, 503, 'the failure shows: no stale answer');
      assert.notEqual(answer.headers.get('x-cache'), 'STALE');
    });
  }

  for (const cacheControl of ['max-age=60, must-revalidate', 'max-age=60, proxy-revalidate', 's-maxage=60', 'max-age=60, no-cache']) {
    test(`"${cacheControl}" is not served stale when the origin closes the connection either (the suite's stale-close)`, async () => {
      clock = fakeClock();
      const up = await scripted(ok('strict', { 'cache-control': cacheControl }));
      const sy = await yard(up, { ...STANDARDS, staleIfError: 600 });
      await get(sy, '/closing');
      clock.advance(61);
      up.respond = (req) => req.socket.destroy();
      const answer = await get(sy, '/closing');
      assert.equal(answer.status, 502, 'the failure shows: no stale answer');
      assert.notEqual(answer.text, 'strict');
    });
  }

  test("a response that says nothing gets the plugin's staleIfError", async () => {
    clock = fakeClock();
    const up = await scripted(ok('lenient', { 'cache-control': 'max-age=60' }));
    const sy = await yard(up, { ...STANDARDS, staleIfError: 600 });
    await get(sy, '/lenient');
    clock.advance(61);
    up.respond = failing();
    const answer = await get(sy, '/lenient');
    assert.equal(answer.headers.get('x-cache'), 'STALE');
    assert.equal(answer.text, 'lenient');
  });

  test("the origin's own stale-if-error is honoured with the plugin's at 0, and its length wins", async () => {
    clock = fakeClock();
    const up = await scripted(ok('allowed', { 'cache-control': 'max-age=60, stale-if-error=100' }));
    const sy = await yard(up, STANDARDS);
    await get(sy, '/sie');
    clock.advance(120);
    up.respond = failing();
    const within = await get(sy, '/sie');
    assert.equal(within.headers.get('x-cache'), 'STALE');
    assert.equal(within.text, 'allowed');
    clock.advance(60);
    assert.equal((await get(sy, '/sie')).status, 503, '180 s old: past max-age plus stale-if-error');
  });

  test("the origin's own stale-while-revalidate is honoured, and a shorter one beats the plugin's", async () => {
    clock = fakeClock();
    const up = await scripted(ok('swr', { 'cache-control': 'max-age=60, stale-while-revalidate=30' }));
    const sy = await yard(up, STANDARDS);
    await get(sy, '/swr');
    clock.advance(75);
    assert.equal((await get(sy, '/swr')).headers.get('x-cache'), 'STALE', 'the plugin allows none; the origin 30 s');

    const up2 = await scripted(ok('swr', { 'cache-control': 'max-age=60, stale-while-revalidate=5' }));
    const sy2 = await yard(up2, { ...STANDARDS, staleWhileRevalidate: 600 });
    await get(sy2, '/swr');
    clock.advance(70);
    assert.notEqual((await get(sy2, '/swr')).headers.get('x-cache'), 'STALE', '10 s late: past the origin\'s 5 s');
  });
});

describe('a hit keeps the stored Date (issue 31, item 6)', () => {
  const DATE = 'Mon, 01 Jan 2024 00:00:00 GMT';

  test("hits and the cache's own 304s carry the origin's Date, not the time of the answer", async () => {
    const up = await scripted(ok('dated', { date: DATE, etag: '"d"' }));
    const sy = await yard(up, { ttl: 60 });
    assert.equal((await get(sy, '/d')).headers.get('date'), DATE);
    const hit = await get(sy, '/d');
    assert.equal(hit.headers.get('x-cache'), 'HIT');
    assert.equal(hit.headers.get('date'), DATE);
    const notModified = await get(sy, '/d', { headers: { 'if-none-match': '"d"' } });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.get('date'), DATE);
  });

  test('a revalidation takes the Date of the 304 for the renewed entry', async () => {
    clock = fakeClock();
    const up = await scripted(ok('dated', { date: DATE, etag: '"d"' }));
    const sy = await yard(up, { ttl: 60 });
    await get(sy, '/r');
    clock.advance(61);
    const renewedDate = 'Tue, 02 Jan 2024 00:00:00 GMT';
    up.respond = (_req, res) => {
      res.writeHead(304, { etag: '"d"', date: renewedDate });
      res.end();
    };
    assert.equal((await get(sy, '/r')).headers.get('date'), renewedDate);
    const hit = await get(sy, '/r');
    assert.equal(hit.headers.get('x-cache'), 'HIT');
    assert.equal(hit.headers.get('date'), renewedDate);
  });
});

describe('1xx interim responses (issue 31, item 7)', () => {
  for (const engine of ENGINES) {
    test(`a 103 Early Hints from the origin reaches the client before the final answer (${engine})`, async () => {
      const up = await scripted((req, res) => {
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
        ok('final')(req, res, 0);
      });
      const sy = await startSwitchyard(routeConfig([up.url], { engine }));
      running.push(sy);
      const interim: { statusCode: number; headers: Record<string, unknown> }[] = [];
      const final = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${sy.url}/hints`, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('information', (info) => interim.push({ statusCode: info.statusCode, headers: info.headers }));
        req.on('error', reject);
        req.end();
      });
      assert.deepEqual(final, { status: 200, body: 'final' });
      assert.equal(interim.length, 1);
      assert.equal(interim[0]!.statusCode, 103);
      assert.equal(interim[0]!.headers.link, '</style.css>; rel=preload; as=style');
    });
  }
});

describe('Range requests from a stored full response (issue 31, item 8)', () => {
  const BODY = Buffer.from(Array.from({ length: 1000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join(''));

  async function storedPdf(): Promise<{ up: CountingUpstream & { respond: Handler }; sy: RunningSwitchyard }> {
    const up = await scripted((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/pdf', 'content-length': BODY.length, etag: '"pdf"', 'last-modified': 'Mon, 01 Jan 2024 00:00:00 GMT' });
      res.end(BODY);
    });
    const sy = await yard(up, { ttl: 60 });
    assert.equal((await get(sy, '/doc.pdf')).headers.get('x-cache'), 'MISS');
    return { up, sy };
  }

  async function ranged(sy: RunningSwitchyard, headers: Record<string, string>): Promise<{ status: number; headers: Headers; body: Buffer }> {
    const res = await fetch(`${sy.url}/doc.pdf`, { headers });
    return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
  }

  for (const [range, start, end] of [['bytes=100-199', 100, 199], ['bytes=900-', 900, 999], ['bytes=-100', 900, 999], ['bytes=990-5000', 990, 999]] as const) {
    test(`"${range}" on a hit is a 206 with bytes ${start}-${end} of the stored body`, async () => {
      const { up, sy } = await storedPdf();
      const part = await ranged(sy, { range });
      assert.equal(part.status, 206);
      assert.equal(part.headers.get('content-range'), `bytes ${start}-${end}/1000`);
      assert.equal(part.headers.get('content-length'), String(end - start + 1));
      assert.equal(part.headers.get('content-type'), 'application/pdf');
      assert.deepEqual(part.body, BODY.subarray(start, end + 1));
      assert.equal(up.count(), 1, 'from the cache');
    });
  }

  test('a range past the end is a 416 naming the size', async () => {
    const { sy } = await storedPdf();
    const none = await ranged(sy, { range: 'bytes=2000-' });
    assert.equal(none.status, 416);
    assert.equal(none.headers.get('content-range'), 'bytes */1000');
    assert.equal(none.body.length, 0);
  });

  test('If-Range with the strong ETag or the Last-Modified date gets the part; a changed or weak one the whole body', async () => {
    const { sy } = await storedPdf();
    assert.equal((await ranged(sy, { range: 'bytes=0-9', 'if-range': '"pdf"' })).status, 206);
    assert.equal((await ranged(sy, { range: 'bytes=0-9', 'if-range': 'Mon, 01 Jan 2024 00:00:00 GMT' })).status, 206);
    for (const ifRange of ['"other"', 'W/"pdf"', 'Tue, 02 Jan 2024 00:00:00 GMT']) {
      const whole = await ranged(sy, { range: 'bytes=0-9', 'if-range': ifRange });
      assert.equal(whole.status, 200, ifRange);
      assert.deepEqual(whole.body, BODY);
    }
  });

  test('several ranges are a 206 multipart/byteranges, each part with its type and Content-Range', async () => {
    const { up, sy } = await storedPdf();
    const answer = await ranged(sy, { range: 'bytes=0-9,20-29,-5' });
    assert.equal(answer.status, 206);
    const type = answer.headers.get('content-type')!;
    const boundary = /^multipart\/byteranges; boundary=(\S+)$/.exec(type)?.[1];
    assert.ok(boundary, type);
    assert.equal(answer.headers.get('content-range'), null, 'a multipart answer has its ranges in its parts');
    assert.equal(answer.headers.get('content-length'), String(answer.body.length));
    const text = answer.body.toString('latin1');
    assert.ok(text.endsWith(`--${boundary}--\r\n`));
    const parts = text.split(`--${boundary}`).slice(1, -1).map((part) => {
      const [head, data] = part.replace(/^\r\n/, '').split('\r\n\r\n') as [string, string];
      return { head: head.toLowerCase(), data: data.replace(/\r\n$/, '') };
    });
    assert.deepEqual(parts.map((p) => p.head), [
      'content-type: application/pdf\r\ncontent-range: bytes 0-9/1000',
      'content-type: application/pdf\r\ncontent-range: bytes 20-29/1000',
      'content-type: application/pdf\r\ncontent-range: bytes 995-999/1000',
    ]);
    assert.deepEqual(parts.map((p) => p.data), [BODY.subarray(0, 10), BODY.subarray(20, 30), BODY.subarray(995)].map((b) => b.toString('latin1')));
    assert.equal(up.count(), 1, 'from the cache');
    // If-Range that no longer holds: the whole body; ranges all past the end: 416.
    const whole = await ranged(sy, { range: 'bytes=0-9,20-29', 'if-range': '"other"' });
    assert.equal(whole.status, 200);
    assert.deepEqual(whole.body, BODY);
    assert.equal((await ranged(sy, { range: 'bytes=0-9,20-29', 'if-range': '"pdf"' })).status, 206);
    const none = await ranged(sy, { range: 'bytes=2000-2010,3000-' });
    assert.equal(none.status, 416);
    assert.equal(none.headers.get('content-range'), 'bytes */1000');
  });

  test('a Range the cache does not read, or overlapping ranges, get the whole stored body', async () => {
    const { sy } = await storedPdf();
    for (const range of ['bytes=abc', 'bytes=20-10', 'items=0-1', 'bytes=0-10,5-6']) {
      const whole = await ranged(sy, { range });
      assert.equal(whole.status, 200, range);
      assert.deepEqual(whole.body, BODY);
    }
  });

  test("a 206 from the origin is never stored as the full object, even with 206 in statuses", async () => {
    const up = await scripted((req, res) => {
      if (req.headers.range === 'bytes=0-9') {
        res.writeHead(206, { 'content-type': 'application/pdf', 'content-range': 'bytes 0-9/1000', 'content-length': 10, 'cache-control': 'max-age=600' });
        res.end(BODY.subarray(0, 10));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/pdf', 'content-length': BODY.length, 'cache-control': 'max-age=600' });
      res.end(BODY);
    });
    const sy = await yard(up, { ttl: 60, statuses: [200, 206] });
    const part = await fetch(`${sy.url}/p.pdf`, { headers: { range: 'bytes=0-9' } });
    assert.equal(part.status, 206);
    assert.equal((await part.arrayBuffer()).byteLength, 10);
    const whole = await fetch(`${sy.url}/p.pdf`);
    assert.equal(whole.headers.get('x-cache'), 'MISS', 'the part was not stored');
    assert.equal((await whole.arrayBuffer()).byteLength, 1000);
  });
});

describe('encodings and Vary (issue 31, item 9)', () => {
  const PLAIN = 'a body worth compressing '.repeat(20);

  /** The origin encodes as the client asks (gzip or identity) and says it varies on Accept-Encoding. */
  async function negotiating(): Promise<CountingUpstream & { respond: Handler }> {
    return scripted((req, res) => {
      const gzip = /\bgzip\b/.test(req.headers['accept-encoding'] ?? '') && !/gzip;\s*q=0(\.0*)?\b/.test(req.headers['accept-encoding'] ?? '');
      const body = gzip ? gzipSync(PLAIN) : Buffer.from(PLAIN);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, vary: 'Accept-Encoding', ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
      res.end(body);
    });
  }

  test('a stored gzip answer is served only to clients that accept gzip', async () => {
    const up = await negotiating();
    const sy = await yard(up, { ttl: 60, honourClientCacheControl: true });
    const stored = await get(sy, '/z', { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(stored.text, PLAIN);
    assert.equal((await get(sy, '/z', { headers: { 'accept-encoding': 'GZIP;q=1' } })).headers.get('x-cache'), 'HIT');
    for (const accept of ['br', 'gzip;q=0, br', 'identity']) {
      // Each Accept-Encoding is a variant of its own (RFC 9111 §4.1): never the stored gzip one.
      await get(sy, '/z', { headers: { 'accept-encoding': 'gzip', 'cache-control': 'no-cache' } });
      const other = await get(sy, '/z', { headers: { 'accept-encoding': accept } });
      assert.equal(other.headers.get('content-encoding'), null, `${accept}: the origin's identity answer`);
      assert.equal(other.text, PLAIN);
    }
  });

  test("a response varying on a header outside the plugin's vary option is stored per value (a variant); one inside is keyed by it", async () => {
    const up = await scripted((req, res) => ok(`lang ${req.headers['accept-language']}`, { vary: 'Accept-Language' })(req, res, 0));
    const unkeyed = await yard(up, { ttl: 60 });
    assert.equal((await get(unkeyed, '/v', { headers: { 'accept-language': 'fr' } })).headers.get('x-cache'), 'MISS');
    assert.equal((await get(unkeyed, '/v', { headers: { 'accept-language': 'FR' } })).headers.get('x-cache'), 'HIT', 'Accept-Language compares without case');
    const other = await get(unkeyed, '/v', { headers: { 'accept-language': 'de' } });
    assert.equal(other.headers.get('x-cache'), 'MISS');
    assert.equal(other.text, 'lang de');

    const keyed = await yard(up, { ttl: 60, vary: ['Accept-Language'] });
    await get(keyed, '/v', { headers: { 'accept-language': 'fr' } });
    const fr = await get(keyed, '/v', { headers: { 'accept-language': 'fr' } });
    assert.equal(fr.headers.get('x-cache'), 'HIT');
    const de = await get(keyed, '/v', { headers: { 'accept-language': 'de' } });
    assert.equal(de.headers.get('x-cache'), 'MISS');
    assert.equal(de.text, 'lang de');
  });

  test('an answer with two codings applied is served only to a client that reads both; x-gzip is gzip', async () => {
    const { acceptsEncoding } = await import('../../plugins/cache/policy.js');
    const entry = { headers: { 'content-encoding': 'gzip, br' } } as unknown as Parameters<typeof acceptsEncoding>[1];
    assert.equal(acceptsEncoding({ 'accept-encoding': 'gzip' }, entry), false);
    assert.equal(acceptsEncoding({ 'accept-encoding': 'br, x-gzip' }, entry), true);
    assert.equal(acceptsEncoding({ 'accept-encoding': '*' }, entry), true);
    assert.equal(acceptsEncoding({ 'accept-encoding': '*, br;q=0' }, entry), false);
  });
});

describe('CDN-Cache-Control, a field targeted at this cache (issue 31, item 10)', () => {
  test('CDN-Cache-Control replaces Cache-Control: max-age there stores what Cache-Control keeps private', async () => {
    const up = await scripted(ok('for the edge only', { 'cache-control': 'private, max-age=0', 'cdn-cache-control': 'max-age=600' }));
    const sy = await yard(up, STANDARDS);
    const { second } = await servedTwice(sy, '/edge');
    assert.equal(second, 'HIT');
    assert.equal((await get(sy, '/edge')).headers.get('cache-control'), 'private, max-age=0', 'the client still gets the origin\'s Cache-Control');
  });

  test('CDN-Cache-Control: no-store is not stored though Cache-Control allows it, and it beats Expires too', async () => {
    const up = await scripted(ok('not at the edge', { 'cache-control': 'max-age=600', expires: 'Sat, 01 Jan 2050 00:00:00 GMT', 'cdn-cache-control': 'no-store' }));
    const sy = await yard(up, STANDARDS);
    assert.deepEqual(await servedTwice(sy, '/no-edge'), { first: 'MISS', second: 'MISS' });
  });

  test('the freshness of CDN-Cache-Control counts, not the longer Cache-Control one', async () => {
    clock = fakeClock();
    const up = await scripted(ok('short at the edge', { 'cache-control': 'max-age=3600', 'cdn-cache-control': 'max-age=60' }));
    const sy = await yard(up, STANDARDS);
    await get(sy, '/short');
    clock.advance(61);
    assert.notEqual((await get(sy, '/short')).headers.get('x-cache'), 'HIT');
  });

  test('an invalid CDN-Cache-Control is ignored, and targetedCacheControl: [] ignores a valid one', async () => {
    const up = await scripted(ok('cc decides', { 'cache-control': 'max-age=600', 'cdn-cache-control': 'no-store, "bad" directive' }));
    const sy = await yard(up, STANDARDS);
    assert.equal((await servedTwice(sy, '/invalid')).second, 'HIT');

    const up2 = await scripted(ok('cc decides', { 'cache-control': 'max-age=600', 'cdn-cache-control': 'no-store' }));
    const untargeted = await yard(up2, { ...STANDARDS, targetedCacheControl: [] });
    assert.equal((await servedTwice(untargeted, '/off')).second, 'HIT');
  });

  test('another targeted field can be listed first (Surrogate-Control style names)', async () => {
    const up = await scripted(ok('ours', { 'cache-control': 'no-store', 'switchyard-cache-control': 'max-age=600' }));
    const sy = await yard(up, { ...STANDARDS, targetedCacheControl: ['Switchyard-Cache-Control', 'CDN-Cache-Control'] });
    assert.equal((await servedTwice(sy, '/ours')).second, 'HIT');
  });
});

describe("the README's two modes (issue 31, item 11)", () => {
  /** The cache options of the README's first example: the standards mode. */
  function readmeStandardsOptions(): Record<string, unknown> {
    const readme = readFileSync(new URL('../../../plugins/cache/README.md', import.meta.url), 'utf8');
    const block = /```yaml\n([\s\S]*?)```/.exec(readme)![1]!;
    const config = YAML.parse(block) as { routes: { plugins: { name: string; options: Record<string, unknown> }[] }[] };
    return config.routes[0]!.plugins.find((p) => p.name === 'cache')!.options;
  }

  test('the first example is the standards mode: only what the origin says is fresh is stored, for as long as it says', async () => {
    clock = fakeClock();
    const options = readmeStandardsOptions();
    assert.equal(options.honourUpstreamCacheControl, undefined, 'the standards mode needs no switch: it is the default');
    const up = await scripted((req, res) => {
      const headers: Record<string, Record<string, string>> = {
        '/fresh': { 'cache-control': 'max-age=60' },
        '/zero': { 'cache-control': 'max-age=0' },
        '/expired': { expires: 'Mon, 01 Jan 2024 00:00:00 GMT' },
        '/silent': {},
      };
      ok(req.url!, headers[req.url!])(req, res, 0);
    });
    const sy = await yard(up, options);
    assert.deepEqual(await servedTwice(sy, '/fresh'), { first: 'MISS', second: 'HIT' });
    for (const path of ['/zero', '/expired', '/silent']) assert.deepEqual(await servedTwice(sy, path), { first: 'MISS', second: 'MISS' }, path);
    clock.advance(61);
    assert.notEqual((await get(sy, '/fresh')).headers.get('x-cache'), 'HIT');
  });

  test('no options is the standards mode: max-age=0, expired and silent answers are not kept for 300 s', async () => {
    clock = fakeClock();
    const up = await scripted((req, res) => {
      const headers: Record<string, Record<string, string>> = {
        '/fresh': { 'cache-control': 'max-age=60' },
        '/zero': { 'cache-control': 'max-age=0' },
        '/expired': { expires: 'Mon, 01 Jan 2024 00:00:00 GMT' },
        '/silent': {},
      };
      ok(req.url!, headers[req.url!])(req, res, 0);
    });
    const sy = await yard(up, {});
    assert.deepEqual(await servedTwice(sy, '/fresh'), { first: 'MISS', second: 'HIT' });
    for (const path of ['/zero', '/expired', '/silent']) assert.deepEqual(await servedTwice(sy, path), { first: 'MISS', second: 'MISS' }, path);
  });

  test('forcing mode keeps every storable answer for its ttl, max-age=0 and expired ones too', async () => {
    clock = fakeClock();
    const up = await scripted((req, res) => ok(req.url!, req.url === '/zero' ? { 'cache-control': 'max-age=0' } : { expires: 'Mon, 01 Jan 2024 00:00:00 GMT' })(req, res, 0));
    const sy = await yard(up, { honourUpstreamCacheControl: false, ttl: 300 });
    for (const path of ['/zero', '/expired']) assert.deepEqual(await servedTwice(sy, path), { first: 'MISS', second: 'HIT' }, path);
    clock.advance(301);
    assert.notEqual((await get(sy, '/zero')).headers.get('x-cache'), 'HIT');
  });
});

describe('what the public suite (http-cache-tests) found, each fixed and checked here', () => {
  test('an Age that is not one non-negative integer makes the answer stale; one field listing several counts by its first', async () => {
    const ages: Record<string, string | string[]> = {
      '/first-member': '0,7200', '/two-fields': ['0', '0'], '/joined': '0, 0', '/word': 'abc', '/negative': '-7200', '/fraction': '10.0', '/parameter': '0;foo=bar',
    };
    const up = await scripted((req, res) => {
      res.setHeader('age', ages[req.url!]!);
      ok(req.url!, { 'cache-control': 'max-age=3600' })(req, res, 0);
    });
    const sy = await yard(up, STANDARDS);
    assert.deepEqual(await servedTwice(sy, '/first-member'), { first: 'MISS', second: 'HIT' });
    for (const path of Object.keys(ages).slice(1)) assert.deepEqual(await servedTwice(sy, path), { first: 'MISS', second: 'MISS' }, path);
  });

  test('any status the origin gives a lifetime is stored; without one, only the listed statuses are', async () => {
    const up = await scripted((req, res) => {
      const lifetime = req.url!.startsWith('/fresh') ? { 'cache-control': 'max-age=60' } : {};
      res.writeHead(Number(req.url!.slice(-3)), { 'content-type': 'text/plain', ...lifetime });
      res.end('answer');
    });
    const sy = await yard(up, { ...STANDARDS, ttl: 60 });
    for (const path of ['/fresh/302', '/fresh/307', '/fresh/500', '/fresh/599']) assert.deepEqual(await servedTwice(sy, path), { first: 'MISS', second: 'HIT' }, path);
    assert.deepEqual(await servedTwice(sy, '/plain/500'), { first: 'MISS', second: 'MISS' });
    assert.deepEqual(await servedTwice(sy, '/plain/200'), { first: 'MISS', second: 'HIT' });
  });

  test('must-understand: an unknown status is not stored, a known one is stored despite no-store', async () => {
    const up = await scripted((req, res) => {
      res.writeHead(req.url === '/unknown' ? 599 : 200, { 'content-type': 'text/plain', 'cache-control': 'max-age=3600, no-store, must-understand' });
      res.end('answer');
    });
    const sy = await yard(up, STANDARDS);
    assert.deepEqual(await servedTwice(sy, '/unknown'), { first: 'MISS', second: 'MISS' });
    assert.deepEqual(await servedTwice(sy, '/known'), { first: 'MISS', second: 'HIT' });
  });

  test('no-cache, max-age=0 and silent answers with a validator are kept to be revalidated: the next request is conditional', async () => {
    const headers: Record<string, Record<string, string>> = {
      '/no-cache': { 'cache-control': 'no-cache', etag: '"n"' },
      '/zero': { 'cache-control': 'max-age=0', etag: '"z"' },
      '/silent': { 'last-modified': 'Mon, 01 Jan 2024 00:00:00 GMT' },
      '/no-validator': { 'cache-control': 'no-cache' },
    };
    const up = await scripted((req, res) => {
      if (req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined) {
        res.writeHead(304, headers[req.url!]);
        res.end();
        return;
      }
      ok(`body of ${req.url}`, headers[req.url!])(req, res, 0);
    });
    const sy = await yard(up, STANDARDS);
    for (const path of ['/no-cache', '/zero', '/silent']) {
      assert.equal((await get(sy, path)).headers.get('x-cache'), 'MISS');
      const again = await get(sy, path);
      assert.equal(again.headers.get('x-cache'), 'REVALIDATED', path);
      assert.equal(again.text, `body of ${path}`);
    }
    assert.equal(up.seen.find((s) => s.url === '/no-cache' && s.headers['if-none-match'] === '"n"') !== undefined, true);
    assert.equal(up.seen.find((s) => s.url === '/silent' && s.headers['if-modified-since'] !== undefined) !== undefined, true);
    assert.deepEqual(await servedTwice(sy, '/no-validator'), { first: 'MISS', second: 'MISS' });
    assert.equal(up.seen.filter((s) => s.url === '/no-validator' && s.headers['if-none-match'] === undefined).length, 2);
  });

  test('a qualified no-cache="a, b" stores the answer without the fields it names; a plain no-cache is revalidated', async () => {
    const up = await scripted((req, res) => {
      res.setHeader('cache-control', [req.url === '/qualified' ? 'no-cache="a, b"' : 'no-cache', 'max-age=3600']);
      ok('answer', { a: '1', b: '2', c: '3' })(req, res, 0);
    });
    const sy = await yard(up, STANDARDS);
    await get(sy, '/qualified');
    const hit = await get(sy, '/qualified');
    assert.equal(hit.headers.get('x-cache'), 'HIT');
    assert.deepEqual([hit.headers.get('a'), hit.headers.get('b'), hit.headers.get('c')], [null, null, '3']);
    assert.deepEqual(await servedTwice(sy, '/plain'), { first: 'MISS', second: 'MISS' });
  });

  test("a 304 updates the stored fields but not those of the stored body: ETag, Content-Encoding, Content-MD5, Content-Range", async () => {
    clock = fakeClock();
    const stored = { 'cache-control': 'max-age=1', etag: '"a"', 'content-md5': 'rL0Y20zC+Fzt72VPzMSk2A==', 'content-range': 'stored-range', 'x-note': 'old' };
    const up = await scripted(ok('stored body', stored));
    const sy = await yard(up, STANDARDS);
    await get(sy, '/doc');
    clock.advance(2);
    up.respond = (_req, res) => {
      res.writeHead(304, { 'cache-control': 'max-age=60', etag: '"b"', 'content-md5': 'N7UdGUp1E+RbVvZSTy1R8g==', 'content-range': 'other', 'x-note': 'new' });
      res.end();
    };
    for (const xCache of ['REVALIDATED', 'HIT']) {
      const answer = await get(sy, '/doc');
      assert.equal(answer.headers.get('x-cache'), xCache);
      assert.equal(answer.headers.get('etag'), '"a"');
      assert.equal(answer.headers.get('content-md5'), stored['content-md5']);
      assert.equal(answer.headers.get('content-range'), 'stored-range');
      assert.equal(answer.headers.get('x-note'), 'new');
      assert.equal(answer.headers.get('cache-control'), 'max-age=60');
    }
  });

  test('Surrogate-Control decides for this cache: its no-store, its directives for this device, not those for another', async () => {
    const headers: Record<string, Record<string, string>> = {
      '/no-store': { 'surrogate-control': 'no-store', 'cache-control': 'max-age=3600' },
      '/for-us': { 'surrogate-control': 'max-age=3600;switchyard', 'cache-control': 'no-store' },
      '/for-another': { 'surrogate-control': 'max-age=3600;other-device', 'cache-control': 'no-store' },
    };
    const up = await scripted((req, res) => ok(req.url!, headers[req.url!])(req, res, 0));
    const sy = await yard(up, STANDARDS);
    assert.deepEqual(await servedTwice(sy, '/no-store'), { first: 'MISS', second: 'MISS' });
    assert.deepEqual(await servedTwice(sy, '/for-us'), { first: 'MISS', second: 'HIT' });
    assert.deepEqual(await servedTwice(sy, '/for-another'), { first: 'MISS', second: 'MISS' });
    assert.equal(up.seen[0]!.headers['surrogate-capability'], 'switchyard="Surrogate/1.0"');
  });

  test('a stored answer in a coding no client could be asked about (not a registered one) is served as it is', async () => {
    const up = await scripted(ok('encoded', { 'cache-control': 'max-age=60', 'content-encoding': 'origin-private' }));
    const sy = await yard(up, STANDARDS);
    // fetch leaves a coding it does not know alone.
    assert.deepEqual(await servedTwice(sy, '/x'), { first: 'MISS', second: 'HIT' });
    assert.equal((await get(sy, '/x')).text, 'encoded');
  });

  test('If-Modified-Since on a stored answer without Last-Modified is judged by its Date', async () => {
    const up = await scripted(ok('dated', { 'cache-control': 'max-age=60' }));
    const sy = await yard(up, STANDARDS);
    const first = await get(sy, '/dated');
    const date = first.headers.get('date')!;
    const later = new Date(Date.parse(date) + 3_600_000).toUTCString();
    const earlier = new Date(Date.parse(date) - 3_600_000).toUTCString();
    assert.equal((await get(sy, '/dated', { headers: { 'if-modified-since': later } })).status, 304);
    assert.equal((await get(sy, '/dated', { headers: { 'if-modified-since': earlier } })).status, 200);
  });
});
