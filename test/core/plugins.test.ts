// The plugin contract: stage order, answering early, failures, retries, body access, transforms.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Switchyard } from '../../core/index.js';
import { catalogs, CORE_URL, echoHandler, pluginSource, routeConfig, startSwitchyard, startUpstream, type RunningUpstream } from '../helpers/servers.js';
import { closedPort } from '../helpers/wire.js';

let upstream: RunningUpstream;
let hits = 0;

before(async () => {
  const echo = echoHandler('one');
  upstream = await startUpstream((req, res) => {
    hits++;
    echo(req, res);
  });
});
after(() => upstream.close());

const trail = pluginSource('trail', `
    api.hooks.preRequest.tap({ name: options.label, stage: options.stage ?? 0 }, (ctx) => {
      const before = ctx.outgoing.headers['x-trail'];
      ctx.outgoing.headers['x-trail'] = before ? before + ',' + options.label : options.label;
    });`);

describe('stage order', () => {
  test('global plugins run before route plugins, and inside a stage taps run by stage number then declared order', async () => {
    const config = routeConfig([upstream.url], {
      plugins: [
        { path: './trail.mjs', options: { label: 'route-default-1' } },
        { path: './trail.mjs', options: { label: 'route-auth', stage: -200 } },
        { path: './trail.mjs', options: { label: 'route-default-2' } },
      ],
    });
    config.plugins = [{ path: './trail.mjs', options: { label: 'global-observe', stage: 100 } }];
    const sy = await startSwitchyard(config, { files: { 'trail.mjs': trail } });
    try {
      const body = await (await fetch(`${sy.url}/x`)).json() as { headers: Record<string, string> };
      assert.equal(body.headers['x-trail'], 'global-observe,route-auth,route-default-1,route-default-2');
    } finally {
      await sy.stop();
    }
  });
});

describe('tap order by name', () => {
  // Like trail, but may ask to run after a named tap instead of giving a stage number.
  const follower = pluginSource('follower', `
    api.hooks.preRequest.tap({ name: options.label, after: options.after }, (ctx) => {
      const before = ctx.outgoing.headers['x-trail'];
      ctx.outgoing.headers['x-trail'] = before ? before + ',' + options.label : options.label;
    });`);

  test('a tap with after: runs after the named tap, even one with a later stage number', async () => {
    const config = routeConfig([upstream.url], {
      plugins: [
        { path: './trail.mjs', options: { label: 'anchor', stage: 50 } },
        { path: './trail.mjs', options: { label: 'middle', stage: 10 } },
        { path: './follower.mjs', options: { label: 'follower', after: 'anchor' } },
      ],
    });
    const sy = await startSwitchyard(config, { files: { 'trail.mjs': trail, 'follower.mjs': follower } });
    try {
      const body = await (await fetch(`${sy.url}/x`)).json() as { headers: Record<string, string> };
      // Without after: the follower (stage 0) would run first.
      assert.equal(body.headers['x-trail'], 'middle,anchor,follower');
    } finally {
      await sy.stop();
    }
  });

  test('after: naming a tap not registered before it fails the start, naming both', async () => {
    const config = routeConfig([upstream.url], { plugins: [{ path: './follower.mjs', options: { label: 'follower', after: 'nobody' } }] });
    await assert.rejects(startSwitchyard(config, { files: { 'follower.mjs': follower } }), /plugin "follower" wants to run after "nobody" in stage "preRequest", which is not registered before it/);
  });
});

describe('answering early', () => {
  const gate = pluginSource('gate', `
    const seen = api.state(() => ({ preRequest: 0, postResponse: 0, done: [] }));
    api.hooks.access.tap('gate', (ctx) => {
      if (ctx.req.headers['x-let-me-in'] !== 'please') return { status: 401, json: { error: 'say please', code: 'GATE_CLOSED' } };
    });
    api.hooks.preRequest.tap('gate', () => { seen.preRequest++; });
    api.hooks.postResponse.tap('gate', () => { seen.postResponse++; });
    api.hooks.done.tap('gate', (ctx) => { seen.done.push({ status: ctx.res.statusCode, answeredBy: ctx.answeredBy ?? null }); });
    api.admin({ method: 'GET', path: '/gate', public: true, handler: () => ({ status: 200, json: seen }) });`);

  test('an access tap that answers stops the later stages, yet done still runs', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './gate.mjs' }] }), { files: { 'gate.mjs': gate } });
    try {
      const hitsBefore = hits;
      const refused = await fetch(`${sy.url}/x`);
      assert.equal(refused.status, 401);
      assert.deepEqual(await refused.json(), { error: 'say please', code: 'GATE_CLOSED' });
      assert.ok(refused.headers.get('x-request-id'));
      assert.equal(hits, hitsBefore, 'the upstream was not asked');

      const allowed = await fetch(`${sy.url}/x`, { headers: { 'x-let-me-in': 'please' } });
      assert.equal(allowed.status, 200);
      await allowed.arrayBuffer();

      const seen = await (await fetch(`${sy.url}/gate`)).json() as { preRequest: number; postResponse: number; done: unknown[] };
      assert.equal(seen.preRequest, 1);
      assert.equal(seen.postResponse, 1);
      assert.deepEqual(seen.done, [{ status: 401, answeredBy: 'access' }, { status: 200, answeredBy: null }]);
    } finally {
      await sy.stop();
    }
  });

  test('a cacheLookup tap that answers means the upstream is never asked', async () => {
    const cache = pluginSource('fake-cache', `
    api.hooks.cacheLookup.tap('fake-cache', (ctx) => ctx.pathname === '/cached' ? { status: 200, headers: { 'x-cache': 'HIT' }, body: 'from cache' } : undefined);`);
    const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './cache.mjs' }] }), { files: { 'cache.mjs': cache } });
    try {
      const hitsBefore = hits;
      const res = await fetch(`${sy.url}/cached`);
      assert.equal(res.headers.get('x-cache'), 'HIT');
      assert.equal(await res.text(), 'from cache');
      assert.equal(hits, hitsBefore);
      const miss = await fetch(`${sy.url}/other`);
      assert.equal(miss.status, 200);
      await miss.arrayBuffer();
      assert.equal(hits, hitsBefore + 1);
    } finally {
      await sy.stop();
    }
  });
});

describe('plugin failures', () => {
  test('a plugin that throws gives that request a 500 naming the plugin, is logged, and the process keeps serving', async () => {
    const thrower = pluginSource('thrower', `
    api.hooks.preRequest.tap('thrower', (ctx) => {
      if (ctx.req.headers['x-boom']) throw new Error('internal detail the client must not see');
    });`);
    const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './thrower.mjs' }] }), { files: { 'thrower.mjs': thrower } });
    try {
      const res = await fetch(`${sy.url}/x`, { headers: { 'x-boom': '1' } });
      assert.equal(res.status, 500);
      const body = await res.json() as { error: string; code: string; requestId: string };
      assert.equal(body.code, 'SY_ERR_PLUGIN_FAILED');
      assert.match(body.error, /plugin "thrower" failed in stage "preRequest"/);
      assert.doesNotMatch(body.error, /internal detail/);
      assert.equal(body.requestId, res.headers.get('x-request-id'));
      const logged = sy.logs.find((line) => line.code === 'SY_ERR_PLUGIN_FAILED' && line.msg !== 'request');
      assert.ok(logged, 'the failure is logged');
      assert.match(String(logged.msg), /thrower.*internal detail/);

      const next = await fetch(`${sy.url}/x`);
      assert.equal(next.status, 200);
      await next.arrayBuffer();
    } finally {
      await sy.stop();
    }
  });

  test('a plugin that throws in setup fails the start with its own error', async () => {
    const broken = pluginSource('broken', `throw new Error('cannot start');`);
    await assert.rejects(
      startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './broken.mjs' }] }), { files: { 'broken.mjs': broken } }),
      /cannot start/,
    );
  });

  test('a route plugin cannot tap the route stage', async () => {
    const router = pluginSource('router', `api.hooks.route.tap('router', () => undefined);`);
    await assert.rejects(
      startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './router.mjs' }] }), { files: { 'router.mjs': router } }),
      /configured on a route and cannot tap the "route" stage/,
    );
  });
});

describe('upstream choice and retries', () => {
  test('a selectUpstream tap chooses which of the route\'s upstreams takes the request', async () => {
    const second = await startUpstream(echoHandler('two'));
    const last = pluginSource('pick-last', `api.hooks.selectUpstream.tap('pick-last', (ctx, candidates) => candidates[candidates.length - 1]);`);
    const sy = await startSwitchyard(routeConfig([upstream.url, second.url], { plugins: [{ path: './last.mjs' }] }), { files: { 'last.mjs': last } });
    try {
      const body = await (await fetch(`${sy.url}/x`)).json() as { upstream: string };
      assert.equal(body.upstream, 'two');
    } finally {
      await sy.stop();
      await second.close();
    }
  });

  test('without a selectUpstream tap the first listed upstream takes the request', async () => {
    const second = await startUpstream(echoHandler('two'));
    const sy = await startSwitchyard(routeConfig([second.url, upstream.url]));
    try {
      const body = await (await fetch(`${sy.url}/x`)).json() as { upstream: string };
      assert.equal(body.upstream, 'two');
    } finally {
      await sy.stop();
      await second.close();
    }
  });

  test('an error tap returning RETRY sends the request to the next upstream', async () => {
    const dead = await startUpstream(() => {});
    const deadUrl = dead.url;
    await dead.close();
    const retry = pluginSource('retry-once', `
    api.hooks.error.tap('retry-once', (ctx, error) => ctx.tried.length < 2 ? RETRY : undefined);`);
    const sy = await startSwitchyard(routeConfig([deadUrl, upstream.url], { plugins: [{ path: './retry.mjs' }] }), { files: { 'retry.mjs': retry } });
    try {
      const res = await fetch(`${sy.url}/x`);
      assert.equal(res.status, 200);
      assert.equal((await res.json() as { upstream: string }).upstream, 'one');
    } finally {
      await sy.stop();
    }
  });

  test('error taps see upstream 5xx answers: they may retry elsewhere, or let the 5xx through', async () => {
    const failing = await startUpstream((_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' });
      res.end('busy');
    });
    const retry5xx = pluginSource('retry-5xx', `
    api.hooks.error.tap('retry-5xx', (ctx, error) => {
      if (ctx.req.headers['x-no-retry']) return undefined;
      return error.code === 'SY_ERR_UPSTREAM_ERROR_STATUS' && error.details.status === 503 && ctx.response.headers['retry-after'] === '1' ? RETRY : undefined;
    });`);
    const sy = await startSwitchyard(routeConfig([failing.url, upstream.url], { plugins: [{ path: './retry.mjs' }] }), { files: { 'retry.mjs': retry5xx } });
    try {
      const retried = await fetch(`${sy.url}/x`);
      assert.equal(retried.status, 200);
      assert.equal((await retried.json() as { upstream: string }).upstream, 'one');
      const line = sy.logs.find((l) => l.msg === 'request' && l.status === 200);
      assert.equal(line?.attempts, 2);

      const passed = await fetch(`${sy.url}/x`, { headers: { 'x-no-retry': '1' } });
      assert.equal(passed.status, 503);
      assert.equal(await passed.text(), 'busy');
    } finally {
      await sy.stop();
      await failing.close();
    }
  });

  test('a retry on a route with one upstream tries that upstream again', async () => {
    let calls = 0;
    const flaky = await startUpstream((_req, res) => {
      calls++;
      res.writeHead(calls === 1 ? 502 : 200);
      res.end(calls === 1 ? 'bad gateway' : 'second time lucky');
    });
    const retry = pluginSource('retry-twice', `
    api.hooks.error.tap('retry-twice', (ctx) => ctx.tried.length < 2 ? RETRY : undefined);`);
    const sy = await startSwitchyard(routeConfig([flaky.url], { plugins: [{ path: './retry.mjs' }] }), { files: { 'retry.mjs': retry } });
    try {
      const res = await fetch(`${sy.url}/x`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'second time lucky');
      assert.equal(calls, 2);
    } finally {
      await sy.stop();
      await flaky.close();
    }
  });

  test('an error tap may answer instead of the default JSON error', async () => {
    const dead = await startUpstream(() => {});
    const deadUrl = dead.url;
    await dead.close();
    const fallback = pluginSource('fallback', `
    api.hooks.error.tap('fallback', (ctx, error) => ({ status: 200, headers: { 'x-fallback': error.code }, body: 'stale but useful' }));`);
    const sy = await startSwitchyard(routeConfig([deadUrl], { plugins: [{ path: './fallback.mjs' }] }), { files: { 'fallback.mjs': fallback } });
    try {
      const res = await fetch(`${sy.url}/x`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-fallback'), 'SY_ERR_UPSTREAM_UNREACHABLE');
      assert.equal(await res.text(), 'stale but useful');
    } finally {
      await sy.stop();
    }
  });
});

describe('taps that answer now or later', () => {
  const memo = pluginSource('memo', `
    api.hooks.cacheLookup.tapMaybeAsync('memo', (ctx) => {
      const how = ctx.req.headers['x-how'];
      if (how === 'now') return { status: 200, headers: { 'x-memo': 'now' }, body: 'at once' };
      if (how === 'later') return new Promise((resolve) => setImmediate(() => resolve({ status: 200, headers: { 'x-memo': 'later' }, body: 'after a wait' })));
      if (how === 'throw') throw new Error('secret internals');
      if (how === 'reject') return Promise.reject(new Error('secret internals'));
      return undefined;
    });`);

  test('tapMaybeAsync: a value or a promise answers; nothing goes on to the upstream; failures name the plugin', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './memo.mjs' }] }), { files: { 'memo.mjs': memo } });
    try {
      const before = hits;
      const now = await fetch(`${sy.url}/x`, { headers: { 'x-how': 'now' } });
      assert.equal(now.headers.get('x-memo'), 'now');
      assert.equal(await now.text(), 'at once');
      const later = await fetch(`${sy.url}/x`, { headers: { 'x-how': 'later' } });
      assert.equal(later.headers.get('x-memo'), 'later');
      assert.equal(await later.text(), 'after a wait');
      assert.equal(hits, before, 'answered by the tap, not the upstream');
      for (const how of ['throw', 'reject']) {
        const failed = await fetch(`${sy.url}/x`, { headers: { 'x-how': how } });
        assert.equal(failed.status, 500, how);
        const body = await failed.json() as { error: string; code: string };
        assert.equal(body.code, 'SY_ERR_PLUGIN_FAILED', how);
        assert.equal(body.error, 'plugin "memo" failed in stage "cacheLookup"', how);
      }
      const passed = await fetch(`${sy.url}/x`);
      assert.equal(passed.status, 200);
      assert.equal(hits, before + 1, 'undefined goes on to the upstream');
    } finally {
      await sy.stop();
    }
  });
});

describe('a stage runs its taps the same way whichever path calls them', () => {
  // With only tap() and tapMaybeAsync() taps the core calls them itself; one tapPromise() tap in a
  // stage hands that stage to tapable. The order and the answers must not differ.
  const chain = pluginSource('chain', `
    if (options.viaTapable) {
      api.hooks.cacheLookup.tapPromise({ name: 'promise-noop', stage: -10 }, async () => undefined);
      api.hooks.postResponse.tapPromise({ name: 'promise-noop', stage: -10 }, async () => {});
    }
    api.hooks.cacheLookup.tapMaybeAsync('wait', (ctx) =>
      ctx.req.headers['x-wait'] ? new Promise((resolve) => setImmediate(() => resolve(undefined))) : undefined);
    api.hooks.cacheLookup.tap({ name: 'answer', stage: 10 }, (ctx) =>
      ctx.req.headers['x-answer'] ? { status: 200, headers: { 'x-answered-by': 'answer' }, body: 'answered' } : undefined);
    // A series tap's return value means nothing: the next one still runs.
    api.hooks.postResponse.tap('first', (ctx) => { ctx.response.headers['x-first'] = 'ran'; return 'ignored'; });
    api.hooks.postResponse.tap({ name: 'second', stage: 10 }, (ctx) => { ctx.response.headers['x-second'] = 'ran'; });`,
  { type: 'object', properties: { viaTapable: { type: 'boolean' } } });

  for (const viaTapable of [false, true]) {
    test(viaTapable ? 'through tapable (a tapPromise tap in the stage)' : 'called by the core (tap and tapMaybeAsync only)', async () => {
      const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './chain.mjs', options: { viaTapable } }] }), { files: { 'chain.mjs': chain } });
      try {
        const before = hits;
        const waited = await fetch(`${sy.url}/x`, { headers: { 'x-wait': '1', 'x-answer': '1' } });
        assert.equal(waited.headers.get('x-answered-by'), 'answer', 'a tap that waited and passed lets the next one answer');
        assert.equal(await waited.text(), 'answered');
        assert.equal(hits, before);
        const passed = await fetch(`${sy.url}/x`, { headers: { 'x-wait': '1' } });
        assert.equal(passed.status, 200);
        assert.equal(hits, before + 1);
        assert.equal(passed.headers.get('x-first'), 'ran');
        assert.equal(passed.headers.get('x-second'), 'ran');
      } finally {
        await sy.stop();
      }
    });
  }
});

describe('attempt outcomes', () => {
  test('observeAttempts tells a plugin how each attempt ended: success, failure (connection or listed status), inconclusive (client gone)', async () => {
    const judge = `import { definePlugin, observeAttempts } from '${CORE_URL}';
export default definePlugin({
  name: 'judge',
  schema: { type: 'object' },
  setup(api) {
    const seen = api.state(() => []);
    observeAttempts(api, { failureStatuses: [503] }, (ctx, outcome) => { seen.push(ctx.route.name + ' ' + ctx.pathname + ' ' + outcome); });
    api.admin({ method: 'GET', path: '/judged', public: true, handler: () => ({ status: 200, json: seen }) });
  },
});
`;
    const held: (() => void)[] = [];
    const varied = await startUpstream((req, res) => {
      if (req.url === '/busy') return void res.writeHead(503).end('busy');
      if (req.url === '/missing') return void res.writeHead(404).end('no');
      if (req.url === '/hang') return void held.push(() => res.end('late'));
      res.end('ok');
    });
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const sy = await startSwitchyard({
      server: { store: 'memory://' },
      routes: [
        { name: 'live', match: { pathPrefix: '/live' }, stripPrefix: true, upstreams: [{ url: varied.url }] },
        { name: 'dead', match: { pathPrefix: '/dead' }, upstreams: [{ url: dead }] },
      ],
      plugins: [{ path: './judge.mjs' }],
    }, { files: { 'judge.mjs': judge } });
    try {
      for (const path of ['/live/fine', '/live/busy', '/live/missing', '/dead/x']) await (await fetch(`${sy.url}${path}`)).arrayBuffer();
      const aborter = new AbortController();
      const hanging = fetch(`${sy.url}/live/hang`, { signal: aborter.signal }).catch(() => 'aborted');
      for (let i = 0; i < 500 && held.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      aborter.abort();
      assert.equal(await hanging, 'aborted');
      const expected = ['live /live/fine success', 'live /live/busy failure', 'live /live/missing success', 'dead /dead/x failure', 'live /live/hang inconclusive'];
      let judged: string[] = [];
      for (let i = 0; i < 500 && judged.length < expected.length; i++) {
        judged = await (await fetch(`${sy.url}/judged`)).json() as string[];
        if (judged.length < expected.length) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.deepEqual(judged, expected);
    } finally {
      for (const release of held) release();
      await sy.stop();
      await varied.close();
    }
  });
});

describe('bodies', () => {
  const shout = pluginSource('shout', `
    api.hooks.preRequest.tapPromise('shout', async (ctx) => {
      if (ctx.req.method !== 'POST') return;
      const body = await ctx.readBody(64);
      ctx.outgoing.body = Buffer.from(body.toString('utf8').toUpperCase());
    });`);

  test('a plugin may buffer and replace the request body, within a size limit', async () => {
    const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './shout.mjs' }] }), { files: { 'shout.mjs': shout } });
    try {
      const res = await fetch(`${sy.url}/x`, { method: 'POST', body: 'hello there' });
      const echoed = await res.json() as { body: string; headers: Record<string, string> };
      assert.equal(echoed.body, 'HELLO THERE');
      assert.equal(echoed.headers['content-length'], '11');

      const tooBig = await fetch(`${sy.url}/x`, { method: 'POST', body: 'x'.repeat(65) });
      assert.equal(tooBig.status, 413);
      assert.equal((await tooBig.json() as { code: string }).code, 'SY_ERR_BODY_TOO_LARGE');
    } finally {
      await sy.stop();
    }
  });

  test('postResponse may change the head and transform the body as a stream', async () => {
    const upper = pluginSource('upper', `
    const { Transform } = await import('node:stream');
    api.hooks.postResponse.tap('upper', (ctx) => {
      ctx.response.headers['x-transformed'] = 'yes';
      ctx.transformResponseBody(new Transform({ transform(chunk, _enc, done) { done(null, chunk.toString('utf8').toUpperCase()); } }));
    });`);
    const sy = await startSwitchyard(routeConfig([upstream.url], { plugins: [{ path: './upper.mjs' }] }), { files: { 'upper.mjs': upper.replace('setup(api, options) {', 'async setup(api, options) {') } });
    try {
      const res = await fetch(`${sy.url}/quiet`);
      assert.equal(res.headers.get('x-transformed'), 'yes');
      assert.equal(res.headers.get('content-length'), null, 'a transformed body has no stale Content-Length');
      const text = await res.text();
      assert.match(text, /"URL":"\/QUIET"/);
    } finally {
      await sy.stop();
    }
  });
});

describe('routes from plugins', () => {
  test('a route tap may supply routes the config does not have', async () => {
    const dynamic = pluginSource('dynamic-routes', `
    const route = api.createRoute({ name: 'dyn', match: { pathPrefix: '/dyn' }, stripPrefix: true, upstreams: [{ url: options.url }] });
    api.hooks.route.tap('dynamic-routes', (ctx) => ctx.pathname.startsWith('/dyn') ? route : undefined);`);
    const config = { server: { store: 'memory://' }, routes: [], plugins: [{ path: './dyn.mjs', options: { url: upstream.url } }] };
    const sy = await startSwitchyard(config, { files: { 'dyn.mjs': dynamic } });
    try {
      const res = await fetch(`${sy.url}/dyn/inner?q=1`);
      assert.equal(res.status, 200);
      assert.equal((await res.json() as { url: string }).url, '/inner?q=1');
      const none = await fetch(`${sy.url}/elsewhere`);
      assert.equal(none.status, 404);
      assert.equal((await none.json() as { code: string }).code, 'SY_ERR_NO_ROUTE');
    } finally {
      await sy.stop();
    }
  });
});

describe('persistent store', () => {
  test('api.store keeps values in the SQLite file across a restart', async () => {
    const counter = pluginSource('visit-counter', `
    api.hooks.postResponse.tapPromise('visit-counter', async (ctx) => {
      const visits = ((await api.store.get('visits')) ?? 0) + 1;
      await api.store.set('visits', visits);
      ctx.response.headers['x-visits'] = String(visits);
    });`);
    const config = { ...routeConfig([upstream.url], {}, { store: 'sqlite://./state/switchyard.sqlite' }), plugins: [{ path: './counter.mjs' }] };
    const first = await startSwitchyard(config, { files: { 'counter.mjs': counter } });
    try {
      assert.equal((await fetch(`${first.url}/x`)).headers.get('x-visits'), '1');
      assert.equal((await fetch(`${first.url}/x`)).headers.get('x-visits'), '2');
    } finally {
      await first.stop();
    }
    assert.ok(existsSync(`${first.dir}/state/switchyard.sqlite`), 'the store is a real file next to the config');
    // A second process life on the same config directory finds the value again.
    const second = await Switchyard.start({ source: { file: first.configFile, port: 0, host: '127.0.0.1' }, catalogs, env: {}, logger: pino({ level: 'silent' }), watch: false });
    try {
      assert.equal((await fetch(`http://127.0.0.1:${second.port}/x`)).headers.get('x-visits'), '3');
    } finally {
      await second.stop();
    }
  });
});
