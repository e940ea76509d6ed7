// A plugin that throws in each stage in turn (an Error, a string, a rejected promise): the request
// it threw on gets a JSON 500/502 naming the plugin and stage (or, once the response is out, the
// failure is logged), the next request is served, and the process stays up.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closedPort } from '../helpers/wire.js';
import { echoHandler, pluginSource, startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';

// Throws in the stage named by the request's x-boom header, the way x-boom-kind says.
const boom = pluginSource('boom', `
    const fail = (ctx, stage) => {
      if (ctx.req.headers['x-boom'] !== stage) return;
      const kind = ctx.req.headers['x-boom-kind'];
      if (kind === 'string') throw 'a bare string from ' + stage;
      throw new TypeError('boom in ' + stage);
    };
    const failLater = async (ctx, stage) => {
      await null;
      if (ctx.req.headers['x-boom'] === stage && ctx.req.headers['x-boom-kind'] === 'reject') throw new Error('rejected in ' + stage);
    };
    for (const stage of ['route', 'access', 'cacheLookup', 'selectUpstream', 'preRequest', 'error']) {
      api.hooks[stage].tapPromise({ name: 'boom', stage: -5000 }, async (ctx) => {
        if (ctx.req.headers['x-boom-kind'] === 'reject') await failLater(ctx, stage);
        else fail(ctx, stage);
        return undefined;
      });
    }
    api.hooks.postResponse.tap('boom', (ctx) => fail(ctx, 'postResponse'));
    api.hooks.cacheStore.tapPromise('boom', async (ctx) => { fail(ctx, 'cacheStore'); await failLater(ctx, 'cacheStore'); });
    api.hooks.done.tap('boom', (ctx) => fail(ctx, 'done'));`);

let upstream: RunningUpstream;
let sy: RunningSwitchyard;
before(async () => {
  upstream = await startUpstream(echoHandler());
  const dead = `http://127.0.0.1:${await closedPort()}`;
  sy = await startSwitchyard({
    server: { store: 'memory://' },
    routes: [
      ...['undici', 'http-proxy'].map((engine) => ({ name: `dead-${engine}`, engine, match: { pathPrefix: `/dead-${engine}` }, upstreams: [{ url: dead }] })),
      { name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }] },
    ],
    plugins: [{ path: './boom.mjs' }],
  }, { files: { 'boom.mjs': boom } });
});
after(async () => {
  await sy.stop();
  await upstream.close();
});

async function request(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> | string }> {
  const res = await fetch(`${sy.url}${path}`, { headers });
  const text = await res.text();
  return { status: res.status, body: res.headers.get('content-type')?.includes('json') ? (JSON.parse(text) as Record<string, unknown>) : text };
}

async function nextIsFine(): Promise<void> {
  const res = await request('/after');
  assert.equal(res.status, 200);
  assert.equal((res.body as { upstream: string }).upstream, 'echo');
}

describe('a plugin that throws before the response', { timeout: 60000 }, () => {
  for (const stage of ['route', 'access', 'cacheLookup', 'selectUpstream', 'preRequest', 'postResponse']) {
    for (const kind of ['error', 'string', 'reject']) {
      if (kind === 'reject' && stage === 'postResponse') continue; // a sync stage tap here
      test(`${stage}, ${kind === 'error' ? 'an Error' : kind === 'string' ? 'a non-Error' : 'a rejected promise'}: a JSON 500 naming plugin and stage, then the next request is fine`, async () => {
        const res = await request('/x', { 'x-boom': stage, 'x-boom-kind': kind });
        assert.equal(res.status, 500);
        const body = res.body as Record<string, unknown>;
        assert.equal(body.code, 'SY_ERR_PLUGIN_FAILED');
        assert.equal(body.error, `plugin "boom" failed in stage "${stage}"`);
        assert.equal(typeof body.requestId, 'string');
        assert.doesNotMatch(JSON.stringify(body), /boom in|bare string|rejected in/, 'the plugin\'s own message stays in the log');
        await nextIsFine();
      });
    }
  }

  test('in the error stage of a failed upstream, on either engine: a JSON 500 naming plugin and stage, then the next request is fine', async () => {
    for (const engine of ['undici', 'http-proxy']) {
      for (const kind of ['error', 'string', 'reject']) {
        const res = await request(`/dead-${engine}/x`, { 'x-boom': 'error', 'x-boom-kind': kind });
        assert.equal(res.status, 500, `${engine}, ${kind}`);
        const body = res.body as Record<string, unknown>;
        assert.equal(body.code, 'SY_ERR_PLUGIN_FAILED', `${engine}, ${kind}`);
        assert.equal(body.error, 'plugin "boom" failed in stage "error"');
        await nextIsFine();
      }
    }
  });
});

describe('a plugin that throws after the response went out', { timeout: 60000 }, () => {
  test('in done or cacheStore: the client already has its 200, the failure is logged, the next request is fine', async () => {
    for (const [stage, kind, logged] of [['done', 'error', 'a done tap failed'], ['cacheStore', 'error', 'a cacheStore tap failed'], ['cacheStore', 'reject', 'a cacheStore tap failed']] as const) {
      const before = sy.logs.filter((l) => l.msg === logged).length;
      const res = await request('/x', { 'x-boom': stage, 'x-boom-kind': kind });
      assert.equal(res.status, 200);
      await nextIsFine();
      assert.equal(sy.logs.filter((l) => l.msg === logged).length, before + 1, `${stage} ${kind}`);
    }
  });

  test('after all of that, the process is up and /status answers', async () => {
    const res = await request('/status');
    assert.equal(res.status, 200);
    assert.equal((res.body as { activeRequests: number }).activeRequests, 1);
  });
});
