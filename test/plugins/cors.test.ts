// cors: preflights answered locally, one Access-Control-Allow-Origin even when the upstream sends
// its own, Vary: Origin where the answer depends on it, CORS headers on other plugins' refusals.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { addVary, originMatcher } from '../../plugins/cors/index.js';
import { countingUpstream, rawRequest, headerValues, withPlugins, type CountingUpstream } from '../helpers/clients.js';
import { startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';

describe('cors options', () => {
  test('invalid origins and bad values are rejected at start with the path of the problem', async () => {
    const start = (options: object) => startSwitchyard(withPlugins('http://127.0.0.1:9', [{ name: 'cors', options }]));
    await assert.rejects(start({ origins: ['https://app.example.com/'] }), /routes\[0\]\.plugins\[0\]\.options\.origins\[0\]: must match pattern/);
    await assert.rejects(start({ origins: ['https://example.com/path'] }), /options\.origins\[0\]: must match pattern/);
    await assert.rejects(start({ origins: ['*example.com'] }), /options\.origins\[0\]: must match pattern/);
    await assert.rejects(start({ origins: ['https://'] }), /options\.origins\[0\]: must match pattern/);
    await assert.rejects(start({ origins: [] }), /options\.origins: must NOT have fewer than 1 items/);
    await assert.rejects(start({ maxAge: -1 }), /options\.maxAge: must be >= 0/);
    await assert.rejects(start({ methods: ['GET POST'] }), /options\.methods\[0\]: must match pattern/);
  });

  test('origin patterns: exact, subdomain wildcards, any scheme without one', () => {
    const allows = originMatcher(['https://app.example.com', 'https://*.example.org', 'api.example.net', 'http://localhost:3000']);
    assert.equal(allows('https://app.example.com'), true);
    assert.equal(allows('https://APP.example.com'), true);
    assert.equal(allows('http://app.example.com'), false);
    assert.equal(allows('https://a.example.org'), true);
    assert.equal(allows('https://a.b.example.org'), true);
    assert.equal(allows('https://example.org'), false);
    assert.equal(allows('https://badexample.org'), false);
    assert.equal(allows('http://a.example.org'), false);
    assert.equal(allows('http://api.example.net'), true);
    assert.equal(allows('https://api.example.net'), true);
    assert.equal(allows('http://localhost:3000'), true);
    assert.equal(allows('http://localhost:3001'), false);
    assert.equal(allows('null'), false);
  });

  test('Vary gets Origin added once', () => {
    assert.equal(addVary(undefined, 'Origin'), 'Origin');
    assert.equal(addVary('Accept-Encoding', 'Origin'), 'Accept-Encoding, Origin');
    assert.equal(addVary('accept-encoding, origin', 'Origin'), 'accept-encoding, origin');
    assert.equal(addVary('*', 'Origin'), '*');
  });
});

describe('cors on a route', () => {
  let upstream: CountingUpstream;
  let corsy: RunningUpstream;
  let sy: RunningSwitchyard;
  let wild: RunningSwitchyard;
  before(async () => {
    upstream = await countingUpstream();
    // An upstream with CORS of its own, and a Vary: the proxy's must replace the one, extend the other.
    corsy = await startUpstream((_req, res) => {
      res.setHeader('access-control-allow-origin', '*');
      res.setHeader('access-control-allow-methods', 'GET');
      res.setHeader('vary', 'Accept-Encoding');
      res.end('ok');
    });
    const config = withPlugins(upstream.url, [
      { name: 'cors', options: { origins: ['https://app.example.com', 'https://*.example.org'], credentials: true, exposeHeaders: ['X-Request-Id'], maxAge: 120, headers: ['Content-Type', 'X-API-Key'] } },
      { name: 'api-key', options: { keys: [{ key: 'cors-test-key-123' }] } },
    ]);
    (config.routes as object[]).push({
      name: 'corsy', match: { pathPrefix: '/corsy' }, upstreams: [{ url: corsy.url }],
      plugins: [{ name: 'cors', options: { origins: ['https://app.example.com'] } }],
    });
    sy = await startSwitchyard(config);
    wild = await startSwitchyard(withPlugins(corsy.url, [{ name: 'cors' }]));
  });
  after(async () => {
    await sy.stop();
    await wild.stop();
    await upstream.close();
    await corsy.close();
  });

  test('a preflight is answered by the proxy and never reaches the upstream, even without an API key', async () => {
    const before = upstream.seen.length;
    const res = await fetch(`${sy.url}/items`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), 'https://app.example.com');
    assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
    assert.equal(res.headers.get('access-control-allow-methods'), 'GET, HEAD, PUT, PATCH, POST, DELETE');
    assert.equal(res.headers.get('access-control-allow-headers'), 'Content-Type, X-API-Key');
    assert.equal(res.headers.get('access-control-max-age'), '120');
    assert.match(res.headers.get('vary') ?? '', /Origin/);
    assert.equal(await res.text(), '');
    assert.equal(upstream.seen.length, before);
  });

  test('a preflight from an origin not allowed gets no CORS headers and still never reaches the upstream', async () => {
    const before = upstream.seen.length;
    const res = await fetch(`${sy.url}/items`, { method: 'OPTIONS', headers: { origin: 'https://evil.example.com', 'access-control-request-method': 'GET' } });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    assert.equal(upstream.seen.length, before);
  });

  test('an OPTIONS that is not a preflight goes to the upstream (and needs the key like any request)', async () => {
    const res = await fetch(`${sy.url}/items`, { method: 'OPTIONS', headers: { 'x-api-key': 'cors-test-key-123' } });
    assert.equal(res.status, 200);
    assert.equal((await res.json() as { method: string }).method, 'OPTIONS');
  });

  test('a refusal by another plugin carries the CORS headers, so the page can read the 401', async () => {
    const res = await fetch(`${sy.url}/items`, { headers: { origin: 'https://a.example.org' } });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('access-control-allow-origin'), 'https://a.example.org');
    assert.equal(res.headers.get('access-control-expose-headers'), 'X-Request-Id');
    assert.equal(res.headers.get('vary'), 'Origin');
    await res.arrayBuffer();
  });

  test('requests without Origin, or from other origins, get Vary: Origin but no allow header', async () => {
    for (const headers of [{}, { origin: 'https://example.org' }] as Record<string, string>[]) {
      const res = await fetch(`${sy.url}/items`, { headers: { ...headers, 'x-api-key': 'cors-test-key-123' } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('access-control-allow-origin'), null);
      assert.equal(res.headers.get('vary'), 'Origin');
      await res.arrayBuffer();
    }
  });

  test('an upstream\'s own CORS headers are replaced: exactly one Access-Control-Allow-Origin', async () => {
    const allowed = await rawRequest(`${sy.url}/corsy/x`, { headers: [['Origin', 'https://app.example.com']] });
    assert.equal(allowed.status, 200);
    assert.deepEqual(headerValues(allowed, 'access-control-allow-origin'), ['https://app.example.com']);
    assert.deepEqual(headerValues(allowed, 'access-control-allow-methods'), [], 'only preflights carry allow-methods');
    assert.deepEqual(headerValues(allowed, 'vary'), ['Accept-Encoding, Origin']);
    const other = await rawRequest(`${sy.url}/corsy/x`, { headers: [['Origin', 'https://evil.example.com']] });
    assert.deepEqual(headerValues(other, 'access-control-allow-origin'), [], 'the upstream\'s * does not leak through for a refused origin');
  });

  test('with the defaults any origin gets *, and no Vary is needed', async () => {
    const res = await rawRequest(`${wild.url}/x`, { headers: [['Origin', 'https://anywhere.test']] });
    assert.deepEqual(headerValues(res, 'access-control-allow-origin'), ['*']);
    assert.deepEqual(headerValues(res, 'vary'), ['Accept-Encoding']);
    const preflight = await rawRequest(`${wild.url}/x`, { method: 'OPTIONS', headers: [['Origin', 'https://anywhere.test'], ['Access-Control-Request-Method', 'DELETE'], ['Access-Control-Request-Headers', 'x-custom']] });
    assert.equal(preflight.status, 204);
    assert.deepEqual(headerValues(preflight, 'access-control-allow-origin'), ['*']);
    assert.deepEqual(headerValues(preflight, 'access-control-allow-headers'), ['x-custom'], 'with no headers option the requested ones are allowed');
    assert.match(headerValues(preflight, 'vary')[0] ?? '', /Access-Control-Request-Headers/);
  });

  test('with credentials, a * origin is echoed, never sent as *; the null origin is refused', async () => {
    const echo = await startSwitchyard(withPlugins(corsy.url, [{ name: 'cors', options: { origins: ['*'], credentials: true } }]));
    try {
      const res = await fetch(`${echo.url}/x`, { headers: { origin: 'https://anywhere.test' } });
      assert.equal(res.headers.get('access-control-allow-origin'), 'https://anywhere.test');
      assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
      assert.equal(res.headers.get('vary'), 'Accept-Encoding, Origin');
      await res.arrayBuffer();
      const nul = await fetch(`${echo.url}/x`, { headers: { origin: 'null' } });
      assert.equal(nul.headers.get('access-control-allow-origin'), null);
      await nul.arrayBuffer();
    } finally {
      await echo.stop();
    }
  });
});

describe('cors with the cache', () => {
  test('a cache hit, kept per origin, carries Access-Control-Allow-Origin and the joined Vary', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60', vary: 'Accept-Encoding' });
      res.end('{"ok":true}');
    });
    const sy = await startSwitchyard(withPlugins(upstream.url, [
      { name: 'cors', options: { origins: ['https://a.example', 'https://b.example'] } },
      { name: 'cache', options: { honourUpstreamCacheControl: false, ttl: 300, persistent: { enabled: false }, vary: ['accept-encoding', 'origin'] } },
    ]));
    try {
      const answers: (string | null)[][] = [];
      for (const origin of ['https://a.example', 'https://b.example', 'https://a.example']) {
        const res = await fetch(`${sy.url}/data`, { headers: { origin } });
        await res.arrayBuffer();
        answers.push([res.headers.get('x-cache'), res.headers.get('access-control-allow-origin'), res.headers.get('vary')]);
      }
      assert.deepEqual(answers, [
        ['MISS', 'https://a.example', 'Accept-Encoding, Origin'],
        ['MISS', 'https://b.example', 'Accept-Encoding, Origin'],
        ['HIT', 'https://a.example', 'Accept-Encoding, Origin'],
      ]);
    } finally {
      await sy.stop();
      await upstream.close();
    }
  });
});
