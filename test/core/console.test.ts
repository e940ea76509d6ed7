// The operator console's data: the recorder's latency buckets, ring and series, and the admin
// routes the page reads (routes with their plans, upstreams with who holds them down, recent
// requests with the log's redaction, the live event stream and its Last-Event-ID resume).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { bucketLimit, bucketOf, ConsoleRecorder, percentiles, RING_SIZE } from '../../core/console-recorder.js';
import type { RequestContext } from '../../core/context.js';
import type { AccessLine } from '../../core/access-log.js';
import YAML from 'yaml';
import { startFleet, type Fleet } from '../helpers/fleet.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

const KEY = 'console-admin-key-0123456789';
const SECRET = 'upstream-secret-value-9876';

function finished(ms: number, upstreamId?: string): RequestContext {
  return { startedAt: performance.now() - ms, timings: { end: ms }, upstream: upstreamId === undefined ? undefined : { id: upstreamId } } as unknown as RequestContext;
}

function line(path: string, status: number): AccessLine {
  return { requestId: 'r', method: 'GET', path, route: 'main', upstream: 'a', status, ms: 1, bytes: 0, attempts: 1, code: undefined };
}

describe('console recorder', () => {
  test('a latency falls in a bucket whose upper bound is above it and within a quarter of it', () => {
    let previous = -1;
    for (const ms of [0, 0.001, 0.004, 0.009, 0.05, 0.3, 1, 2.5, 7, 12, 99, 100, 101, 999, 4321, 60_000, 1_000_000]) {
      const bucket = bucketOf(ms);
      assert.ok(bucket >= previous, `buckets grow with the latency (${ms} ms)`);
      previous = bucket;
      const limit = bucketLimit(bucket);
      assert.ok(limit * 1000 > Math.floor(ms * 1000) || ms * 1000 >= 0x7fffffff, `${ms} ms is below its bucket's limit ${limit}`);
      if (ms >= 0.01) assert.ok(limit <= ms * 1.26 + 0.001, `${ms} ms reports at most a quarter more (${limit})`);
    }
  });

  test('percentiles of a thousand latencies land within a quarter of the true ones', () => {
    const h = new Uint32Array(128);
    for (let i = 1; i <= 1000; i++) h[bucketOf(i)]!++;
    const { p50, p95, p99 } = percentiles(h);
    for (const [got, want] of [[p50, 500], [p95, 950], [p99, 990]] as const) assert.ok(got! >= want && got! <= want * 1.26, `${got} for ${want}`);
    assert.deepEqual(percentiles(new Uint32Array(128)), { p50: null, p95: null, p99: null });
  });

  test('the ring keeps the newest lines in order, numbered, and hands back only those after a number', () => {
    const recorder = new ConsoleRecorder();
    for (let i = 1; i <= RING_SIZE + 20; i++) recorder.record(finished(1), 200, line(`/p${i}`, 200));
    const all = recorder.recent();
    assert.equal(all.length, RING_SIZE);
    assert.equal(all[0]!.path, '/p21');
    assert.equal(all.at(-1)!.seq, RING_SIZE + 20);
    assert.deepEqual(recorder.recent(RING_SIZE + 18).map((l) => l.path), [`/p${RING_SIZE + 19}`, `/p${RING_SIZE + 20}`]);
    // A request the log wrote no line for counts in the series but not in the ring.
    recorder.record(finished(1), 200, undefined);
    assert.equal(recorder.lastSeq, RING_SIZE + 20);
    recorder.close();
  });

  test('the series counts requests by status class and keeps per-upstream failures', () => {
    const recorder = new ConsoleRecorder();
    for (const status of [200, 201, 304, 404, 429, 502, 503, 101]) recorder.record(finished(5, 'main/x'), status, undefined);
    const series = recorder.series();
    assert.equal(series.length, 90);
    const sum = (pick: (p: (typeof series)[number]) => number) => series.reduce((n, p) => n + pick(p), 0);
    assert.equal(sum((p) => p.requests), 8);
    assert.deepEqual({ '2xx': sum((p) => p.status['2xx']), '3xx': sum((p) => p.status['3xx']), '4xx': sum((p) => p.status['4xx']), '5xx': sum((p) => p.status['5xx']) }, { '2xx': 2, '3xx': 1, '4xx': 2, '5xx': 2 });
    const tally = recorder.upstream('main/x')!;
    assert.deepEqual([tally.requests, tally.failures], [8, 2]);
    assert.ok(tally.latencyMs.p50! >= 5 && tally.latencyMs.p50! < 6.3);
    recorder.close();
  });
});

describe('console admin routes', () => {
  let fleet: Fleet;
  let sy: RunningSwitchyard;
  const call = (path: string, init: RequestInit = {}) => fetch(`${sy.url}/_sy${path}`, { ...init, headers: { 'x-api-key': KEY, ...init.headers as Record<string, string> } });

  before(async () => {
    fleet = await startFleet(['a', 'b']);
    sy = await startSwitchyard({
      server: { store: 'memory://', admin: { key: KEY, prefix: '/_sy' } },
      routes: [
        { name: 'main', match: { pathPrefix: '/' }, upstreams: fleet.members.map((m) => ({ url: m.url, name: m.name })), plugins: [{ name: 'balancer' }, { name: 'headers', options: { request: { set: { 'x-token': '${UPSTREAM_TOKEN}' } } } }] },
      ],
      plugins: [{ name: 'security-headers' }, { name: 'cors', options: { origins: ['http://127.0.0.1'] } }],
    }, { env: { UPSTREAM_TOKEN: SECRET } });
  });
  after(async () => {
    await sy?.stop();
    await fleet?.close();
  });

  test('every console data route needs the admin key; the page itself does not', async () => {
    for (const path of ['/console/api/overview', '/console/api/routes', '/console/api/upstreams', '/console/api/requests', '/console/api/limits', '/console/api/events']) {
      const res = await fetch(`${sy.url}/_sy${path}`);
      assert.equal(res.status, 401, path);
      await res.body?.cancel();
    }
    const page = await fetch(`${sy.url}/_sy/console`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /text\/html/);
    assert.match(page.headers.get('content-security-policy')!, /connect-src 'self'/);
    assert.match(await page.text(), /console\/console\.js/);
    for (const asset of ['console.js', 'console.css', 'uplot.js', 'uplot.css']) {
      const res = await fetch(`${sy.url}/_sy/console/${asset}`);
      assert.equal(res.status, 200, asset);
      assert.ok((await res.text()).length > 100, asset);
    }
  });

  test('routes come with each stage\'s taps in the order they run, global ones first', async () => {
    const body = await (await call('/console/api/routes')).json() as { routes: { name: string; plan: Record<string, string[]>; plugins: string[] }[]; globalPlugins: string[]; unmatched: Record<string, string[]> };
    assert.deepEqual(body.globalPlugins, ['security-headers', 'cors']);
    const main = body.routes.find((r) => r.name === 'main')!;
    assert.deepEqual(main.plugins, ['balancer', 'headers']);
    assert.deepEqual(main.plan.route, ['routes']);
    assert.deepEqual(main.plan.selectUpstream, ['balancer']);
    assert.ok(main.plan.preRequest!.includes('headers'));
    assert.deepEqual(main.plan.beforeSend!.slice(0, 2).sort(), ['cors', 'security-headers']);
    assert.equal(body.unmatched.selectUpstream, undefined, 'an unmatched request selects no upstream');
    assert.ok(body.unmatched.beforeSend!.includes('security-headers'));
  });

  test('recent requests are the log\'s lines with its redaction, filtered by status class and upstream', async () => {
    await (await fetch(`${sy.url}/ok?token=${SECRET}`)).text();
    fleet.byName('b').mode = 'fail';
    try {
      for (let i = 0; i < 4; i++) await (await fetch(`${sy.url}/again`)).text();
    } finally {
      fleet.byName('b').mode = 'ok';
    }
    const all = (await (await call('/console/api/requests')).json() as { requests: { path: string; status: number; upstream: string; timings: { end: number } }[] }).requests;
    const mine = all.find((r) => r.path.startsWith('/ok'))!;
    assert.ok(!mine.path.includes(SECRET), 'the secret is redacted as in the log');
    assert.equal(typeof mine.timings.end, 'number');
    const logged = sy.logs.find((l) => l.msg === 'request' && String(l.path).startsWith('/ok'))!;
    assert.equal(mine.path, logged.path);
    const failed = (await (await call('/console/api/requests?status=5xx')).json() as { requests: { status: number; upstream: string }[] }).requests;
    assert.ok(failed.length >= 2 && failed.every((r) => r.status >= 500 && r.upstream === 'b'));
    const fromA = (await (await call('/console/api/requests?upstream=a')).json() as { requests: { upstream: string }[] }).requests;
    assert.ok(fromA.length >= 2 && fromA.every((r) => r.upstream === 'a'));
    const bad = await call('/console/api/requests?status=6xx');
    assert.equal(bad.status, 400);
    assert.equal((await bad.json() as { code: string }).code, 'SY_ERR_BAD_REQUEST');
  });

  test('upstreams show requests, failures and who holds one down; the overview counts the same requests', async () => {
    const rows = (await (await call('/console/api/upstreams')).json() as { routes: { route: string; balanced: boolean; upstreams: { name: string; healthy: boolean; requests: number; failures: number; heldBy: unknown[]; inFlight: number | null }[] }[] }).routes;
    const main = rows.find((r) => r.route === 'main')!;
    assert.equal(main.balanced, true);
    const b = main.upstreams.find((u) => u.name === 'b')!;
    assert.ok(b.failures >= 2, `b failed twice or more (${b.failures})`);
    assert.equal(b.inFlight, 0);
    const overview = await (await call('/console/api/overview')).json() as { series: { requests: number; status: Record<string, number> }[]; reloads: { trigger: string; ok: boolean }[]; configFile: string; inFlight: number; process: { rssBytes: number } };
    assert.ok(overview.series.reduce((n, p) => n + p.status['5xx']!, 0) >= 2);
    assert.deepEqual(overview.reloads.map((r) => [r.trigger, r.ok]), [['start', true]]);
    assert.equal(overview.configFile, sy.configFile);
    assert.ok(overview.process.rssBytes > 0);
  });

  test('the event stream sends a tick at once, resumes after Last-Event-ID, and ends on a reload', async () => {
    const first = await call('/console/api/events');
    assert.equal(first.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.equal(first.headers.get('x-accel-buffering'), 'no');
    const reader = first.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('event: tick')) text += (await reader.read()).value ?? '';
    while (!/\n\n$/.test(text)) text += (await reader.read()).value ?? '';
    const id = Number(/\nid: (\d+)/.exec(text)![1]);
    assert.ok(id > 0);
    const tick = JSON.parse(/\ndata: (.*)\n/.exec(text)![1]!) as { overview: { version: string }; upstreams: unknown[]; requests: unknown[] };
    assert.equal(tick.overview.version, '0.1.0');
    assert.equal(tick.upstreams.length, 1);
    assert.deepEqual(tick.requests, [], 'a stream without Last-Event-ID starts from now');

    // A reload ends the stream (the old config may retire); the client reconnects.
    const changed = YAML.parse(readFileSync(sy.configFile, 'utf8')) as { server: Record<string, unknown> };
    changed.server.shutdownTimeout = 9000;
    sy.writeConfig(changed);
    const reloaded = await sy.yard.reload('test');
    assert.equal(reloaded.ok, true);
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
    }

    await (await fetch(`${sy.url}/after-reload`)).text();
    const resumed = await call('/console/api/events', { headers: { 'last-event-id': String(id) } });
    const again = resumed.body!.pipeThrough(new TextDecoderStream()).getReader();
    let next = '';
    while (!/event: tick[\s\S]*\n\n/.test(next)) next += (await again.read()).value ?? '';
    const missed = JSON.parse(/\ndata: (.*)\n/.exec(next)![1]!) as { requests: { path: string; seq: number }[]; overview: { reloads: { trigger: string }[] } };
    assert.ok(missed.requests.some((r) => r.path === '/after-reload'), 'the line written while disconnected arrives');
    assert.ok(missed.requests.every((r) => r.seq > id));
    assert.equal(missed.overview.reloads[0]!.trigger, 'test');
    await again.cancel();
  });
});

describe('console on an admin port of its own', () => {
  test('the page and its data are served on the admin port and not on the proxy port', async () => {
    const fleet = await startFleet(['solo']);
    const sy = await startSwitchyard({
      server: { store: 'memory://', admin: { key: KEY, port: 0 } },
      routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: fleet.members[0]!.url, name: 'solo' }] }],
    });
    try {
      const adminUrl = `http://127.0.0.1:${sy.yard.adminPort}`;
      assert.equal((await fetch(`${adminUrl}/console`)).status, 200);
      const onProxy = await (await fetch(`${sy.url}/console`)).json() as { upstream?: string };
      assert.equal(onProxy.upstream, 'solo', 'the proxy port forwards /console like any path');
      const stream = await fetch(`${adminUrl}/console/api/events`, { headers: { 'x-api-key': KEY } });
      const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = '';
      while (!/event: tick[\s\S]*\n\n/.test(text)) text += (await reader.read()).value ?? '';
      const tick = JSON.parse(/\ndata: (.*)\n/.exec(text)![1]!) as { overview: { inFlight: number; admin: { ownPort: boolean } } };
      assert.deepEqual([tick.overview.inFlight, tick.overview.admin.ownPort], [0, true]);
      await reader.cancel();
    } finally {
      await sy.stop();
      await fleet.close();
    }
  });
});
