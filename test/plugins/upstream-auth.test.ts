// upstream-auth: the configured credential replaces whatever the client sent, and never comes back
// to the client (response headers) nor shows in logs or /config.
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { headerValues, rawRequest, withPlugins } from '../helpers/clients.js';
import { startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';

const PASSWORD = 'upstream-pass-7f3a9c';
const TOKEN = 'upstream-token-51be02';
const HEADER_SECRET = 'header-secret-c0ffee';
const QUERY_SECRET = 'query-secret-d00d/+=';

/**
 * An upstream that records what it got and, carelessly, echoes credentials back in response
 * headers — the case the plugin must scrub. Its body says only what the test needs to see.
 */
let upstream: RunningUpstream;
const seen: { url: string; headers: IncomingHttpHeaders }[] = [];
before(async () => {
  upstream = await startUpstream((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    res.setHeader('x-debug-auth', String(req.headers.authorization ?? ''));
    res.setHeader('x-debug-key', String(req.headers['x-vendor-key'] ?? ''));
    res.setHeader('x-debug-url', req.url ?? '');
    res.end('ok');
  });
});
after(() => upstream.close());

function lastSeen(): { url: string; headers: IncomingHttpHeaders } {
  return seen[seen.length - 1]!;
}

describe('upstream-auth options', () => {
  test('bad options are rejected at start with the path of the problem', async () => {
    const start = (options: object) => startSwitchyard(withPlugins(upstream.url, [{ name: 'upstream-auth', options }]));
    await assert.rejects(start({ header: { name: 'X Bad', secret: 's' } }), /routes\[0\]\.plugins\[0\]\.options\.header\.name: must match pattern/);
    await assert.rejects(start({ bearer: { token: '' } }), /options\.bearer\.token: must NOT have fewer than 1 characters/);
    await assert.rejects(start({ bearer: { token: 'a\r\nInjected: yes' } }), /options\.bearer\.token: must match pattern/);
    await assert.rejects(start({ basic: { username: 'u' } }), /options\.basic: must have required property 'password'/);
    await assert.rejects(start({ basic: { username: 'a:b', password: 'p' } }), /options\.basic\.username: must match pattern/);
    await assert.rejects(start({}), /give one of "basic", "bearer", "header" or "query"/);
    await assert.rejects(start({ basic: { username: 'u', password: 'p' }, bearer: { token: 't' } }), /either "basic" or "bearer"/);
  });
});

describe('upstream-auth with Basic credentials from the environment', () => {
  let sy: RunningSwitchyard;
  before(async () => {
    const config = withPlugins(upstream.url, [{ name: 'upstream-auth', options: { basic: { username: 'svc', password: '${UPSTREAM_PASSWORD}' } } }], { admin: { key: 'admin-key-123' } });
    sy = await startSwitchyard(config, { env: { UPSTREAM_PASSWORD: PASSWORD } });
  });
  after(() => sy.stop());

  test('the upstream gets the configured Basic credentials instead of the client\'s', async () => {
    const res = await fetch(`${sy.url}/x`, { headers: { authorization: 'Basic ' + Buffer.from('mallory:guess').toString('base64') } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(lastSeen().headers.authorization, 'Basic ' + Buffer.from(`svc:${PASSWORD}`).toString('base64'));
  });

  test('credentials the upstream echoes in response headers are scrubbed before the client sees them', async () => {
    const res = await fetch(`${sy.url}/x`);
    assert.equal(res.headers.get('x-debug-auth'), 'Basic ***');
    const all = JSON.stringify([...res.headers]);
    assert.ok(!all.includes(PASSWORD) && !all.includes(Buffer.from(`svc:${PASSWORD}`).toString('base64')));
    await res.arrayBuffer();
  });

  test('the secret is in neither the logs nor GET /config', async () => {
    const config = await fetch(`${sy.url}/config`, { headers: { 'x-api-key': 'admin-key-123' } });
    assert.equal(config.status, 200);
    const text = await config.text();
    assert.match(text, /"password":"\*\*\*"/);
    assert.ok(!text.includes(PASSWORD));
    assert.ok(sy.logs.length > 0);
    assert.ok(!JSON.stringify(sy.logs).includes(PASSWORD));
  });
});

describe('upstream-auth with a Bearer token, a header and a query parameter', () => {
  test('a Bearer token replaces the client\'s Authorization, even a repeated one', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'upstream-auth', options: { bearer: { token: TOKEN } } }], { admin: { key: 'admin-key-123' } }));
    try {
      const res = await rawRequest(`${sy.url}/x`, { headers: [['Authorization', 'Bearer client-one'], ['Authorization', 'Bearer client-two']] });
      assert.equal(res.status, 200);
      assert.equal(lastSeen().headers.authorization, `Bearer ${TOKEN}`);
      assert.deepEqual(headerValues(res, 'x-debug-auth'), ['Bearer ***']);
      assert.ok(!JSON.stringify(res.headers).includes(TOKEN));
      const config = await (await fetch(`${sy.url}/config`, { headers: { 'x-api-key': 'admin-key-123' } })).text();
      assert.ok(!config.includes(TOKEN), 'a literal token is redacted in /config by its option name');
      assert.ok(!JSON.stringify(sy.logs).includes(TOKEN));
    } finally {
      await sy.stop();
    }
  });

  test('a header credential replaces a client-supplied value of the same header, whatever its case', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'upstream-auth', options: { header: { name: 'X-Vendor-Key', secret: HEADER_SECRET } } }], { admin: { key: 'admin-key-123' } }));
    try {
      const res = await fetch(`${sy.url}/x`, { headers: { 'x-VENDOR-key': 'client-value' } });
      assert.equal(res.status, 200);
      assert.equal(lastSeen().headers['x-vendor-key'], HEADER_SECRET);
      assert.equal(res.headers.get('x-debug-key'), '***');
      await res.arrayBuffer();
      const config = await (await fetch(`${sy.url}/config`, { headers: { 'x-api-key': 'admin-key-123' } })).text();
      assert.ok(!config.includes(HEADER_SECRET));
      assert.ok(!JSON.stringify(sy.logs).includes(HEADER_SECRET));
    } finally {
      await sy.stop();
    }
  });

  test('a query credential replaces every client copy of the parameter and leaves the others byte for byte', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'upstream-auth', options: { query: { name: 'api_key', secret: QUERY_SECRET } } }]));
    try {
      const res = await fetch(`${sy.url}/search?q=a%20b&api_key=evil&api%5Fkey=evil2&z=1&api_key`);
      assert.equal(res.status, 200);
      assert.equal(lastSeen().url, `/search?q=a%20b&z=1&api_key=${encodeURIComponent(QUERY_SECRET)}`);
      assert.equal(res.headers.get('x-debug-url'), '/search?q=a%20b&z=1&api_key=***');
      await res.arrayBuffer();
      const bare = await fetch(`${sy.url}/plain`);
      await bare.arrayBuffer();
      assert.equal(lastSeen().url, `/plain?api_key=${encodeURIComponent(QUERY_SECRET)}`);
      assert.ok(!JSON.stringify(sy.logs).includes(encodeURIComponent(QUERY_SECRET)));
    } finally {
      await sy.stop();
    }
  });

  test('scrubResponse: false passes response headers through untouched', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'upstream-auth', options: { bearer: { token: TOKEN }, scrubResponse: false } }]));
    try {
      const res = await fetch(`${sy.url}/x`);
      assert.equal(res.headers.get('x-debug-auth'), `Bearer ${TOKEN}`);
      await res.arrayBuffer();
    } finally {
      await sy.stop();
    }
  });
});
