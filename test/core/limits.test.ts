// Size limits on bodies a plugin or an admin route buffers (server.maxBufferedBody, the 1 MiB
// admin body), and what a client sees when an admin handler fails with a plain Error: a JSON
// 500 SY_ERR_INTERNAL that keeps the error's own message to the log.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { echoHandler, pluginSource, routeConfig, startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';
import { exchange } from '../helpers/wire.js';

const ADMIN_KEY = 'limits-admin-key-0123456789';
const LIMIT = 1000;

// Buffers each POST body with the default limit (server.maxBufferedBody) and reports its size;
// two admin routes: one that reads a JSON body, one that fails with a plain Error.
const buffering = pluginSource('buffering', `
    api.hooks.preRequest.tapPromise('buffering', async (ctx) => {
      if (ctx.req.method !== 'POST') return;
      const body = await ctx.readBody();
      ctx.outgoing.headers['x-buffered'] = String(body.length);
    });
    api.admin({ method: 'POST', path: '/limits/json', handler: async (req) => ({ status: 200, json: { got: typeof (await req.json()) } }) });
    api.admin({ method: 'GET', path: '/limits/broken', handler: () => { throw new Error('detail the client must not see'); } });`);

let upstream: RunningUpstream;
let sy: RunningSwitchyard;
before(async () => {
  upstream = await startUpstream(echoHandler());
  const config = routeConfig([upstream.url], {}, { maxBufferedBody: LIMIT, admin: { key: ADMIN_KEY } });
  config.plugins = [{ path: './buffering.mjs' }];
  sy = await startSwitchyard(config, { files: { 'buffering.mjs': buffering } });
});
after(async () => {
  await sy.stop();
  await upstream.close();
});

const errorCode = (body: Buffer) => (JSON.parse(body.toString('utf8')) as { code: string }).code;

describe('server.maxBufferedBody', () => {
  test('a body a plugin buffers may be exactly the limit', async () => {
    const res = await exchange(`${sy.url}/x`, { method: 'POST', headers: { 'content-length': LIMIT } }, 'x'.repeat(LIMIT));
    assert.equal(res.status, 200);
    assert.equal((JSON.parse(res.body.toString('utf8')) as { headers: Record<string, string> }).headers['x-buffered'], String(LIMIT));
  });

  test('one byte over the limit is a JSON 413 SY_ERR_BODY_TOO_LARGE, whether the length is declared or chunked', async () => {
    const declared = await exchange(`${sy.url}/x`, { method: 'POST', headers: { 'content-length': LIMIT + 1 } }, 'x'.repeat(LIMIT + 1));
    assert.equal(declared.status, 413);
    assert.equal(errorCode(declared.body), 'SY_ERR_BODY_TOO_LARGE');
    const chunked = await exchange(`${sy.url}/x`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, 'x'.repeat(LIMIT + 1));
    assert.equal(chunked.status, 413);
    assert.equal(errorCode(chunked.body), 'SY_ERR_BODY_TOO_LARGE');
    const next = await fetch(`${sy.url}/after`);
    assert.equal(next.status, 200, 'the next request is served');
    await next.arrayBuffer();
  });
});

describe('admin request bodies', () => {
  const post = (body: string) => exchange(`${sy.url}/limits/json`, { method: 'POST', headers: { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' } }, body);

  test('an admin JSON body up to 1 MiB is read', async () => {
    const res = await post(JSON.stringify('x'.repeat(1024 * 1024 - 2)));
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body.toString('utf8')), { got: 'string' });
  });

  test('an admin body over 1 MiB is a JSON 413 SY_ERR_BODY_TOO_LARGE', async () => {
    const res = await post(JSON.stringify('x'.repeat(1024 * 1024)));
    assert.equal(res.status, 413);
    assert.equal(errorCode(res.body), 'SY_ERR_BODY_TOO_LARGE');
  });
});

describe('an admin handler failing with a plain Error', () => {
  test('answers a JSON 500 SY_ERR_INTERNAL without the error\'s message, and the audit log records it', async () => {
    const res = await exchange(`${sy.url}/limits/broken`, { headers: { 'x-api-key': ADMIN_KEY } });
    assert.equal(res.status, 500);
    const body = JSON.parse(res.body.toString('utf8')) as { code: string; error: string };
    assert.equal(body.code, 'SY_ERR_INTERNAL');
    assert.doesNotMatch(res.body.toString('utf8'), /detail the client must not see/);
    assert.ok(sy.logs.some((l) => l.msg === 'admin call' && l.outcome === 'failed' && l.code === 'SY_ERR_INTERNAL' && l.action === 'GET /limits/broken'));
  });
});
