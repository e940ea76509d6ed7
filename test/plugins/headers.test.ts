// headers: set, append and remove rules on the forwarded request and on the proxied response.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { headerValues, rawRequest } from '../helpers/clients.js';
import { routeConfig, startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';

let upstream: RunningUpstream;
before(async () => {
  upstream = await startUpstream((req, res) => {
    res.setHeader('x-powered-by', 'upstream-framework');
    res.setHeader('server', 'upstream/1.0');
    res.setHeader('set-cookie', ['a=1']);
    res.setHeader('cache-control', 'no-store');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(req.headers));
  });
});
after(() => upstream.close());

describe('headers options', () => {
  test('bad header names and values are rejected at start with the path of the problem', async () => {
    const start = (options: object) => startSwitchyard(routeConfig(['http://127.0.0.1:9'], { plugins: [{ name: 'headers', options }] }));
    await assert.rejects(start({ request: { set: { 'Bad Name': 'x' } } }), /routes\[0\]\.plugins\[0\]\.options\.request\.set: must match pattern/);
    await assert.rejects(start({ response: { set: { 'X-Ok': 'line\r\nInjected: 1' } } }), /options\.response\.set\.X-Ok: must match pattern/);
    await assert.rejects(start({ request: { remove: ['a b'] } }), /options\.request\.remove\[0\]: must match pattern/);
    await assert.rejects(start({ request: { rename: {} } }), /options\.request: unknown key "rename"/);
  });
});

describe('header rules on a route', () => {
  let sy: RunningSwitchyard;
  before(async () => {
    sy = await startSwitchyard(routeConfig([upstream.url], {
      plugins: [{
        name: 'headers',
        options: {
          request: { set: { 'X-Env': 'prod', 'User-Agent': 'switchyard' }, append: { 'X-Tags': 'proxied' }, remove: ['Cookie', 'X-Debug'] },
          response: { set: { 'Cache-Control': 'public, max-age=60' }, append: { 'Set-Cookie': 'b=2' }, remove: ['X-Powered-By', 'Server'] },
        },
      }],
    }));
  });
  after(() => sy.stop());

  test('the request goes upstream with headers set, appended and removed', async () => {
    const res = await fetch(`${sy.url}/x`, { headers: { 'x-env': 'dev', 'x-tags': 'client', cookie: 'session=1', 'x-debug': '1', 'x-keep': 'yes' } });
    const seen = await res.json() as Record<string, string>;
    assert.equal(seen['x-env'], 'prod');
    assert.equal(seen['user-agent'], 'switchyard');
    assert.equal(seen['x-tags'], 'client, proxied');
    assert.equal(seen.cookie, undefined);
    assert.equal(seen['x-debug'], undefined);
    assert.equal(seen['x-keep'], 'yes');
  });

  test('an appended request header is added even when the client sent none', async () => {
    const seen = await (await fetch(`${sy.url}/x`)).json() as Record<string, string>;
    assert.equal(seen['x-tags'], 'proxied');
  });

  test('the response comes back with headers set, appended (as another line) and removed', async () => {
    const res = await rawRequest(`${sy.url}/x`);
    assert.equal(res.status, 200);
    assert.deepEqual(headerValues(res, 'cache-control'), ['public, max-age=60']);
    assert.deepEqual(headerValues(res, 'set-cookie'), ['a=1', 'b=2']);
    assert.deepEqual(headerValues(res, 'x-powered-by'), []);
    assert.deepEqual(headerValues(res, 'server'), []);
    assert.deepEqual(headerValues(res, 'content-type'), ['application/json']);
  });
});
