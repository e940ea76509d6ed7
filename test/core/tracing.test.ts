// Trace context across the proxy: W3C traceparent/tracestate pass through untouched both ways,
// and every line a plugin logs through ctx.log carries the request id the client sees.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pluginSource, routeConfig, startSwitchyard, startUpstream, type RunningUpstream } from '../helpers/servers.js';
import { closedPort } from '../helpers/wire.js';
import { newRequestId } from '../../core/request-id.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const TRACESTATE = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';

let upstream: RunningUpstream;
let seen: Record<string, string | string[] | undefined> = {};
before(async () => {
  upstream = await startUpstream((req, res) => {
    seen = req.headers;
    res.writeHead(200, { traceparent: req.headers.traceparent ?? '', tracestate: req.headers.tracestate ?? '', 'content-type': 'text/plain' });
    res.end('ok');
  });
});
after(() => upstream.close());

test('traceparent and tracestate reach the upstream and come back byte for byte', async () => {
  const sy = await startSwitchyard(routeConfig([upstream.url]));
  try {
    const res = await fetch(`${sy.url}/t`, { headers: { traceparent: TRACEPARENT, tracestate: TRACESTATE } });
    await res.text();
    assert.equal(seen.traceparent, TRACEPARENT);
    assert.equal(seen.tracestate, TRACESTATE);
    assert.equal(res.headers.get('traceparent'), TRACEPARENT);
    assert.equal(res.headers.get('tracestate'), TRACESTATE);
  } finally {
    await sy.stop();
  }
});

const chatty = pluginSource('chatty', `
    for (const stage of ['access', 'cacheLookup', 'preRequest']) {
      api.hooks[stage].tap('chatty', (ctx) => { ctx.log.info({ stage }, 'chatty says'); return undefined; });
    }
    api.hooks.selectUpstream.tap('chatty', (ctx) => { ctx.log.info({ stage: 'selectUpstream' }, 'chatty says'); return undefined; });
    api.hooks.postResponse.tap('chatty', (ctx) => { ctx.log.info({ stage: 'postResponse' }, 'chatty says'); });
    api.hooks.done.tap('chatty', (ctx) => { ctx.log.info({ stage: 'done' }, 'chatty says'); });`);

test('every line a plugin logs through ctx.log carries the request id, incoming or made up', async () => {
  const sy = await startSwitchyard({ ...routeConfig([upstream.url]), plugins: [{ path: './chatty.mjs' }] }, { files: { 'chatty.mjs': chatty } });
  try {
    const given = await fetch(`${sy.url}/a`, { headers: { 'x-request-id': 'trace-me-42' } });
    await given.text();
    assert.equal(given.headers.get('x-request-id'), 'trace-me-42');
    assert.equal(seen['x-request-id'], 'trace-me-42');
    const made = await fetch(`${sy.url}/b`);
    await made.text();
    const madeId = made.headers.get('x-request-id');
    assert.match(madeId!, /^[0-9a-f-]{36}$/);
    const lines = sy.logs.filter((l) => l.msg === 'chatty says');
    assert.equal(lines.length, 12);
    assert.deepEqual(lines.slice(0, 6).map((l) => l.requestId), Array(6).fill('trace-me-42'));
    assert.deepEqual(lines.slice(6).map((l) => l.requestId), Array(6).fill(madeId));
    assert.deepEqual(lines.slice(0, 6).map((l) => l.stage), ['access', 'cacheLookup', 'selectUpstream', 'preRequest', 'postResponse', 'done']);
    // The access log line carries it too.
    assert.ok(sy.logs.some((l) => l.msg === 'request' && l.requestId === madeId));
  } finally {
    await sy.stop();
  }
});

test('with the log level at warn, a 2xx leaves no access log line and a 5xx one warn line', async () => {
  const sy = await startSwitchyard({
    server: { store: 'memory://' },
    routes: [
      { name: 'up', match: { pathPrefix: '/up' }, upstreams: [{ url: upstream.url }] },
      { name: 'down', match: { pathPrefix: '/down' }, upstreams: [{ url: `http://127.0.0.1:${await closedPort()}` }] },
    ],
  }, { logLevel: 'warn' });
  try {
    const ok = await fetch(`${sy.url}/up?api_key=hidden`);
    await ok.text();
    const failed = await fetch(`${sy.url}/down?api_key=hidden`);
    await failed.text();
    assert.equal(failed.status, 502);
    const requests = sy.logs.filter((l) => l.msg === 'request');
    assert.deepEqual(requests.map((l) => [l.level, l.route, l.status, l.path]), [[40, 'down', 502, '/down?api_key=***']]);
  } finally {
    await sy.stop();
  }
});

test('made request ids are version 4 UUIDs, all different, across the batches they are made in', () => {
  const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  // 256 are made at a time: 1,000 spans four batches and the turns between them.
  const ids = Array.from({ length: 1000 }, () => newRequestId());
  for (const id of ids) assert.match(id, V4);
  assert.equal(new Set(ids).size, ids.length);
  // Every random place takes every digit (a place no store reaches would stay '0'); the version's
  // place is always 4 and the variant's one of 8, 9, a, b.
  for (let place = 0; place < 36; place++) {
    const seen = new Set(ids.map((id) => id[place]));
    if ([8, 13, 18, 23].includes(place)) assert.deepEqual([...seen], ['-']);
    else if (place === 14) assert.deepEqual([...seen], ['4']);
    else if (place === 19) assert.deepEqual([...seen].sort(), ['8', '9', 'a', 'b']);
    else assert.equal(seen.size, 16, `place ${place}: ${[...seen].sort().join('')}`);
  }
});
