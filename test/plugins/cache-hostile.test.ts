// A hostile client against the cache (issue 24, items 1-3): a made-up Host or forwarded host, a
// GET with a body, a query parameter smuggled behind `;`, and answers that vary on request
// headers. Each test sends the hostile input through a running proxy and asserts what the next,
// ordinary client gets, and what the upstream was asked.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';
import { exchange, parseResponse, rawExchange, type RawResponse } from '../helpers/wire.js';
import { cacheConfig, countingUpstream, get, keys, type CountingUpstream } from './cache-support.js';

const running: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.stop();
});

async function upstreamAnd(options: Record<string, unknown>, handler: Parameters<typeof countingUpstream>[0], server: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<{ up: CountingUpstream; sy: RunningSwitchyard }> {
  const up = await countingUpstream(handler);
  running.push({ stop: () => up.close() });
  const sy = await startSwitchyard(cacheConfig(up.url, options, server, extra));
  running.push(sy);
  return { up, sy };
}

/** One request written as given (Host included) on its own connection. */
async function raw(sy: RunningSwitchyard, lines: string[], body = ''): Promise<RawResponse & { header(name: string): string | undefined; text: string }> {
  const port = Number(new URL(sy.url).port);
  const res = parseResponse(await rawExchange(port, `${lines.join('\r\n')}\r\nConnection: close\r\n\r\n${body}`));
  return { ...res, header: (name) => res.headers.find(([n]) => n === name)?.[1], text: res.body.toString('utf8') };
}

/** An upstream that builds a redirect from the host it was told about, as frameworks do. */
function redirectingToForwardedHost(req: Parameters<NonNullable<Parameters<typeof countingUpstream>[0]>>[0], res: Parameters<NonNullable<Parameters<typeof countingUpstream>[0]>>[1]): void {
  const forwarded = /host=([^;,]+)/.exec(req.headers.forwarded ?? '')?.[1];
  const host = forwarded ?? req.headers['x-forwarded-host'] ?? req.headers.host;
  res.writeHead(301, { location: `http://${host}/landing`, 'content-type': 'text/plain', 'content-length': 0 });
  res.end();
}

describe('the host is part of the key', () => {
  test('a GET with Host: evil.example stores its own answer: a plain GET never gets its redirect', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 }, redirectingToForwardedHost);
    const port = new URL(sy.url).port;
    const poisoned = await raw(sy, ['GET /x HTTP/1.1', 'Host: evil.example']);
    assert.equal(poisoned.status, 301);
    assert.equal(poisoned.header('location'), 'http://evil.example/landing');
    const plain = await raw(sy, ['GET /x HTTP/1.1', `Host: 127.0.0.1:${port}`]);
    assert.equal(plain.header('x-cache'), 'MISS');
    assert.equal(plain.header('location'), `http://127.0.0.1:${port}/landing`);
    const again = await raw(sy, ['GET /x HTTP/1.1', `Host: 127.0.0.1:${port}`]);
    assert.equal(again.header('x-cache'), 'HIT');
    assert.equal(again.header('location'), `http://127.0.0.1:${port}/landing`);
    const sameHost = await raw(sy, ['GET /x HTTP/1.1', 'Host: EVIL.example.:80']);
    assert.equal(sameHost.header('x-cache'), 'HIT', 'case, a trailing dot and the default port name the same host');
    assert.equal(sameHost.header('location'), 'http://evil.example/landing');
    assert.equal(up.count('/x'), 2);
  });

  test("from a stranger, Forwarded: host= never reaches the upstream; from a trusted proxy it is keyed, as X-Forwarded-Host is", async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 }, redirectingToForwardedHost, { trustedProxies: ['10.0.0.0/8'] });
    const port = new URL(sy.url).port;
    const host = `Host: 127.0.0.1:${port}`;
    const spoofed = await raw(sy, ['GET /y HTTP/1.1', host, 'Forwarded: for=1.2.3.4;host=evil.example', 'X-Forwarded-Host: evil.example']);
    assert.equal(up.seen.at(-1)!.headers.forwarded, undefined);
    assert.equal(spoofed.header('location'), `http://127.0.0.1:${port}/landing`, 'the made-up host was dropped before the upstream');
    assert.equal((await raw(sy, ['GET /y HTTP/1.1', host])).header('location'), `http://127.0.0.1:${port}/landing`);

    const behind = await upstreamAnd({ ttl: 60 }, redirectingToForwardedHost, { trustedProxies: ['127.0.0.1'] });
    const trustedHost = `Host: 127.0.0.1:${new URL(behind.sy.url).port}`;
    const viaForwarded = await raw(behind.sy, ['GET /z HTTP/1.1', trustedHost, 'Forwarded: for=1.2.3.4;host=one.example']);
    assert.equal(viaForwarded.header('location'), 'http://one.example/landing');
    const viaOtherFor = await raw(behind.sy, ['GET /z HTTP/1.1', trustedHost, 'Forwarded: for=5.6.7.8;host=one.example']);
    assert.equal(viaOtherFor.header('x-cache'), 'HIT', "Forwarded's for= names the client: not keyed");
    const viaX = await raw(behind.sy, ['GET /z HTTP/1.1', trustedHost, 'X-Forwarded-Host: two.example']);
    assert.equal(viaX.header('x-cache'), 'MISS');
    assert.equal(viaX.header('location'), 'http://two.example/landing');
    const direct = await raw(behind.sy, ['GET /z HTTP/1.1', trustedHost]);
    assert.equal(direct.header('x-cache'), 'MISS', 'neither forwarded host answers a request that forwarded none');
    assert.notEqual(direct.header('location'), 'http://one.example/landing');
    assert.notEqual(direct.header('location'), 'http://two.example/landing');
  });

  test('from a trusted proxy, a request whose path it rewrote (X-Original-URL) is neither answered from nor stored in the cache', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`served ${req.headers['x-original-url'] ?? req.url}`);
    }, { trustedProxies: ['127.0.0.1'] });
    const rewritten = await get(sy, '/public', { headers: { 'x-original-url': '/private' } });
    assert.equal(rewritten.headers.get('x-cache'), 'BYPASS');
    assert.equal(rewritten.text, 'served /private');
    const plain = await get(sy, '/public');
    assert.equal(plain.headers.get('x-cache'), 'MISS');
    assert.equal(plain.text, 'served /public');
    assert.equal(up.count('/public'), 2);
  });
});

describe('a GET or HEAD with a body', () => {
  test('goes upstream with its body and is neither looked up nor stored', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`answer to [${Buffer.concat(chunks).toString()}]`);
      });
    });
    const withBody = await exchange(`${sy.url}/search`, { method: 'GET', headers: { 'content-type': 'text/plain', 'content-length': 4 } }, 'EVIL');
    assert.equal(withBody.headers['x-cache'], 'BYPASS');
    assert.equal(withBody.body.toString(), 'answer to [EVIL]');
    const plain = await get(sy, '/search');
    assert.equal(plain.headers.get('x-cache'), 'MISS', 'nothing was stored from the request with a body');
    assert.equal(plain.text, 'answer to []');
    const chunked = await raw(sy, ['GET /search HTTP/1.1', 'Host: a', 'Transfer-Encoding: chunked'], '4\r\nMORE\r\n0\r\n\r\n');
    assert.equal(chunked.header('x-cache'), 'BYPASS', 'a stored answer is not given to a request with a body');
    assert.match(chunked.text, /answer to \[MORE\]/);
    assert.equal((await get(sy, '/search')).text, 'answer to []');
    assert.equal(up.count('/search'), 3);
  });
});

describe('a parameter behind `;`', () => {
  test('?api_key=x;cb=EVIL is neither the plain path nor ?cb=EVIL, and its key holds no excluded value', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60, excludeQueryParams: ['api_key'] }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`for ${req.url}`);
    });
    assert.equal((await get(sy, '/p')).text, 'for /p');
    const smuggled = await get(sy, '/p?api_key=x;cb=EVIL');
    assert.equal(smuggled.headers.get('x-cache'), 'MISS', 'not the plain path\'s entry');
    assert.equal(smuggled.text, 'for /p?api_key=x;cb=EVIL');
    const cb = await get(sy, '/p?cb=EVIL');
    assert.equal(cb.headers.get('x-cache'), 'MISS', 'nor the entry of ?cb=EVIL');
    const plain = await get(sy, '/p');
    assert.equal(plain.headers.get('x-cache'), 'HIT');
    assert.equal(plain.text, 'for /p');
    assert.equal((await get(sy, '/p?cb=EVIL&api_key=other')).text, 'for /p?cb=EVIL', 'an excluded parameter after & still shares the entry');
    const listed = (await keys(sy)).keys.map((k) => k.key).sort();
    assert.deepEqual(listed, ['GET /p', 'GET /p?;cb=EVIL', 'GET /p?cb=EVIL']);
    assert.equal(up.count(), 3);
  });
});

describe('Vary: variants', () => {
  test('each value of a header the answer varies on is a variant of its own, matched after normalising its whitespace and case', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', vary: 'Accept-Language, X-Tenant' });
      res.end(`${req.headers['accept-language']} for ${req.headers['x-tenant']}`);
    });
    const answers: string[] = [];
    for (const [language, tenant] of [['de, en;q=0.5', 'a'], ['DE,en ; q=0.5', 'a'], ['de, en;q=0.5', 'b'], ['fr', 'a'], ['de,en;q=0.5', 'a'], ['fr', 'a']]) {
      const res = await get(sy, '/hello', { headers: { 'accept-language': language!, 'x-tenant': tenant! } });
      answers.push(`${res.headers.get('x-cache')} ${res.text}`);
    }
    assert.deepEqual(answers, [
      'MISS de, en;q=0.5 for a', 'HIT de, en;q=0.5 for a', 'MISS de, en;q=0.5 for b', 'MISS fr for a', 'HIT de, en;q=0.5 for a', 'HIT fr for a',
    ]);
    assert.equal(up.count(), 3);
    const info = (await keys(sy)).keys;
    assert.equal(info.length, 3, 'three variants of one URL');
    assert.ok(info.every((k) => k.key === 'GET /hello'));
  });

  test('variants per URL are bounded by maxVariants, the oldest other one going first, and the user is told once per route', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60, maxVariants: 2 }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', vary: 'Origin' });
      res.end(`for ${req.headers.origin}`);
    });
    const ask = async (origin: string) => (await get(sy, '/o', { headers: { origin } })).headers.get('x-cache');
    assert.equal(await ask('https://a.example'), 'MISS');
    assert.equal(await ask('https://b.example'), 'MISS');
    assert.equal(await ask('https://c.example'), 'MISS', 'a third variant: b, the oldest but the first, goes');
    assert.equal(await ask('https://d.example'), 'MISS');
    assert.deepEqual([await ask('https://a.example'), await ask('https://d.example'), await ask('https://b.example')], ['HIT', 'HIT', 'MISS']);
    assert.equal((await keys(sy)).keys.length, 2);
    assert.equal(up.count(), 5);
    const told = sy.logs.filter((l) => String(l.msg).includes('not stored') && l.reason === 'too many variants');
    assert.equal(told.length, 1, 'logged once, not per eviction');
    assert.match(String(told[0]!.fix), /maxVariants/);
  });

  test('Vary: * is never stored, and the user is told once per route', async () => {
    const { up, sy } = await upstreamAnd({ ttl: 60 }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', vary: 'Accept-Language, *' });
      res.end('anything');
    });
    for (let i = 0; i < 3; i++) assert.equal((await get(sy, '/star')).headers.get('x-cache'), 'MISS');
    assert.equal(up.count(), 3);
    assert.equal(sy.logs.filter((l) => l.reason === 'vary *').length, 1);
  });
});
