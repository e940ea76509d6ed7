// The plugin contract's newer parts: beforeSend on every answer, global stages for unmatched
// requests, ctx.consumer, declared errors with ctx.refuse, api.inject, and taps only at setup.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { definePlugin } from '../../core/index.js';
import { echoHandler, pluginSource, routeConfig, startSwitchyard, startUpstream, type RunningUpstream } from '../helpers/servers.js';
import { closedPort } from '../helpers/wire.js';
import { builtinPlugins } from '../../plugins/index.js';

let upstream: RunningUpstream;
before(async () => {
  upstream = await startUpstream(echoHandler('one'));
});
after(() => upstream.close());

// Stamps every answer in beforeSend with the stage that answered, and counts the stages it saw.
const stamp = pluginSource('stamp', `
    const seen = api.state(() => ({ access: [], done: [] }));
    api.hooks.access.tap('stamp', (ctx) => {
      seen.access.push(ctx.pathname);
      if (ctx.pathname === '/refuse') return { status: 418, json: { refused: true } };
      if (ctx.pathname === '/cached') return { status: 200, headers: { 'content-type': 'text/plain' }, body: 'from a stage' };
    });
    api.hooks.beforeSend.tap('stamp', (ctx) => {
      ctx.response.headers['x-stamp'] = ctx.answeredBy ?? 'upstream';
    });
    api.hooks.done.tap('stamp', (ctx) => { seen.done.push(ctx.pathname + ' ' + ctx.res.statusCode); });
    api.admin({ method: 'GET', path: '/stamp-seen', public: true, handler: () => ({ status: 200, json: seen }) });`);

describe('beforeSend: one stage every answer passes', () => {
  test('a forwarded response, a stage answer, an error, an admin answer and a 404 all carry what beforeSend set', async () => {
    const config = {
      server: { store: 'memory://' },
      plugins: [{ path: './stamp.mjs' }],
      routes: [
        { name: 'main', match: { pathPrefix: '/api' }, upstreams: [{ url: upstream.url }] },
        { name: 'stage', match: { pathPrefix: '/refuse' }, upstreams: [{ url: upstream.url }] },
        { name: 'answered', match: { pathPrefix: '/cached' }, upstreams: [{ url: upstream.url }] },
        { name: 'down', match: { pathPrefix: '/down' }, upstreams: [{ url: `http://127.0.0.1:${await closedPort()}` }] },
      ],
    };
    const sy = await startSwitchyard(config, { files: { 'stamp.mjs': stamp } });
    try {
      const cases: [string, number, string][] = [
        ['/api/x', 200, 'upstream'],
        ['/refuse', 418, 'access'],
        ['/cached', 200, 'access'],
        ['/down', 502, 'error'],
        ['/health', 200, 'admin'],
        ['/nowhere', 404, 'error'],
      ];
      for (const [path, status, by] of cases) {
        const res = await fetch(`${sy.url}${path}`);
        await res.arrayBuffer();
        assert.equal(res.status, status, path);
        assert.equal(res.headers.get('x-stamp'), by, `${path} passed beforeSend`);
      }
    } finally {
      await sy.stop();
    }
  });

  test('a beforeSend tap may wrap a stage answer\'s body as a stream, and Content-Length goes', async () => {
    const gzip = pluginSource('gzip-all', `
    api.hooks.access.tap('gzip-all', () => ({ status: 200, headers: { 'content-type': 'text/plain' }, body: 'hello '.repeat(100) }));
    api.hooks.beforeSend.tap('gzip-all', async (ctx) => {
      await new Promise((resolve) => setImmediate(resolve));
      ctx.response.headers['content-encoding'] = 'gzip';
      ctx.transformResponseBody(zlib.createGzip());
    });`);
    const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './gzip.mjs' }] }), { files: { 'gzip.mjs': `import zlib from 'node:zlib';\n${gzip}` } });
    try {
      const res = await fetch(`${sy.url}/x`, { headers: { 'accept-encoding': 'identity' } });
      assert.equal(res.headers.get('content-length'), null);
      // fetch decodes gzip itself: the text is the original body, so it was gzip on the wire.
      assert.equal(await res.text(), 'hello '.repeat(100));
      const raw = await new Promise<Buffer>((resolve, reject) => {
        import('node:http').then(({ get }) => get(`${sy.url}/x`, (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => resolve(Buffer.concat(chunks)));
        }).on('error', reject));
      });
      assert.equal(gunzipSync(raw).toString(), 'hello '.repeat(100));
    } finally {
      await sy.stop();
    }
  });

  test('a beforeSend tap that throws answers 500 naming the plugin, without running again on the error answer', async () => {
    const broken = pluginSource('broken-send', `
    let calls = 0;
    api.hooks.beforeSend.tap('broken-send', () => { calls++; throw new Error('secret internals'); });
    api.admin({ method: 'GET', path: '/broken-calls', public: true, handler: () => ({ status: 200, json: { calls } }) });`);
    const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './broken.mjs' }] }), { files: { 'broken.mjs': broken } });
    try {
      const res = await fetch(`${sy.url}/x`);
      assert.equal(res.status, 500);
      const body = await res.json() as { code: string; error: string };
      assert.equal(body.code, 'SY_ERR_PLUGIN_FAILED');
      assert.match(body.error, /broken-send.*beforeSend/);
      assert.ok(!body.error.includes('secret internals'));
      const again = await fetch(`${sy.url}/x`);
      assert.equal(again.status, 500, 'the proxy keeps serving');
      await again.arrayBuffer();
    } finally {
      await sy.stop();
    }
  });
});

describe('requests no route matches', () => {
  test('run the global access, beforeSend and done taps around their 404, and a global access tap may answer them', async () => {
    const config = { server: { store: 'memory://' }, plugins: [{ path: './stamp.mjs' }], routes: [] };
    const sy = await startSwitchyard(config, { files: { 'stamp.mjs': stamp } });
    try {
      const missing = await fetch(`${sy.url}/nothing-here`);
      assert.equal(missing.status, 404);
      assert.equal((await missing.json() as { code: string }).code, 'SY_ERR_NO_ROUTE');
      assert.equal(missing.headers.get('x-stamp'), 'error');
      const answered = await fetch(`${sy.url}/refuse`);
      assert.equal(answered.status, 418, 'the global access tap answered a path no route matches');
      await answered.arrayBuffer();
      const seen = await (await fetch(`${sy.url}/stamp-seen`)).json() as { access: string[]; done: string[] };
      assert.deepEqual(seen.access, ['/nothing-here', '/refuse']);
      assert.ok(seen.done.includes('/nothing-here 404') && seen.done.includes('/refuse 418'), JSON.stringify(seen.done));
    } finally {
      await sy.stop();
    }
  });

  test('with the ai-gateway preset, /robots.txt disallows all and a 404 carries the security headers', async () => {
    const sy = await startSwitchyard({ preset: 'ai-gateway', server: { store: 'memory://' } }, { env: { ADMIN_TOKEN: 'contract-test-token' } });
    try {
      const robots = await fetch(`${sy.url}/robots.txt`);
      assert.equal(robots.status, 200);
      assert.match(await robots.text(), /Disallow: \//);
      const missing = await fetch(`${sy.url}/no/such/thing`);
      assert.equal(missing.status, 404);
      assert.equal(missing.headers.get('x-content-type-options'), 'nosniff');
      await missing.arrayBuffer();
      const stats = await fetch(`${sy.url}/stats`);
      assert.equal(stats.headers.get('x-content-type-options'), 'nosniff', 'admin answers too');
      await stats.arrayBuffer();
    } finally {
      await sy.stop();
    }
  });
});

describe('ctx.consumer: who is asking', () => {
  test('api-key sets it, rate-limit counts per consumer, and the access line names it', async () => {
    const config = routeConfig([upstream.url], {
      plugins: [
        { name: 'api-key', options: { keys: [{ name: 'alice', key: 'alice-secret-1' }, { name: 'bob', key: 'bob-secret-22' }] } },
        { name: 'rate-limit', options: { key: 'consumer', limits: [{ count: 2, window: '1m' }] } },
      ],
    });
    const sy = await startSwitchyard(config);
    try {
      const as = (key: string) => fetch(`${sy.url}/x`, { headers: { 'x-api-key': key } }).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      });
      assert.deepEqual([await as('alice-secret-1'), await as('alice-secret-1'), await as('alice-secret-1')], [200, 200, 429]);
      assert.equal(await as('bob-secret-22'), 200, 'bob has a counter of his own');
      const lines = sy.logs.filter((l) => l.msg === 'request');
      assert.deepEqual(lines.map((l) => l.consumer), ['alice', 'alice', 'alice', 'bob']);
      assert.ok(lines.every((l) => l.clientIp === '127.0.0.1' && l.userAgent === 'node'), 'each line says who asked from where, with what');
      assert.ok(!JSON.stringify(sy.logs).includes('alice-secret-1'));
    } finally {
      await sy.stop();
    }
  });
});

describe('errors declared by plugins', () => {
  const refusing = pluginSource('refusing', `
    api.hooks.access.tap('refusing', (ctx) => {
      if (ctx.pathname === '/closed') return ctx.refuse('REFUSING_ERR_CLOSED', { details: { opensAt: '09:00' } });
      if (ctx.pathname === '/custom') return ctx.refuse('REFUSING_ERR_CLOSED', { status: 451, message: 'not here' });
      if (ctx.pathname === '/typo') return ctx.refuse('REFUSING_ERR_NOT_DECLARED');
    });`);
  const source = refusing.replace('schema: {"type":"object"},', 'schema: {"type":"object"},\n  errors: { REFUSING_ERR_CLOSED: { status: 503, message: "closed for now (refusing plugin)" } },');

  test('ctx.refuse answers the one JSON shape with the declared status, message and the request id', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './refusing.mjs' }] }), { files: { 'refusing.mjs': source } });
    try {
      const closed = await fetch(`${sy.url}/closed`);
      assert.equal(closed.status, 503);
      assert.deepEqual(await closed.json(), { error: 'closed for now (refusing plugin)', code: 'REFUSING_ERR_CLOSED', requestId: closed.headers.get('x-request-id'), details: { opensAt: '09:00' } });
      const custom = await fetch(`${sy.url}/custom`);
      assert.equal(custom.status, 451);
      assert.equal((await custom.json() as { error: string }).error, 'not here');
      const typo = await fetch(`${sy.url}/typo`);
      assert.equal(typo.status, 500, 'an undeclared code is a bug in the plugin');
      assert.equal((await typo.json() as { code: string }).code, 'SY_ERR_PLUGIN_FAILED');
    } finally {
      await sy.stop();
    }
  });

  test('a plugin cannot declare a code of the core or of another plugin', async () => {
    await builtinPlugins['rate-limit']!();
    assert.throws(() => definePlugin({ name: 'thief', schema: { type: 'object' }, errors: { SY_ERR_NO_ROUTE: { status: 404, message: 'x' } }, setup() {} }), /belongs to the core/);
    assert.throws(() => definePlugin({ name: 'thief', schema: { type: 'object' }, errors: { SY_ERR_RATE_LIMITED: { status: 429, message: 'x' } }, setup() {} }), /belongs to rate-limit/);
  });
});

describe('api.inject: in-process requests', () => {
  const asker = pluginSource('asker', `
    api.admin({ method: 'GET', path: '/ask', handler: async () => {
      const proxied = await api.inject({ path: '/api/through?x=1', headers: { 'x-probe': 'yes' } });
      const admin = await api.inject({ path: '/health' });
      return { status: 200, json: { proxied: proxied.json(), proxiedStatus: proxied.status, admin: admin.json(), injected: proxied.headers['x-injected'] } };
    } });
    api.hooks.beforeSend.tap('asker', (ctx) => { if (ctx.injected) ctx.response.headers['x-injected'] = 'yes'; });`);

  test('runs a request through the pipeline and the admin router without a socket', async () => {
    const config = routeConfig([upstream.url], {}, { admin: { key: 'admin-key-for-inject' } });
    (config as { plugins?: unknown[] }).plugins = [{ path: './asker.mjs' }];
    const sy = await startSwitchyard(config, { files: { 'asker.mjs': asker } });
    try {
      const res = await fetch(`${sy.url}/ask`, { headers: { 'x-api-key': 'admin-key-for-inject' } });
      assert.equal(res.status, 200);
      const body = await res.json() as { proxied: { url: string; headers: Record<string, string> }; proxiedStatus: number; admin: { status: string }; injected: string };
      assert.equal(body.proxiedStatus, 200);
      assert.equal(body.proxied.url, '/api/through?x=1');
      assert.equal(body.proxied.headers['x-probe'], 'yes');
      assert.equal(body.admin.status, 'ok');
      assert.equal(body.injected, 'yes', 'ctx.injected tells the pipeline the request came from a plugin');
    } finally {
      await sy.stop();
    }
  });
});

describe('api.inject during setup', () => {
  test('answers 503 SY_ERR_NOT_READY: there is no pipeline to run on yet', async () => {
    const early = pluginSource('early-asker', `
    const seen = { answer: null };
    api.inject({ path: '/anything' }).then((res) => { seen.answer = { status: res.status, code: res.json().code }; });
    api.admin({ method: 'GET', path: '/early-answer', public: true, handler: () => ({ status: 200, json: seen }) });`);
    const sy = await startSwitchyard({ server: { store: 'memory://' }, plugins: [{ path: './early.mjs' }], routes: [] }, { files: { 'early.mjs': early } });
    try {
      const seen = await (await fetch(`${sy.url}/early-answer`)).json() as { answer: { status: number; code: string } };
      assert.deepEqual(seen.answer, { status: 503, code: 'SY_ERR_NOT_READY' });
    } finally {
      await sy.stop();
    }
  });
});

describe('taps', () => {
  test('a tap added after setup ended is refused with a message naming the plugin and stage', async () => {
    const late = pluginSource('late-tapper', `
    api.admin({ method: 'GET', path: '/tap-late', public: true, handler: () => {
      try {
        api.hooks.done.tap('late-tapper', () => undefined);
        return { status: 200, json: { refused: false } };
      } catch (err) {
        return { status: 200, json: { refused: true, message: err.message } };
      }
    } });`);
    const sy = await startSwitchyard({ server: { store: 'memory://' }, plugins: [{ path: './late.mjs' }], routes: [] }, { files: { 'late.mjs': late } });
    try {
      const body = await (await fetch(`${sy.url}/tap-late`)).json() as { refused: boolean; message: string };
      assert.equal(body.refused, true);
      assert.match(body.message, /late-tapper.*"done".*after its setup ended/);
    } finally {
      await sy.stop();
    }
  });

  test('no plugin assigns to res.writeHead, res.write or res.end', () => {
    const root = new URL('../../../plugins/', import.meta.url).pathname;
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir)) {
        const path = join(dir, entry);
        if (statSync(path).isDirectory()) walk(path);
        else if (path.endsWith('.ts') && /\bres\.(writeHead|write|end)\s*=[^=]/.test(readFileSync(path, 'utf8'))) offenders.push(path);
      }
    };
    walk(root);
    assert.deepEqual(offenders, []);
  });
});
