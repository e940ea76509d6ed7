// The admin surface: public and protected routes, the admin key, redaction, plugin routes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { echoHandler, pluginSource, routeConfig, startSwitchyard, startUpstream, type RunningUpstream } from '../helpers/servers.js';

let upstream: RunningUpstream;
before(async () => { upstream = await startUpstream(echoHandler()); });
after(() => upstream.close());

const ADMIN_KEY = 'admin-key-for-tests-0123456789';
const UPSTREAM_TOKEN = 'upstream-token-that-must-not-leak';

describe('admin routes', () => {
  test('health and status are public; status lists version, routes and the last reload', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url]));
    try {
      const health = await fetch(`${sy.url}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: 'ok' });
      const status = await (await fetch(`${sy.url}/status`)).json() as Record<string, unknown>;
      assert.equal(status.version, '0.1.0');
      assert.equal(typeof status.uptimeSeconds, 'number');
      assert.deepEqual((status.routes as { name: string }[]).map((r) => r.name), ['main']);
      assert.deepEqual((status.lastReload as { ok: boolean; trigger: string }), { ok: true, at: (status.lastReload as { at: number }).at, generation: 1, trigger: 'start' });
    } finally {
      await sy.stop();
    }
  });

  test('protected routes answer 403 with how to set a key when none is configured', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url]));
    try {
      const res = await fetch(`${sy.url}/config`);
      assert.equal(res.status, 403);
      const body = await res.json() as { code: string; error: string };
      assert.equal(body.code, 'SY_ERR_ADMIN_KEY_NOT_SET');
      assert.match(body.error, /server\.admin\.key/);
    } finally {
      await sy.stop();
    }
  });

  test('protected routes refuse a missing or wrong key and accept X-API-Key or a Bearer token', async () => {
    const config = routeConfig([upstream.url], {}, { admin: { key: '${ADMIN_KEY}' } });
    const sy = await startSwitchyard(config, { env: { ADMIN_KEY } });
    try {
      for (const headers of [{}, { 'x-api-key': 'wrong' }, { authorization: 'Bearer wrong' }, { authorization: `Basic ${ADMIN_KEY}` }] as Record<string, string>[]) {
        const res = await fetch(`${sy.url}/config`, { headers });
        assert.equal(res.status, 401, JSON.stringify(headers));
        assert.equal((await res.json() as { code: string }).code, 'SY_ERR_ADMIN_UNAUTHORIZED');
      }
      assert.equal((await fetch(`${sy.url}/config`, { headers: { 'x-api-key': ADMIN_KEY } })).status, 200);
      assert.equal((await fetch(`${sy.url}/config`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).status, 200);
    } finally {
      await sy.stop();
    }
  });

  test('/config shows secrets as *** and no secret appears in logs or status', async () => {
    const tokenPlugin = pluginSource('token-user', `
    api.hooks.preRequest.tap('token-user', (ctx) => { ctx.outgoing.headers.authorization = 'Bearer ' + options.token; });`);
    const config = {
      server: { store: 'memory://', admin: { key: '${ADMIN_KEY}' } },
      routes: [{
        name: 'main',
        match: { pathPrefix: '/' },
        upstreams: [{ url: `http://user:${'${UPSTREAM_PASSWORD}'}@127.0.0.1:${upstream.port}` }],
        plugins: [{ path: './token.mjs', options: { token: '${UPSTREAM_TOKEN}', note: 'uses ${UPSTREAM_TOKEN} inside' } }],
      }],
    };
    const sy = await startSwitchyard(config, { env: { ADMIN_KEY, UPSTREAM_TOKEN, UPSTREAM_PASSWORD: 'hunter2-password' }, files: { 'token.mjs': tokenPlugin } });
    try {
      const shown = await (await fetch(`${sy.url}/config`, { headers: { 'x-api-key': ADMIN_KEY } })).text();
      for (const secret of [ADMIN_KEY, UPSTREAM_TOKEN, 'hunter2-password']) assert.ok(!shown.includes(secret), `/config leaks ${secret}`);
      const parsed = JSON.parse(shown) as { server: { admin: { key: string } }; routes: { plugins: { options: { token: string; note: string } }[]; upstreams: { url: string }[] }[] };
      assert.equal(parsed.server.admin.key, '***');
      assert.equal(parsed.routes[0]!.plugins[0]!.options.token, '***');
      assert.equal(parsed.routes[0]!.plugins[0]!.options.note, 'uses *** inside');
      assert.match(parsed.routes[0]!.upstreams[0]!.url, /^http:\/\/user:\*\*\*@127\.0\.0\.1/);

      const echoed = await (await fetch(`${sy.url}/x?api_key=client-secret-value`, { headers: { 'x-api-key': 'client-key-value' } })).json() as { headers: Record<string, string> };
      assert.equal(echoed.headers.authorization, `Bearer ${UPSTREAM_TOKEN}`, 'the plugin did use the secret');

      const status = await (await fetch(`${sy.url}/status`)).text();
      const logs = JSON.stringify(sy.logs);
      for (const secret of [ADMIN_KEY, UPSTREAM_TOKEN, 'hunter2-password', 'client-secret-value']) {
        assert.ok(!status.includes(secret), `/status leaks ${secret}`);
        assert.ok(!logs.includes(secret), `logs leak ${secret}`);
      }
      assert.ok(logs.includes('api_key=***'), 'the access log keeps the parameter name but hides its value');
    } finally {
      await sy.stop();
    }
  });

  test('plugins add admin routes with params, protected unless public', async () => {
    const items = pluginSource('items', `
    const items = new Map([['a', 1]]);
    api.admin({ method: 'GET', path: '/items/:name', handler: (req) => items.has(req.params.name)
      ? { status: 200, json: { name: req.params.name, value: items.get(req.params.name) } }
      : { status: 404, json: { error: 'no such item', code: 'ITEMS_NOT_FOUND' } } });
    api.admin({ method: 'PUT', path: '/items/:name', handler: async (req) => { items.set(req.params.name, (await req.json()).value); return { status: 204 }; } });
    api.admin({ method: 'GET', path: '/items-count', public: true, handler: () => ({ status: 200, json: { count: items.size } }) });`);
    const config = { ...routeConfig([upstream.url], {}, { admin: { key: ADMIN_KEY, prefix: '/_admin' } }), plugins: [{ path: './items.mjs' }] };
    const sy = await startSwitchyard(config, { files: { 'items.mjs': items } });
    const auth = { 'x-api-key': ADMIN_KEY };
    try {
      assert.equal((await fetch(`${sy.url}/_admin/items/a`)).status, 401);
      assert.deepEqual(await (await fetch(`${sy.url}/_admin/items/a`, { headers: auth })).json(), { name: 'a', value: 1 });
      assert.equal((await fetch(`${sy.url}/_admin/items/b`, { method: 'PUT', headers: auth, body: '{"value":2}' })).status, 204);
      assert.deepEqual(await (await fetch(`${sy.url}/_admin/items/b`, { headers: auth })).json(), { name: 'b', value: 2 });
      assert.deepEqual(await (await fetch(`${sy.url}/_admin/items-count`)).json(), { count: 2 });
      const bad = await fetch(`${sy.url}/_admin/items/c`, { method: 'PUT', headers: auth, body: '{not json' });
      assert.equal(bad.status, 400);
      assert.equal((await bad.json() as { code: string }).code, 'SY_ERR_BAD_REQUEST');
      // Under a prefix, the bare paths belong to the proxy again.
      assert.equal((await (await fetch(`${sy.url}/health`)).json() as { url: string }).url, '/health');
      assert.equal((await fetch(`${sy.url}/_admin/health`)).status, 200);
    } finally {
      await sy.stop();
    }
  });

  test('admin routes can live on their own port, leaving every path of the proxy port to routes', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], {}, { admin: { port: 0 } }));
    try {
      const adminUrl = `http://127.0.0.1:${sy.yard.adminPort}`;
      assert.deepEqual(await (await fetch(`${adminUrl}/health`)).json(), { status: 'ok' });
      assert.equal((await (await fetch(`${sy.url}/health`)).json() as { url: string }).url, '/health');
      const missing = await fetch(`${adminUrl}/nothing-here`);
      assert.equal(missing.status, 404);
      assert.equal((await missing.json() as { code: string }).code, 'SY_ERR_ADMIN_NOT_FOUND');
    } finally {
      await sy.stop();
    }
  });
});
