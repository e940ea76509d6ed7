// api-key: missing → 401, wrong → 403, right → forwarded without the key; public paths; names.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { countingUpstream, rawRequest, withPlugins, type CountingUpstream } from '../helpers/clients.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

const KEY_A = 'alpha-0123456789abcdef';
const KEY_B = 'bravo-0123456789abcdef';

describe('api-key options', () => {
  test('malformed keys are rejected at start with the path of the problem', async () => {
    const upstream = 'http://127.0.0.1:9';
    await assert.rejects(startSwitchyard(withPlugins(upstream, [{ name: 'api-key', options: { keys: [{ key: '' }] } }])),
      /routes\[0\]\.plugins\[0\]\.options\.keys\[0\]\.key: must NOT have fewer than 1 characters/);
    await assert.rejects(startSwitchyard(withPlugins(upstream, [{ name: 'api-key', options: { keys: [{ key: 'has space' }] } }])),
      /options\.keys\[0\]\.key: must match pattern/);
    await assert.rejects(startSwitchyard(withPlugins(upstream, [{ name: 'api-key', options: { keys: [] } }])),
      /options\.keys: must NOT have fewer than 1 items/);
    await assert.rejects(startSwitchyard(withPlugins(upstream, [{ name: 'api-key', options: { keys: [{ key: 'k1' }], headr: 'x' } }])),
      /options: unknown key "headr"/);
    await assert.rejects(startSwitchyard(withPlugins(upstream, [{ name: 'api-key', options: { keys: [{ name: 'a', key: 'k1' }, { name: 'a', key: 'k2' }] } }])),
      /keys\[1\]\.name "a" is used twice/);
  });
});

describe('api-key on a route', () => {
  let upstream: CountingUpstream;
  let sy: RunningSwitchyard;
  before(async () => {
    upstream = await countingUpstream();
    sy = await startSwitchyard(withPlugins(upstream.url, [
      { name: 'api-key', options: { keys: [{ name: 'alice', key: '${KEY_A}' }, { key: '${KEY_B}' }], publicPaths: ['/health-page', '/public/*'] } },
      // Shows what api-key left on the context for other plugins and logs.
      { path: './who.mjs' },
    ]), {
      env: { KEY_A, KEY_B },
      files: {
        'who.mjs': `import { definePlugin } from ${JSON.stringify(new URL('../../core/index.js', import.meta.url).href)};
export default definePlugin({ name: 'who', schema: { type: 'object' }, setup(api) {
  api.hooks.preRequest.tap('who', (ctx) => { ctx.outgoing.headers['x-key-name'] = ctx.consumer ? ctx.consumer.name + '|' + ctx.consumer.id + '|' + ctx.consumer.source : '-'; });
} });`,
      },
    });
  });
  after(async () => {
    await sy.stop();
    await upstream.close();
  });

  test('a request without a key gets 401 with a JSON error and never reaches the upstream', async () => {
    const before = upstream.seen.length;
    const res = await fetch(`${sy.url}/items`);
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
    const body = await res.json() as { code: string; requestId: string };
    assert.equal(body.code, 'SY_ERR_API_KEY_MISSING');
    assert.equal(body.requestId, res.headers.get('x-request-id'));
    assert.equal(upstream.seen.length, before);
  });

  test("the access log line names the key that was used, never the key itself", async () => {
    const res = await fetch(`${sy.url}/logged`, { headers: { 'x-api-key': KEY_A } });
    await res.arrayBuffer();
    const line = sy.logs.find((l) => l.msg === 'request' && l.requestId === res.headers.get('x-request-id'));
    assert.equal(line?.apiKey, 'alice');
    assert.equal(line?.consumer, 'alice', 'the core names the consumer on every access line');
    assert.ok(!JSON.stringify(sy.logs).includes(KEY_A));
  });

  test('a wrong key gets 403', async () => {
    const res = await fetch(`${sy.url}/items`, { headers: { 'x-api-key': 'wrong' } });
    assert.equal(res.status, 403);
    assert.equal((await res.json() as { code: string }).code, 'SY_ERR_API_KEY_INVALID');
    const prefix = await fetch(`${sy.url}/items`, { headers: { 'x-api-key': KEY_A.slice(0, -1) } });
    assert.equal(prefix.status, 403, 'a prefix of a key is not the key');
    await prefix.arrayBuffer();
  });

  test('a right key in X-API-Key is forwarded without the key, and ctx.consumer names it', async () => {
    const res = await fetch(`${sy.url}/items`, { headers: { 'x-api-key': KEY_A } });
    assert.equal(res.status, 200);
    const echoed = await res.json() as { headers: Record<string, string> };
    assert.equal(echoed.headers['x-api-key'], undefined);
    assert.equal(echoed.headers['x-key-name'], 'alice|api-key:alice|api-key');
  });

  test('a key in Authorization: Bearer works too, and an unnamed key is called key-<n>', async () => {
    const res = await fetch(`${sy.url}/items`, { headers: { authorization: `Bearer ${KEY_B}` } });
    assert.equal(res.status, 200);
    const echoed = await res.json() as { headers: Record<string, string> };
    assert.equal(echoed.headers.authorization, undefined);
    assert.equal(echoed.headers['x-key-name'], 'key-2|api-key:key-2|api-key');
  });

  test('public paths need no key; a path is matched as it is forwarded, dot segments removed', async () => {
    const open = await fetch(`${sy.url}/public/logo.png`);
    assert.equal(open.status, 200);
    await open.arrayBuffer();
    const exact = await fetch(`${sy.url}/health-page`);
    assert.equal(exact.status, 200);
    await exact.arrayBuffer();
    const notPrefix = await fetch(`${sy.url}/health-page/more`);
    assert.equal(notPrefix.status, 401);
    await notPrefix.arrayBuffer();
    const res = await rawRequest(`${sy.url}/public/../private`);
    assert.equal(res.status, 401);
    const encoded = await rawRequest(`${sy.url}/public/%2e%2e/private`);
    assert.equal(encoded.status, 400, 'an encoded dot segment is refused before any plugin runs');
    assert.equal((JSON.parse(encoded.body) as { code: string }).code, 'SY_ERR_BAD_REQUEST');
  });

  test('malformed Authorization headers get a clean 401, and the proxy keeps serving', async () => {
    for (const value of ['Bearer', 'Bearer ', 'Bearer a b', 'Basic Zm9vOmJhcg==', 'garbage', '\u00ff\u00fe', 'Bearer\t', ' ']) {
      const res = await rawRequest(`${sy.url}/items`, { headers: [['Authorization', value]] });
      assert.equal(res.status, 401, `Authorization: ${JSON.stringify(value)}`);
      assert.equal((JSON.parse(res.body) as { code: string }).code, 'SY_ERR_API_KEY_MISSING');
    }
    const empty = await rawRequest(`${sy.url}/items`, { headers: [['X-API-Key', '']] });
    assert.equal(empty.status, 401);
    const ok = await rawRequest(`${sy.url}/items`, { headers: [['X-API-Key', KEY_A]] });
    assert.equal(ok.status, 200);
  });

  test('the keys never appear in the logs', () => {
    const logs = JSON.stringify(sy.logs);
    assert.ok(sy.logs.length > 0);
    assert.ok(!logs.includes(KEY_A) && !logs.includes(KEY_B));
  });
});

describe('api-key options that change behaviour', () => {
  test('a custom header, no Bearer, and hideCredentials: false forwards the key', async () => {
    const upstream = await countingUpstream();
    const sy = await startSwitchyard(withPlugins(upstream.url, [
      { name: 'api-key', options: { keys: [{ key: KEY_A }], header: 'X-Token', bearer: false, hideCredentials: false } },
    ]));
    try {
      const bearer = await fetch(`${sy.url}/x`, { headers: { authorization: `Bearer ${KEY_A}` } });
      assert.equal(bearer.status, 401);
      assert.equal(bearer.headers.get('www-authenticate'), null);
      await bearer.arrayBuffer();
      const res = await fetch(`${sy.url}/x`, { headers: { 'x-token': KEY_A } });
      assert.equal(res.status, 200);
      assert.equal((await res.json() as { headers: Record<string, string> }).headers['x-token'], KEY_A);
    } finally {
      await sy.stop();
      await upstream.close();
    }
  });
});
