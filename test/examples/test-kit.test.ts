// The test kit plugin authors import as 'switchyard-proxy/testing': what each of its parts promises.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { definePlugin } from '../../core/index.js';
import { echoUpstream, startProxy, startUpstream, stopAll } from '../../testing/index.js';

const stamp = definePlugin({
  name: 'stamp',
  schema: { type: 'object', properties: { value: { type: 'string', default: 'stamped' } }, additionalProperties: false },
  setup(api, options) {
    api.hooks.preRequest.tap('stamp', (ctx) => {
      ctx.outgoing.headers['x-stamp'] = options.value;
      api.log.info({ path: ctx.outgoing.path }, 'stamp stamped');
    });
  },
});

const routeTo = (url: string) => [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url }] }];

test('a plugin definition passed by name runs on a proxy started from a config object, and the upstream records what it got', async () => {
  const echo = await echoUpstream('one');
  const proxy = await startProxy(
    { server: { store: 'memory://' }, routes: routeTo(echo.url), plugins: [{ name: 'stamp', options: { value: 'v1' } }] },
    { plugins: { stamp } },
  );
  try {
    assert.match(proxy.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${proxy.url}/items?page=2`, { method: 'POST', body: 'hello' });
    const seen = await res.json() as { upstream: string; method: string; url: string; headers: Record<string, string>; body: string };
    assert.deepEqual([seen.upstream, seen.method, seen.url, seen.headers['x-stamp'], seen.body], ['one', 'POST', '/items?page=2', 'v1', 'hello']);
    assert.equal(echo.requests.length, 1);
    assert.deepEqual([echo.requests[0]!.method, echo.requests[0]!.url, echo.requests[0]!.headers['x-stamp'], echo.requests[0]!.body], ['POST', '/items?page=2', 'v1', 'hello']);
  } finally {
    await proxy.stop();
    await echo.close();
  }
});

test('inject runs a request through the pipeline without a socket and the upstream still sees it', async () => {
  const echo = await echoUpstream();
  const proxy = await startProxy({ server: { store: 'memory://' }, routes: routeTo(echo.url), plugins: [{ name: 'stamp' }] }, { plugins: { stamp } });
  try {
    const answer = await proxy.inject({ method: 'PUT', path: '/in-process', headers: { 'content-type': 'text/plain' }, body: 'no socket' });
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.json<{ url: string; body: string }>().url, '/in-process');
    assert.deepEqual([echo.requests[0]!.method, echo.requests[0]!.body, echo.requests[0]!.headers['x-stamp']], ['PUT', 'no socket', 'stamped']);
  } finally {
    await proxy.stop();
    await echo.close();
  }
});

test('waitForLog resolves with a line logged after the call and with a line logged before it', async () => {
  const echo = await echoUpstream();
  const proxy = await startProxy({ server: { store: 'memory://' }, routes: routeTo(echo.url), plugins: [{ name: 'stamp' }] }, { plugins: { stamp } });
  try {
    const coming = proxy.waitForLog((line) => line.msg === 'stamp stamped' && line.path === '/later');
    assert.equal(proxy.logs.some((line) => line.path === '/later'), false, 'not logged yet');
    await fetch(`${proxy.url}/later`);
    const line = await coming;
    assert.equal(line.plugin, 'stamp');
    assert.equal(await proxy.waitForLog((l) => l.msg === 'listening'), proxy.logs.find((l) => l.msg === 'listening'));
  } finally {
    await proxy.stop();
    await echo.close();
  }
});

test('a preset starts from its name and environment, and files are written beside the config', async () => {
  const echo = await echoUpstream('backend');
  const proxy = await startProxy(
    { preset: 'balancer', env: { BACKEND_SERVERS: echo.url, STORE_URL: 'memory://', HEALTH_PATH: '/health-of-backend' } },
    { files: { 'notes.txt': 'beside the config' } },
  );
  try {
    const seen = await (await fetch(`${proxy.url}/via-preset`)).json() as { upstream: string; url: string };
    assert.deepEqual([seen.upstream, seen.url], ['backend', '/via-preset']);
    assert.equal(readFileSync(`${proxy.dir}/notes.txt`, 'utf8'), 'beside the config');
    assert.doesNotMatch(readFileSync(proxy.configFile, 'utf8'), /BACKEND_SERVERS/, 'the environment is not written into the config');
  } finally {
    await proxy.stop();
    await echo.close();
  }
});

test('an upstream handler that throws answers 500 with its message', async () => {
  const upstream = await startUpstream(() => {
    throw new Error('handler broke');
  });
  try {
    const res = await fetch(upstream.url);
    assert.equal(res.status, 500);
    assert.match(await res.text(), /handler broke/);
  } finally {
    await upstream.close();
  }
});

test('stopAll stops every proxy and closes every upstream still running', async () => {
  const echo = await echoUpstream();
  const proxy = await startProxy({ server: { store: 'memory://' }, routes: routeTo(echo.url) });
  await stopAll();
  assert.equal(proxy.yard.server.listening, false);
  assert.equal(echo.server.listening, false);
  await assert.rejects(fetch(`${echo.url}/`));
});
