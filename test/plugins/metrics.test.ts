// The metrics plugin: options checking, the Prometheus text at /metrics (requests, latency,
// in-flight, upstream health and breaker, reloads, process, cache and rate-limit counters),
// /stats/server, protection by the admin key, and the slow / upstream-failure log.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { missing } from '../helpers/tools.js';
import { closedPort, deferred, responseOf } from '../helpers/wire.js';
import { echoHandler, routeConfig, startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';

let upstream: RunningUpstream;
/** Requests to /hold/… wait here until the test lets them go. */
const held: (() => void)[] = [];
before(async () => {
  const echo = echoHandler();
  upstream = await startUpstream((req, res) => {
    if (req.url!.startsWith('/hold')) return void held.push(() => echo(req, res));
    if (req.url!.startsWith('/fail')) return void res.writeHead(500).end('no');
    if (req.url!.startsWith('/slow')) return void setTimeout(() => echo(req, res), 30); // an upstream being slow
    echo(req, res);
  });
});
after(() => upstream.close());

const ADMIN = { 'x-api-key': 'admin-secret' };

/** Every sample of the Prometheus text: `name{labels} value` lines. */
function samples(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample with `name` whose labels include `labels` (undefined if none). */
function valueOf(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples(text).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value;
}

async function scrape(sy: RunningSwitchyard): Promise<string> {
  const res = await fetch(`${sy.url}/metrics`, { headers: ADMIN });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
  return res.text();
}

async function get(url: string, headers: Record<string, string> = {}): Promise<number> {
  const res = await fetch(url, { headers });
  await res.arrayBuffer();
  return res.status;
}

function yard(extra: Record<string, unknown> = {}, plugins: unknown[] = [{ name: 'metrics' }], server: Record<string, unknown> = {}) {
  return startSwitchyard({ ...routeConfig([upstream.url], extra, { admin: { key: 'admin-secret' }, ...server }), plugins });
}

describe('metrics options (sanity)', () => {
  test('unknown keys and a bad threshold are rejected naming the option', async () => {
    await assert.rejects(yard({}, [{ name: 'metrics', options: { pubic: true } }]), /options: unknown key "pubic"/);
    await assert.rejects(yard({}, [{ name: 'metrics', options: { slowLog: { thresholdMs: 0 } } }]), /options\.slowLog\.thresholdMs: must be >= 1/);
  });
});

describe('GET /metrics', { timeout: 60000 }, () => {
  let sy: RunningSwitchyard;
  before(async () => {
    sy = await yard();
  });
  after(() => sy.stop());

  test('counts requests by route, upstream, method and status class, with latency histograms', async () => {
    for (let i = 0; i < 3; i++) assert.equal(await get(`${sy.url}/a`), 200);
    assert.equal(await get(`${sy.url}/fail`), 500);
    assert.equal((await fetch(`${sy.url}/a`, { method: 'POST', body: 'x' }).then((r) => r.arrayBuffer().then(() => r.status))), 200);
    const text = await scrape(sy);
    const up = upstream.url;
    assert.equal(valueOf(text, 'switchyard_http_requests_total', { route: 'main', upstream: up, method: 'GET', status_class: '2xx' }), 3);
    assert.equal(valueOf(text, 'switchyard_http_requests_total', { route: 'main', upstream: up, method: 'GET', status_class: '5xx' }), 1);
    assert.equal(valueOf(text, 'switchyard_http_requests_total', { route: 'main', upstream: up, method: 'POST', status_class: '2xx' }), 1);
    assert.equal(valueOf(text, 'switchyard_http_request_duration_seconds_count', { route: 'main' }), 5);
    assert.equal(valueOf(text, 'switchyard_http_request_duration_seconds_bucket', { route: 'main', le: '+Inf' }), 5);
    assert.equal(valueOf(text, 'switchyard_upstream_first_byte_seconds_count', { route: 'main', upstream: up }), 5);
    assert.equal(valueOf(text, 'switchyard_upstream_up', { route: 'main', upstream: up }), 1);
    assert.equal(valueOf(text, 'switchyard_circuit_breaker_open', { route: 'main', upstream: up }), 0);
    assert.equal(valueOf(text, 'switchyard_config_generation'), 1);
    assert.ok((valueOf(text, 'switchyard_open_connections') ?? -1) >= 0);
    assert.ok(valueOf(text, 'process_resident_memory_bytes')! > 0);
    assert.ok(valueOf(text, 'nodejs_eventloop_lag_seconds') !== undefined);
    assert.ok(valueOf(text, 'nodejs_active_handles_total') !== undefined);
    assert.equal(valueOf(text, 'switchyard_info', { version: '0.1.0' }), 1);
  });

  test('a request waiting on its upstream counts as in flight until it ends', async () => {
    const before = valueOf(await scrape(sy), 'switchyard_http_requests_in_flight')!;
    const req = http.get(`${sy.url}/hold/1`);
    const released = deferred();
    upstream.server.once('request', () => released.resolve());
    await released.promise;
    assert.equal(valueOf(await scrape(sy), 'switchyard_http_requests_in_flight'), before + 1);
    held.shift()!();
    const res = await responseOf(req);
    res.resume();
    await new Promise((resolve) => res.once('end', resolve));
    // `done` runs on the response's close, which follows its end on the client by a moment.
    for (let i = 0; i < 50 && valueOf(await scrape(sy), 'switchyard_http_requests_in_flight') !== before; i++);
    assert.equal(valueOf(await scrape(sy), 'switchyard_http_requests_in_flight'), before);
  });

  test('an upstream failure is counted by its error code', async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const other = await startSwitchyard({
      server: { store: 'memory://', admin: { key: 'admin-secret' } },
      routes: [{ name: 'dead', match: { pathPrefix: '/' }, upstreams: [{ url: dead }] }],
      plugins: [{ name: 'metrics', options: { slowLog: { enabled: false } } }],
    });
    try {
      assert.equal(await get(`${other.url}/x`), 502);
      const text = await scrape(other);
      assert.equal(valueOf(text, 'switchyard_upstream_errors_total', { route: 'dead', upstream: dead, code: 'SY_ERR_UPSTREAM_UNREACHABLE' }), 1);
      assert.equal(valueOf(text, 'switchyard_http_requests_total', { route: 'dead', status_class: '5xx' }), 1);
    } finally {
      await other.stop();
    }
  });
});

describe('reloads in /metrics', { timeout: 60000 }, () => {
  test('applied and rejected reloads are counted, the generation follows, and counts survive the reload', async () => {
    const config = routeConfig([upstream.url], {}, { admin: { key: 'admin-secret' } });
    const sy = await startSwitchyard({ ...config, plugins: [{ name: 'metrics' }] });
    try {
      assert.equal(await get(`${sy.url}/a`), 200);
      sy.writeConfig({ ...config, plugins: [{ name: 'metrics', options: { buckets: [0.1, 1] } }] });
      assert.equal((await sy.yard.reload()).ok, true);
      sy.writeConfig('routes: [oops');
      assert.equal((await sy.yard.reload()).ok, false);
      const text = await scrape(sy);
      assert.equal(valueOf(text, 'switchyard_config_reloads_total', { result: 'success' }), 1);
      assert.equal(valueOf(text, 'switchyard_config_reloads_total', { result: 'failure' }), 1);
      assert.equal(valueOf(text, 'switchyard_config_generation'), 2);
      assert.equal(valueOf(text, 'switchyard_config_last_reload_success'), 0);
      // The registry outlives the reload: the request before it is still counted.
      assert.equal(valueOf(text, 'switchyard_http_requests_total', { route: 'main', method: 'GET', status_class: '2xx' }), 1);
    } finally {
      await sy.stop();
    }
  });
});

describe('who may read the metrics', { timeout: 60000 }, () => {
  test('by default /metrics and /stats/server need the admin key; public: true opens them', async () => {
    const closed = await yard();
    try {
      assert.equal(await get(`${closed.url}/metrics`), 401);
      assert.equal(await get(`${closed.url}/stats/server`), 401);
      assert.equal(await get(`${closed.url}/metrics`, { authorization: 'Bearer admin-secret' }), 200);
    } finally {
      await closed.stop();
    }
    const open = await yard({}, [{ name: 'metrics', options: { public: true } }]);
    try {
      assert.equal(await get(`${open.url}/metrics`), 200);
      assert.equal(await get(`${open.url}/stats/server`), 200);
    } finally {
      await open.stop();
    }
  });
});

describe('GET /stats/server', { timeout: 60000 }, () => {
  test('gives rate, latency, error rate, memory, event-loop lag and open connections over the last minute', async () => {
    const sy = await yard();
    try {
      for (let i = 0; i < 9; i++) assert.equal(await get(`${sy.url}/a`), 200);
      assert.equal(await get(`${sy.url}/fail`), 500);
      const stats = (await (await fetch(`${sy.url}/stats/server`, { headers: ADMIN })).json()) as Record<string, any>;
      assert.equal(stats.windowSeconds, 60);
      assert.equal(stats.requests, 10);
      assert.ok(stats.requestsPerSecond > 0);
      assert.ok(stats.latencyMs.avg > 0);
      assert.ok(stats.latencyMs.p95 >= stats.latencyMs.avg * 0.5);
      assert.equal(stats.errorRate, 0.1);
      for (const key of ['rss', 'heapUsed', 'heapTotal', 'external']) {
        assert.equal(typeof stats.memoryMB[key], 'number');
        assert.equal(stats.memoryMB[key], Math.round(stats.memoryMB[key] * 100) / 100, 'two decimals');
      }
      assert.ok(stats.memoryMB.rss > 0);
      assert.equal(typeof stats.eventLoopLagMs.meanMs, 'number');
      assert.equal(typeof stats.eventLoopLagMs.p99Ms, 'number');
      assert.ok(stats.openConnections >= 1, 'this very request is on an open connection');
      assert.equal(stats.inFlight, 0);
    } finally {
      await sy.stop();
    }
  });
});

describe('plugin counters on the shared registry', { timeout: 60000 }, () => {
  test('cache hits, misses and bytes per tier, and rate-limit rejections', async () => {
    const sy = await yard({
      plugins: [
        { name: 'rate-limit', options: { limits: [{ count: 3, window: '1h' }] } },
        { name: 'cache', options: { honourUpstreamCacheControl: false, ttl: 300, persistent: { enabled: false } } },
      ],
    });
    try {
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push(await get(`${sy.url}/cached`));
      assert.deepEqual(statuses, [200, 200, 200, 429]);
      const text = await scrape(sy);
      assert.equal(valueOf(text, 'switchyard_cache_misses_total', { route: 'main' }), 1);
      assert.equal(valueOf(text, 'switchyard_cache_hits_total', { route: 'main', tier: 'memory' }), 2);
      assert.equal(valueOf(text, 'switchyard_cache_hits_total', { route: 'main', tier: 'persistent' }), 0);
      assert.ok(valueOf(text, 'switchyard_cache_served_bytes_total', { route: 'main', tier: 'memory' })! > 0);
      assert.equal(valueOf(text, 'switchyard_rate_limit_rejected_total', { route: 'main' }), 1);
      assert.equal(valueOf(text, 'switchyard_http_requests_total', { route: 'main', method: 'GET', status_class: '4xx' }), 1);
    } finally {
      await sy.stop();
    }
  });

  test('an open circuit breaker shows as a gauge, and the upstream as down', async () => {
    const sy = await yard({ plugins: [{ name: 'circuit-breaker', options: { minimumRequests: 2, failureRatio: 0.5, coolDown: 60000 } }] });
    try {
      assert.equal(await get(`${sy.url}/fail`), 500);
      assert.equal(await get(`${sy.url}/fail`), 500);
      const text = await scrape(sy);
      assert.equal(valueOf(text, 'switchyard_circuit_breaker_open', { route: 'main', upstream: upstream.url }), 1);
      assert.equal(valueOf(text, 'switchyard_upstream_up', { route: 'main', upstream: upstream.url }), 0);
    } finally {
      await sy.stop();
    }
  });
});

describe('slow and failed requests are logged with where the time went', { timeout: 60000 }, () => {
  test('a request over the threshold logs its timing breakdown and request id', async () => {
    const sy = await yard({}, [{ name: 'metrics', options: { slowLog: { thresholdMs: 10 } } }]);
    try {
      const res = await fetch(`${sy.url}/slow`);
      await res.arrayBuffer();
      const line = sy.logs.find((l) => l.msg === 'slow request');
      assert.ok(line, 'a slow request line');
      assert.equal(line.requestId, res.headers.get('x-request-id'));
      assert.equal(line.route, 'main');
      assert.equal(line.status, 200);
      const t = line.timings as Record<string, number>;
      for (const phase of ['route', 'access', 'cache', 'select', 'firstByte', 'body', 'total']) assert.equal(typeof t[phase], 'number', phase);
      assert.ok(t.total! >= 10);
      assert.ok(t.firstByte! <= t.total!);
      assert.equal(sy.logs.filter((l) => l.msg === 'slow request').length, 1, 'a fast request is not logged');
    } finally {
      await sy.stop();
    }
  });

  // A listener with a full accept queue: the kernel drops the proxy's SYN until the listener starts
  // accepting and the SYN is sent again, so connecting takes at least as long as the test holds it.
  // Node accepts on its own, hence a python3 listener (backlog 0) that answers every connection.
  const SLOW_ACCEPT = [
    'import socket, sys, threading',
    's = socket.socket()',
    "s.bind(('127.0.0.1', 0))",
    's.listen(0)',
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.readline()',
    'def serve(c):',
    "    data = b''",
    "    while b'\\r\\n\\r\\n' not in data:",
    '        chunk = c.recv(4096)',
    '        if not chunk: return c.close()',
    '        data += chunk',
    "    c.sendall(b'HTTP/1.1 200 OK\\r\\ncontent-type: text/plain\\r\\ncontent-length: 2\\r\\nconnection: close\\r\\n\\r\\nok')",
    '    c.close()',
    'while True:',
    '    c, _ = s.accept()',
    '    threading.Thread(target=serve, args=(c,), daemon=True).start()',
  ].join('\n');

  for (const engine of ['undici', 'http-proxy'] as const) {
    test(`connecting is timed apart from waiting for the first byte (${engine})`, { skip: missing('python3') }, async () => {
      const python = spawn('python3', ['-c', SLOW_ACCEPT], { stdio: ['pipe', 'pipe', 'ignore'] });
      const exited = once(python, 'exit');
      const filler = new net.Socket();
      try {
        const port = Number(String((await once(python.stdout!, 'data'))[0]).trim());
        filler.connect(port, '127.0.0.1'); // takes the only place in the accept queue
        await once(filler, 'connect');
        const sy = await startSwitchyard({
          server: { store: 'memory://', engine },
          routes: [{ name: 'slow-accept', match: { pathPrefix: '/' }, upstreams: [{ url: `http://127.0.0.1:${port}` }], timeouts: { connect: 30_000 } }],
          plugins: [{ name: 'metrics', options: { slowLog: { thresholdMs: 1 } } }],
        });
        try {
          const answered = fetch(`${sy.url}/x`).then(async (res) => ({ status: res.status, body: await res.text() }));
          const heldFor = 300;
          await new Promise((resolve) => setTimeout(resolve, heldFor)); // how long connecting is held up, not a wait for an event
          python.stdin!.write('go\n');
          assert.deepEqual(await answered, { status: 200, body: 'ok' });
          const line = sy.logs.find((l) => l.msg === 'slow request');
          assert.ok(line, 'a slow request line');
          const timings = line.timings as Record<string, number>;
          assert.ok(timings.connect! >= heldFor, `connect ${timings.connect} ms covers the ${heldFor} ms the listener did not accept`);
          assert.ok(timings.firstByte! < timings.connect!, `first byte ${timings.firstByte} ms is counted after the connection was up`);
          assert.ok(timings.connect! + timings.firstByte! <= timings.total!);
        } finally {
          await sy.stop();
        }
      } finally {
        filler.destroy();
        python.stdin!.end();
        python.kill();
        await exited;
      }
    });
  }

  test('an upstream failure is logged however fast, with the phases it reached', async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const sy = await startSwitchyard({
      server: { store: 'memory://' },
      routes: [{ name: 'dead', match: { pathPrefix: '/' }, upstreams: [{ url: dead }] }],
      plugins: [{ name: 'metrics', options: { slowLog: { thresholdMs: 600000 } } }],
    });
    try {
      assert.equal(await get(`${sy.url}/x`), 502);
      const line = sy.logs.find((l) => l.msg === 'upstream failed');
      assert.ok(line);
      assert.equal(line.code, 'SY_ERR_UPSTREAM_UNREACHABLE');
      assert.equal(line.status, 502);
      const t = line.timings as Record<string, number | undefined>;
      assert.equal(typeof t.select, 'number');
      assert.equal(t.firstByte, undefined, 'no response head came');
    } finally {
      await sy.stop();
    }
  });
});
