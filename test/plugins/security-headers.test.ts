// security-headers: on proxied responses, on Switchyard's own answers, each switchable; robots.txt.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { countingUpstream, rawRequest, headerValues, withPlugins, type CountingUpstream } from '../helpers/clients.js';
import { startSwitchyard, startUpstream } from '../helpers/servers.js';

describe('security-headers options', () => {
  test('bad values are rejected at start with the path of the problem', async () => {
    const start = (options: object) => startSwitchyard(withPlugins('http://127.0.0.1:9', [{ name: 'security-headers', options }]));
    await assert.rejects(start({ frameOptions: 'ALLOW-FROM x' }), /routes\[0\]\.plugins\[0\]\.options\.frameOptions: must be one of "DENY", "SAMEORIGIN", false/);
    await assert.rejects(start({ referrerPolicy: 'sometimes' }), /options\.referrerPolicy: must be one of/);
    await assert.rejects(start({ hsts: { maxAge: -1 } }), /options\.hsts\.maxAge: must be >= 0/);
    await assert.rejects(start({ robotsTag: 'noindex\r\nSet-Cookie: x' }), /options\.robotsTag: must match pattern/);
  });
});

describe('security-headers with the defaults', () => {
  let upstream: CountingUpstream;
  before(async () => {
    upstream = await countingUpstream();
  });
  after(() => upstream.close());

  const defaults = {
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'x-robots-tag': 'noindex',
  };

  test('proxied responses, refusals and errors all carry the headers, once each', async () => {
    const lax = await startUpstream((_req, res) => {
      res.setHeader('x-frame-options', 'ALLOWALL');
      res.end('ok');
    });
    const config = withPlugins(lax.url, [{ name: 'security-headers' }, { name: 'api-key', options: { keys: [{ key: 'sec-key-12345' }], publicPaths: ['/open'] } }]);
    const sy = await startSwitchyard(config);
    try {
      const proxied = await rawRequest(`${sy.url}/open`);
      const refused = await rawRequest(`${sy.url}/closed`);
      assert.equal(proxied.status, 200);
      assert.equal(refused.status, 401);
      for (const res of [proxied, refused]) {
        for (const [name, value] of Object.entries(defaults)) assert.deepEqual(headerValues(res, name), [value], `${name} on a ${res.status}`);
        assert.deepEqual(headerValues(res, 'strict-transport-security'), [], 'HSTS is off unless configured, and never on plain HTTP by default');
      }
      await lax.close();
      const failed = await rawRequest(`${sy.url}/open`);
      assert.equal(failed.status, 502);
      assert.deepEqual(headerValues(failed, 'x-content-type-options'), ['nosniff']);
    } finally {
      await sy.stop();
    }
  });

  test('GET /robots.txt is answered by the plugin with Disallow: /', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'security-headers' }]));
    try {
      const before = upstream.seen.length;
      const res = await fetch(`${sy.url}/robots.txt`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      assert.equal(res.headers.get('x-robots-tag'), 'noindex');
      assert.equal(await res.text(), 'User-agent: *\nDisallow: /\n');
      assert.equal(upstream.seen.length, before);
      const post = await fetch(`${sy.url}/robots.txt`, { method: 'POST' });
      assert.equal(post.status, 200);
      assert.equal((await post.json() as { method: string }).method, 'POST', 'other methods go upstream');
    } finally {
      await sy.stop();
    }
  });

  test('each header can be switched off or changed; HSTS when asked for', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{
      name: 'security-headers',
      options: { contentTypeOptions: false, frameOptions: 'SAMEORIGIN', referrerPolicy: false, robotsTag: false, robotsTxt: false, hsts: { maxAge: 600, preload: true, plainHttp: true } },
    }]));
    try {
      const res = await fetch(`${sy.url}/x`);
      assert.equal(res.headers.get('x-content-type-options'), null);
      assert.equal(res.headers.get('x-frame-options'), 'SAMEORIGIN');
      assert.equal(res.headers.get('referrer-policy'), null);
      assert.equal(res.headers.get('x-robots-tag'), null);
      assert.equal(res.headers.get('strict-transport-security'), 'max-age=600; includeSubDomains; preload');
      await res.arrayBuffer();
      const robots = await fetch(`${sy.url}/robots.txt`);
      assert.equal((await robots.json() as { url: string }).url, '/robots.txt', 'robots.txt goes upstream when robotsTxt is off');
    } finally {
      await sy.stop();
    }
  });
});

describe('security-headers on a route of other sites\' documents', () => {
  test('a foreignContent route gets every header but X-Frame-Options; the gateway\'s own routes keep it', async () => {
    const site = await startUpstream((_req, res) => res.end('ok'));
    const sy = await startSwitchyard({
      server: { store: 'memory://' },
      routes: [
        { name: 'own', match: { pathPrefix: '/own' }, upstreams: [{ url: site.url }] },
        { name: 'foreign', match: { pathPrefix: '/foreign' }, foreignContent: true, upstreams: [{ url: site.url }] },
      ],
      plugins: [{ name: 'security-headers' }],
    });
    try {
      const own = await rawRequest(`${sy.url}/own/page`);
      const foreign = await rawRequest(`${sy.url}/foreign/page`);
      assert.equal(headerValues(own, 'x-frame-options').join(), 'DENY');
      assert.deepEqual(headerValues(foreign, 'x-frame-options'), []);
      assert.equal(headerValues(foreign, 'x-content-type-options').join(), 'nosniff');
      assert.equal(headerValues(foreign, 'referrer-policy').join(), 'no-referrer');
    } finally {
      await sy.stop();
      await site.close();
    }
  });
});
