// admin-aliases: an admin route under a second path. The alias asks its target over HTTP on the
// same listener, so the target's own key check applies; an alias reaching another alias is
// refused at once (no loop), and a target slower than timeoutMs fails the alias.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { echoHandler, pluginSource, routeConfig, startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';

const ADMIN_KEY = 'aliases-admin-key-0123456789';

// An admin route that never answers, for timeoutMs.
const silent = pluginSource('silent', `
    api.admin({ method: 'GET', path: '/silent', public: true, handler: () => new Promise(() => {}) });`);

let upstream: RunningUpstream;
let sy: RunningSwitchyard;
before(async () => {
  upstream = await startUpstream(echoHandler());
  const config = routeConfig([upstream.url], {}, { admin: { key: ADMIN_KEY } });
  config.plugins = [
    { path: './silent.mjs' },
    {
      name: 'admin-aliases',
      options: {
        timeoutMs: 300,
        aliases: [
          { path: '/api/status', target: '/status', public: true },
          { path: '/api/config', target: '/config', public: true },
          { path: '/loop/a', target: '/loop/b', public: true },
          { path: '/loop/b', target: '/loop/a', public: true },
          { path: '/api/silent', target: '/silent', public: true },
        ],
      },
    },
  ];
  sy = await startSwitchyard(config, { files: { 'silent.mjs': silent } });
});
after(async () => {
  await sy.stop();
  await upstream.close();
});

describe('admin-aliases', () => {
  test('an alias answers as its target does', async () => {
    const direct = await fetch(`${sy.url}/status`);
    const aliased = await fetch(`${sy.url}/api/status`);
    assert.equal(aliased.status, 200);
    const [a, b] = [await direct.json() as Record<string, unknown>, await aliased.json() as Record<string, unknown>];
    assert.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
  });

  test('a public alias of a protected route still needs the admin key: the target checks it', async () => {
    const without = await fetch(`${sy.url}/api/config`);
    assert.equal(without.status, 401);
    assert.equal((await without.json() as { code: string }).code, 'SY_ERR_ADMIN_UNAUTHORIZED');
    const withKey = await fetch(`${sy.url}/api/config`, { headers: { 'x-api-key': ADMIN_KEY } });
    assert.equal(withKey.status, 200);
    assert.ok('routes' in (await withKey.json() as Record<string, unknown>));
  });

  test('two aliases pointing at each other answer 400 at the first hop instead of looping', async () => {
    const res = await fetch(`${sy.url}/loop/a`);
    assert.equal(res.status, 400);
    const body = await res.json() as { code: string; error: string };
    assert.equal(body.code, 'SY_ERR_BAD_REQUEST');
    assert.match(body.error, /an admin alias points at another alias/);
  });

  test('a target slower than timeoutMs fails the alias with a JSON 500 instead of hanging, and the next call is served', async () => {
    const res = await fetch(`${sy.url}/api/silent`);
    // The plugin rejects with a plain Error, so the client sees an internal error, not a timeout code.
    assert.equal(res.status, 500);
    assert.equal((await res.json() as { code: string }).code, 'SY_ERR_INTERNAL');
    const next = await fetch(`${sy.url}/api/status`);
    assert.equal(next.status, 200);
    await next.arrayBuffer();
  });

  test('an alias pointing at itself fails the start', async () => {
    const config = routeConfig([upstream.url]);
    config.plugins = [{ name: 'admin-aliases', options: { aliases: [{ path: '/same', target: '/same' }] } }];
    await assert.rejects(startSwitchyard(config), /alias \/same points at itself/);
  });
});
