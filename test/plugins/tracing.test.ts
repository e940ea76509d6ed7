// The tracing plugin against a fake OTLP collector on 127.0.0.1: spans and their links for a
// retried request, trace context continued and handed upstream, sampling, the collector down or
// hanging, protobuf and JSON, configuration from options and the OTEL_* environment, and
// ctx.span for other plugins.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { definePlugin, type PluginDefinition } from '../../core/index.js';
import { resolveSettings, type TracingOptions } from '../../plugins/tracing/settings.js';
import { startProxy as startSwitchyard, startUpstream, stopAll, type RunningProxy, type RunningUpstream } from '../../testing/index.js';
import { KEYS, startFakeProvider } from '../helpers/ai-providers.js';
import { startCollector, type CollectedSpan, type Collector } from '../helpers/otlp-collector.js';
import { createTestCa } from '../helpers/tls.js';
import { closedPort } from '../helpers/wire.js';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;
const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

let upstream: RunningUpstream;
let collector: Collector;

before(async () => {
  upstream = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '11' });
    res.end('{"ok":true}');
  });
  collector = await startCollector();
});
after(async () => {
  await stopAll();
  await collector.close();
});

/** The tracing plugin's options for tests: the fake collector, JSON, batches out at once. */
function tracing(options: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'tracing', options: { endpoint: collector.url, protocol: 'http/json', serviceName: 'edge', batch: { scheduleDelayMs: 10 }, ...options } };
}

function config(plugins: unknown[], upstreams: Record<string, unknown>[] = [{ url: upstream.url }], routePlugins: unknown[] = []): Record<string, unknown> {
  return {
    server: { store: 'memory://', accessLog: true },
    routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams, plugins: routePlugins }],
    plugins,
  };
}

/** The spans of one trace, once `count` of them have arrived. */
async function traceOf(traceId: string, count: number): Promise<CollectedSpan[]> {
  for (;;) {
    const spans = collector.spans.filter((span) => span.traceId === traceId);
    if (spans.length >= count) return spans;
    await collector.nextExport();
  }
}

/** The trace id the access log line of the request with this id names. */
async function loggedTraceId(sy: RunningProxy, requestId: string): Promise<string> {
  const line = await sy.waitForLog((l) => l.msg === 'request' && l.requestId === requestId);
  assert.match(String(line.traceId), /^[0-9a-f]{32}$/);
  return line.traceId as string;
}

const parentOf = (traceparent: unknown) => String(traceparent).split('-')[2];

describe('spans of a request', { timeout: 60000 }, () => {
  test('a retried request on a balanced route makes one server span and a client span per attempt, each a child of the server span', async () => {
    const dead = await closedPort();
    const sy = await startSwitchyard(config(
      [tracing()],
      [{ url: `http://127.0.0.1:${dead}`, priority: 0 }, { url: upstream.url, priority: 1 }],
      [{ name: 'balancer', options: { algorithm: 'priority' } }, { name: 'retry', options: { retries: 1, backoff: { base: 1, max: 1 } } }],
    ));
    const seenBefore = upstream.requests.length;
    const res = await fetch(`${sy.url}/items/7?key=secret`, { headers: { 'user-agent': 'trace-test/1.0' } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true });
    const requestId = res.headers.get('x-request-id')!;
    const traceId = await loggedTraceId(sy, requestId);
    const spans = await traceOf(traceId, 3);
    assert.equal(spans.length, 3);

    const server = spans.find((s) => s.kind === SERVER)!;
    assert.equal(server.name, 'GET main');
    assert.equal(server.parentSpanId, '', 'a request without trace context starts a trace');
    assert.equal(server.serviceName, 'edge');
    assert.equal(server.attributes['http.request.method'], 'GET');
    assert.equal(server.attributes['http.route'], 'main');
    assert.equal(server.attributes['http.response.status_code'], 200);
    assert.equal(server.attributes['http.response.body.size'], 11);
    assert.equal(server.attributes['url.path'], '/items/7');
    assert.equal(server.attributes['client.address'], '127.0.0.1');
    assert.equal(server.attributes['user_agent.original'], 'trace-test/1.0');
    assert.equal(server.attributes['switchyard.request_id'], requestId);
    assert.equal(server.attributes['error.type'], undefined, 'the retry succeeded: the request did not fail');
    assert.notEqual(server.statusCode, ERROR);

    const clients = spans.filter((s) => s.kind === CLIENT);
    assert.equal(clients.length, 2);
    for (const client of clients) assert.equal(client.parentSpanId, server.spanId);
    const [first, second] = [clients.find((c) => c.attributes['server.port'] === dead)!, clients.find((c) => c.attributes['server.port'] === upstream.port)!];
    assert.equal(first.name, 'GET');
    assert.equal(first.attributes['switchyard.attempt.outcome'], 'failure');
    assert.equal(first.attributes['error.type'], 'SY_ERR_UPSTREAM_UNREACHABLE');
    assert.equal(first.attributes['switchyard.error.code'], 'SY_ERR_UPSTREAM_UNREACHABLE');
    assert.equal(first.attributes['server.address'], '127.0.0.1');
    assert.equal(first.statusCode, ERROR);
    assert.equal(second.attributes['switchyard.attempt.outcome'], 'success');
    assert.equal(second.attributes['http.response.status_code'], 200);
    assert.equal(second.attributes['http.request.resend_count'], 1);
    assert.equal(second.attributes['url.full'], `${upstream.url}/items/7`, 'no query: it may carry a key');
    assert.notEqual(second.statusCode, ERROR);

    // The upstream's spans join the trace under the attempt that reached it.
    const received = upstream.requests.slice(seenBefore);
    assert.equal(received.length, 1);
    assert.equal(received[0]!.headers.traceparent, `00-${traceId}-${second.spanId}-01`);
    for (const span of spans) assert.ok(!JSON.stringify(span).includes('secret'), 'the query never reaches a span');
  });

  test('an incoming traceparent is continued, its tracestate goes on, and the upstream gets the proxy\'s span as parent', async () => {
    const sy = await startSwitchyard(config([tracing()]));
    const seenBefore = upstream.requests.length;
    const res = await fetch(`${sy.url}/continue`, { headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`, tracestate: 'rojo=00f067aa0ba902b7' } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(await loggedTraceId(sy, res.headers.get('x-request-id')!), CALLER_TRACE);
    const spans = await traceOf(CALLER_TRACE, 2);
    const server = spans.find((s) => s.kind === SERVER)!;
    const client = spans.find((s) => s.kind === CLIENT)!;
    assert.equal(server.parentSpanId, CALLER_SPAN);
    assert.equal(client.parentSpanId, server.spanId);
    const sent = upstream.requests[seenBefore]!.headers;
    assert.equal(sent.traceparent, `00-${CALLER_TRACE}-${client.spanId}-01`);
    assert.notEqual(parentOf(sent.traceparent), CALLER_SPAN);
    assert.equal(sent.tracestate, 'rojo=00f067aa0ba902b7');
  });

  test('a traceparent with an all-zero trace or span id (W3C\'s invalid ids) starts a trace of the proxy\'s own', async () => {
    const sy = await startSwitchyard(config([tracing()]));
    for (const invalid of [`00-${'0'.repeat(32)}-${CALLER_SPAN}-01`, `00-${CALLER_TRACE}-${'0'.repeat(16)}-01`]) {
      const seenBefore = upstream.requests.length;
      const res = await fetch(`${sy.url}/invalid-parent`, { headers: { traceparent: invalid } });
      await res.arrayBuffer();
      const traceId = await loggedTraceId(sy, res.headers.get('x-request-id')!);
      assert.notEqual(traceId, '0'.repeat(32), invalid);
      assert.notEqual(traceId, CALLER_TRACE, invalid);
      const server = (await traceOf(traceId, 2)).find((s) => s.kind === SERVER)!;
      assert.equal(server.parentSpanId, '', `${invalid}: a root span`);
      assert.equal(String(upstream.requests[seenBefore]!.headers.traceparent).split('-')[1], traceId);
    }
  });

  test('B3 in, B3 and traceparent out when b3 is on', async () => {
    const sy = await startSwitchyard(config([tracing({ b3: 'single' })]));
    const seenBefore = upstream.requests.length;
    const b3Trace = '80f198ee56343ba864fe8b2a57d3eff7';
    const res = await fetch(`${sy.url}/b3`, { headers: { b3: `${b3Trace}-e457b5a2e4d86bd1-1` } });
    await res.arrayBuffer();
    const spans = await traceOf(b3Trace, 2);
    const client = spans.find((s) => s.kind === CLIENT)!;
    assert.equal(spans.find((s) => s.kind === SERVER)!.parentSpanId, 'e457b5a2e4d86bd1');
    const sent = upstream.requests[seenBefore]!.headers;
    assert.equal(sent.b3, `${b3Trace}-${client.spanId}-1`);
    assert.equal(sent.traceparent, `00-${b3Trace}-${client.spanId}-01`);
  });

  test('a reload that turns B3 and JSON export on: the old config\'s spans go out in its protobuf, the new one\'s in JSON', async () => {
    const sy = await startSwitchyard(config([tracing({ protocol: 'http/protobuf', b3: 'off', batch: { scheduleDelayMs: 60_000 } })]));
    const before = await fetch(`${sy.url}/before-reload`);
    await before.arrayBuffer();
    assert.equal(upstream.requests.at(-1)!.headers.b3, undefined);
    sy.writeConfig(config([tracing({ protocol: 'http/json', b3: 'single' })]));
    assert.deepEqual(await sy.yard.reload(), { ok: true });
    const after = await fetch(`${sy.url}/after-reload`);
    assert.equal(after.status, 200);
    await after.arrayBuffer();
    const afterTrace = await loggedTraceId(sy, after.headers.get('x-request-id')!);
    const client = (await traceOf(afterTrace, 2)).find((s) => s.kind === CLIENT)!;
    assert.equal(upstream.requests.at(-1)!.headers.b3, `${afterTrace}-${client.spanId}-1`);
    // The old config's queue, held by its minute-long delay, was sent when the reload retired it.
    const beforeTrace = await loggedTraceId(sy, before.headers.get('x-request-id')!);
    await traceOf(beforeTrace, 2);
    const formatOf = (traceId: string) => collector.exports.find((e) => e.spans.some((span) => span.traceId === traceId))!.contentType;
    assert.equal(formatOf(beforeTrace), 'application/x-protobuf');
    assert.equal(formatOf(afterTrace), 'application/json');
  });

  test('a refusal, a rate-limit block and a cache hit are events on the server span; plugins add attributes through ctx.span', async () => {
    const stamp = definePlugin({
      name: 'stamp',
      schema: { type: 'object' },
      errors: { STAMP_ERR_CLOSED: { status: 403, message: 'closed for the test' } },
      setup(api) {
        api.hooks.access.tap('stamp', (ctx) => {
          ctx.span.setAttribute('stamp.seen', true);
          // A key the tracing plugin sets itself later: the span must still carry it once.
          ctx.span.setAttribute('http.response.status_code', 299);
          ctx.span.addEvent('stamp.looked', { 'stamp.path': ctx.pathname });
          return ctx.pathname === '/refuse' ? ctx.refuse('STAMP_ERR_CLOSED') : undefined;
        });
      },
    }) as PluginDefinition<never>;
    const sy = await startSwitchyard({
      server: { store: 'memory://', accessLog: true },
      routes: [
        { name: 'limited', match: { pathPrefix: '/limited' }, upstreams: [{ url: upstream.url }], plugins: [{ name: 'rate-limit', options: { limits: [{ count: 1, window: '1m' }] } }] },
        { name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }], plugins: [{ name: 'cache', options: { ttl: 60 } }] },
      ],
      // protobuf: the plugin's serializer writes the span's keys as recorded (JSON's goes through an object).
      plugins: [tracing({ protocol: 'http/protobuf' }), { name: 'stamp' }],
    }, { plugins: { stamp } });
    const request = async (path: string, status: number) => {
      const res = await fetch(`${sy.url}${path}`);
      assert.equal(res.status, status, path);
      await res.arrayBuffer();
      return { res, traceId: await loggedTraceId(sy, res.headers.get('x-request-id')!) };
    };
    const serverSpan = async (traceId: string) => (await traceOf(traceId, 1)).find((s) => s.kind === SERVER)!;

    const refused = await serverSpan((await request('/refuse', 403)).traceId);
    assert.equal(refused.attributes['stamp.seen'], true);
    assert.equal(refused.attributes['http.response.status_code'], 403, 'the status the client got');
    assert.deepEqual(refused.repeatedKeys, []);
    assert.deepEqual(refused.events.map((e) => e.name), ['stamp.looked', 'switchyard.refused', 'switchyard.answered']);
    assert.equal(refused.events[1]!.attributes['switchyard.error.code'], 'STAMP_ERR_CLOSED');
    assert.equal(refused.events[2]!.attributes['switchyard.stage'], 'access');

    await request('/limited', 200);
    const blocked = await serverSpan((await request('/limited', 429)).traceId);
    const block = blocked.events.find((e) => e.name === 'switchyard.refused')!;
    assert.equal(block.attributes['switchyard.error.code'], 'SY_ERR_RATE_LIMITED');
    assert.equal(block.attributes['http.response.status_code'], 429);

    // The entry is stored once the first response is over: asked again until a hit, a few times at most.
    let hit: { res: Response; traceId: string } | undefined;
    for (let i = 0; i < 10 && hit === undefined; i++) {
      const answer = await request('/cached', 200);
      if (answer.res.headers.get('x-cache') === 'HIT') hit = answer;
    }
    assert.ok(hit, 'the cache answered');
    const hitSpan = await serverSpan(hit.traceId);
    assert.ok(hitSpan.events.some((e) => e.name === 'switchyard.cache.hit'), JSON.stringify(hitSpan.events));
    assert.equal((await traceOf(hit.traceId, 1)).filter((s) => s.kind === CLIENT).length, 0, 'a hit asks no upstream');
  });
});

describe('sampling', { timeout: 60000 }, () => {
  test('at ratio 0 nothing is exported, the upstream is told "not sampled", and a caller\'s sampled trace is still followed', async () => {
    const sy = await startSwitchyard(config([tracing({ sampleRatio: 0 })]));
    const exportsBefore = collector.spans.length;
    const seenBefore = upstream.requests.length;
    const told: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${sy.url}/unsampled/${i}`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      const sent = String(upstream.requests[seenBefore + i]!.headers.traceparent);
      assert.match(sent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      assert.equal(sent.split('-')[1], await loggedTraceId(sy, res.headers.get('x-request-id')!), 'the log names the trace the upstream was told');
      told.push(sent);
    }
    assert.equal(new Set(told.map((t) => t.split('-')[1])).size, 5, 'each request is a trace of its own');
    assert.equal(new Set(told.map((t) => t.split('-')[2])).size, 5, 'and names a parent of its own');
    const caller = await fetch(`${sy.url}/caller-sampled`, { headers: { traceparent: `00-${'a'.repeat(32)}-${CALLER_SPAN}-01` } });
    await caller.arrayBuffer();
    // Stopping flushes whatever was queued: after it, the collector has all it will ever get.
    await sy.stop();
    const exported = collector.spans.slice(exportsBefore);
    assert.deepEqual([...new Set(exported.map((s) => s.traceId))], ['a'.repeat(32)]);
    assert.equal(exported.length, 2);
  });

  test('a caller\'s unsampled traceparent goes upstream as it came, its trace is logged and nothing is exported', async () => {
    const sy = await startSwitchyard(config([tracing()]));
    const exportsBefore = collector.spans.length;
    const seenBefore = upstream.requests.length;
    const traceparent = `00-${CALLER_TRACE}-${CALLER_SPAN}-00`;
    const res = await fetch(`${sy.url}/caller-unsampled`, { headers: { traceparent, tracestate: 'rojo=00f067aa0ba902b7' } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(await loggedTraceId(sy, res.headers.get('x-request-id')!), CALLER_TRACE);
    const sent = upstream.requests[seenBefore]!.headers;
    assert.equal(sent.traceparent, traceparent, 'same trace, same parent, flag 00');
    assert.equal(sent.tracestate, 'rojo=00f067aa0ba902b7');
    await sy.stop();
    assert.equal(collector.spans.slice(exportsBefore).filter((s) => s.traceId === CALLER_TRACE).length, 0);
  });

  for (const protocol of ['http/json', 'http/protobuf']) test(`at ratio 0.01 with alwaysSampleErrors a failing request is exported, with its attempt, both marked sampled (${protocol})`, async () => {
    const dead = await closedPort();
    const sy = await startSwitchyard(config([tracing({ sampleRatio: 0.01, alwaysSampleErrors: true, protocol })], [{ url: `http://127.0.0.1:${dead}` }]));
    const exportsBefore = collector.spans.length;
    const bad = await fetch(`${sy.url}/bad`);
    assert.equal(bad.status, 502);
    await bad.arrayBuffer();
    const badTrace = await loggedTraceId(sy, bad.headers.get('x-request-id')!);
    await sy.stop();
    const spans = collector.spans.slice(exportsBefore).filter((s) => s.traceId === badTrace);
    assert.deepEqual(spans.map((s) => s.kind).sort(), [SERVER, CLIENT]);
    const server = spans.find((s) => s.kind === SERVER)!;
    assert.equal(server.attributes['error.type'], 'SY_ERR_UPSTREAM_UNREACHABLE');
    assert.equal(server.statusCode, ERROR);
    assert.equal(spans.find((s) => s.kind === CLIENT)!.parentSpanId, server.spanId);
    // Recorded unsampled, exported as sampled: a backend drops spans that say otherwise.
    for (const span of spans) assert.equal(span.flags & 0xff, 1, `${span.name}: flags ${span.flags}`);
  });

  test('without parentBased, a caller\'s sampled trace the ratio turns down goes upstream as the same trace, not sampled, under a parent id of this hop', async () => {
    const sy = await startSwitchyard(config([tracing({ sampleRatio: 0.01, parentBased: false })]));
    const exportsBefore = collector.spans.length;
    const seenBefore = upstream.requests.length;
    // The ratio decides on the trace id (OpenTelemetry's formula: its four 32-bit parts xor-ed,
    // below ratio × 2^32): this one's parts xor to 0xffffffff, never sampled below ratio 1.
    const turnedDown = `ffffffff${'0'.repeat(24)}`;
    const res = await fetch(`${sy.url}/turned-down`, { headers: { traceparent: `00-${turnedDown}-${CALLER_SPAN}-01` } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(await loggedTraceId(sy, res.headers.get('x-request-id')!), turnedDown);
    const sent = String(upstream.requests[seenBefore]!.headers.traceparent);
    assert.match(sent, new RegExp(`^00-${turnedDown}-[0-9a-f]{16}-00$`));
    assert.notEqual(parentOf(sent), CALLER_SPAN);
    await sy.stop();
    assert.ok(!collector.spans.slice(exportsBefore).some((s) => s.traceId === turnedDown));
  });

  test('with alwaysSampleErrors an unsampled request that fails is exported, one that succeeds is not', async () => {
    const dead = await closedPort();
    const sy = await startSwitchyard({
      server: { store: 'memory://', accessLog: true },
      routes: [
        { name: 'good', match: { pathPrefix: '/good' }, upstreams: [{ url: upstream.url }] },
        { name: 'bad', match: { pathPrefix: '/bad' }, upstreams: [{ url: `http://127.0.0.1:${dead}` }] },
      ],
      plugins: [tracing({ sampleRatio: 0, alwaysSampleErrors: true })],
    });
    const exportsBefore = collector.spans.length;
    const good = await fetch(`${sy.url}/good`);
    await good.arrayBuffer();
    const goodTrace = await loggedTraceId(sy, good.headers.get('x-request-id')!);
    const bad = await fetch(`${sy.url}/bad`);
    assert.equal(bad.status, 502);
    await bad.arrayBuffer();
    const badTrace = await loggedTraceId(sy, bad.headers.get('x-request-id')!);
    await sy.stop();
    const exported = collector.spans.slice(exportsBefore);
    assert.ok(!exported.some((s) => s.traceId === goodTrace));
    const spans = exported.filter((s) => s.traceId === badTrace);
    assert.deepEqual(spans.map((s) => s.kind).sort(), [SERVER, CLIENT]);
    const server = spans.find((s) => s.kind === SERVER)!;
    assert.equal(server.attributes['error.type'], 'SY_ERR_UPSTREAM_UNREACHABLE');
    assert.equal(server.attributes['http.response.status_code'], 502);
    assert.equal(server.statusCode, ERROR);
  });
});

describe('a collector that is down or hangs', { timeout: 60000 }, () => {
  test('down: clients get the same answers, and the lost spans are counted in /metrics', async () => {
    const port = await closedPort();
    const sy = await startSwitchyard(config([tracing({ endpoint: `http://127.0.0.1:${port}/v1/traces`, timeoutMs: 2000 }), { name: 'metrics', options: { public: true } }]));
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${sy.url}/while-down/${i}`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { ok: true });
    }
    await sy.waitForLog((l) => l.msg === 'could not export spans; dropping them and trying again with the next batch');
    const metrics = await (await fetch(`${sy.url}/metrics`)).text();
    const dropped = Number(/switchyard_tracing_spans_dropped_total\{reason="export_failed"\} (\d+)/.exec(metrics)?.[1]);
    assert.ok(dropped >= 2, metrics.split('\n').filter((l) => l.includes('tracing')).join('\n'));
  });

  test('hanging: requests complete while an export is held open, and the queue stays bounded', async () => {
    collector.mode = 'hang';
    try {
      const sy = await startSwitchyard(config([tracing({ timeoutMs: 60000, batch: { scheduleDelayMs: 1, maxQueueSize: 4, maxExportBatchSize: 2 } }), { name: 'metrics', options: { public: true } }]));
      const held = collector.nextExport();
      const first = await fetch(`${sy.url}/before-hang`);
      await first.arrayBuffer();
      await held;
      assert.ok(collector.held >= 1);
      // The export is held open: every request still completes, and the spans past the queue's bound are dropped.
      for (let i = 0; i < 6; i++) {
        const res = await fetch(`${sy.url}/while-hanging/${i}`);
        assert.equal(res.status, 200);
        assert.deepEqual(await res.json(), { ok: true });
      }
      assert.ok(collector.held >= 1, 'the collector still holds the export');
      const metrics = await (await fetch(`${sy.url}/metrics`)).text();
      const dropped = Number(/switchyard_tracing_spans_dropped_total\{reason="queue_full"\} (\d+)/.exec(metrics)?.[1]);
      assert.ok(dropped >= 1, metrics.split('\n').filter((l) => l.includes('tracing')).join('\n'));
      collector.mode = 'ok';
      collector.release();
      await sy.stop();
    } finally {
      collector.mode = 'ok';
      collector.release();
    }
  });
});

describe('export formats and configuration', { timeout: 60000 }, () => {
  test('http/protobuf sends application/x-protobuf that decodes to the same spans, with OTEL_EXPORTER_OTLP_HEADERS and never logging them', async () => {
    const sy = await startSwitchyard(config([{ name: 'tracing', options: { batch: { scheduleDelayMs: 10 } } }]), {
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url.replace('/v1/traces', ''),
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
        OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20otlp-s3cret,x-tenant=blue',
        OTEL_SERVICE_NAME: 'from-env',
      },
    });
    const seenBefore = upstream.requests.length;
    const res = await fetch(`${sy.url}/proto`);
    await res.arrayBuffer();
    const traceId = await loggedTraceId(sy, res.headers.get('x-request-id')!);
    const spans = await traceOf(traceId, 2);
    const request = collector.exports.find((e) => e.spans.some((s) => s.traceId === traceId))!;
    assert.equal(request.contentType, 'application/x-protobuf');
    assert.equal(request.headers.authorization, 'Bearer otlp-s3cret');
    assert.equal(request.headers['x-tenant'], 'blue');
    const server = spans.find((s) => s.kind === SERVER)!;
    assert.equal(server.name, 'GET main');
    assert.equal(server.serviceName, 'from-env');
    assert.equal(server.attributes['http.response.status_code'], 200);
    const client = spans.find((s) => s.kind === CLIENT)!;
    assert.equal(client.parentSpanId, server.spanId);
    // A new trace's ids reach the serializer as words (ProxySpan.idWords), the upstream as hex.
    assert.equal(upstream.requests.slice(seenBefore)[0]!.headers.traceparent, `00-${traceId}-${client.spanId}-01`);
    assert.ok(sy.logs.some((l) => l.msg === 'tracing requests'));
    assert.ok(!JSON.stringify(sy.logs).includes('s3cret'));
  });

  const base: TracingOptions = { alwaysSampleErrors: false, b3: 'off', batch: { maxQueueSize: 2048, maxExportBatchSize: 512, exportTimeoutMs: 30000 } };

  test('options win over the environment, which wins over the defaults', () => {
    const env = {
      OTEL_SERVICE_NAME: 'env-name', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: 'a=1,b=2', OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25', OTEL_BSP_SCHEDULE_DELAY: '250',
    };
    const fromEnv = resolveSettings(base, env);
    assert.equal(fromEnv.serviceName, 'env-name');
    assert.equal(fromEnv.url, 'http://collector:4318/v1/traces');
    assert.equal(fromEnv.protocol, 'http/json');
    assert.deepEqual(fromEnv.headers, { a: '1', b: '2' });
    assert.equal(fromEnv.sampleRatio, 0.25);
    assert.equal(fromEnv.parentBased, false);
    assert.equal(fromEnv.scheduleDelayMs, 250);

    const fromOptions = resolveSettings({ ...base, serviceName: 'opt', endpoint: 'http://other:4318/custom', protocol: 'http/protobuf', headers: { b: 'x' }, sampleRatio: 0.5, batch: { ...base.batch, scheduleDelayMs: 5 } }, env);
    assert.equal(fromOptions.serviceName, 'opt');
    assert.equal(fromOptions.url, 'http://other:4318/custom');
    assert.equal(fromOptions.protocol, 'http/protobuf');
    assert.deepEqual(fromOptions.headers, { a: '1', b: 'x' });
    assert.equal(fromOptions.sampleRatio, 0.5);
    assert.equal(fromOptions.parentBased, true, 'a ratio given as an option leaves the sampler\'s env alone: parent-based');
    assert.equal(fromOptions.scheduleDelayMs, 5);

    const defaults = resolveSettings(base, {});
    assert.deepEqual([defaults.serviceName, defaults.url, defaults.protocol, defaults.sampleRatio, defaults.parentBased, defaults.scheduleDelayMs], ['switchyard', 'http://localhost:4318/v1/traces', 'http/protobuf', 1, true, 5000]);
    assert.equal(resolveSettings(base, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/x', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://g:2' }).url, 'http://t:1/x');
    assert.equal(resolveSettings(base, { OTEL_TRACES_SAMPLER: 'parentbased_always_off' }).sampleRatio, 0);
  });

  test('an unusable environment value fails the start, naming the variable and not its secret', async () => {
    assert.throws(() => resolveSettings(base, { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), /OTEL_EXPORTER_OTLP_PROTOCOL is "grpc"/);
    assert.throws(() => resolveSettings(base, { OTEL_TRACES_SAMPLER: 'sometimes' }), /OTEL_TRACES_SAMPLER is "sometimes"/);
    assert.throws(() => resolveSettings(base, { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' }), /OTEL_TRACES_SAMPLER_ARG/);
    assert.throws(() => resolveSettings(base, { OTEL_BSP_SCHEDULE_DELAY: 'soon' }), /OTEL_BSP_SCHEDULE_DELAY/);
    await assert.rejects(
      startSwitchyard(config([{ name: 'tracing' }]), { env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url://token-s3cret' } }),
      (err: Error) => /OTEL_EXPORTER_OTLP_ENDPOINT is not a URL/.test(err.message) && !err.message.includes('s3cret'),
    );
  });
});

describe('the export transport', { timeout: 60000 }, () => {
  /** The metric's value for `labels` ('' for none) in /metrics. */
  async function metric(sy: RunningProxy, name: string, labels = ''): Promise<number> {
    const text = await (await fetch(`${sy.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line === undefined ? 0 : Number(line.split(' ')[1]);
  }

  /** Sends one request and returns its trace id, once its two spans reached the collector `times` times. */
  async function tracedRequest(sy: RunningProxy, on: Collector, times = 1): Promise<string> {
    const res = await fetch(`${sy.url}/transport`);
    await res.arrayBuffer();
    const traceId = await loggedTraceId(sy, res.headers.get('x-request-id')!);
    while (on.spans.filter((span) => span.traceId === traceId).length < 2 * times) await on.nextExport();
    return traceId;
  }

  test('a 503 with Retry-After is retried, the spans are counted once; the sender names itself and sends the endpoint\'s user info', async () => {
    collector.scripted.push({ status: 503, headers: { 'retry-after': '0' } });
    const withUser = collector.url.replace('http://', 'http://otlp:s%3Acret@');
    const sy = await startSwitchyard(config([tracing({ protocol: 'http/protobuf', endpoint: withUser }), { name: 'metrics', options: { public: true } }]));
    const traceId = await tracedRequest(sy, collector, 2);
    const tries = collector.exports.filter((e) => e.spans.some((s) => s.traceId === traceId));
    assert.equal(tries.length, 2, 'the refused export, then the same spans again');
    assert.deepEqual(tries[1]!.spans.map((s) => s.spanId).sort(), tries[0]!.spans.map((s) => s.spanId).sort());
    assert.equal(tries[0]!.headers['user-agent'], 'Switchyard-OTLP-Exporter');
    assert.equal(tries[0]!.headers.authorization, `Basic ${Buffer.from('otlp:s:cret').toString('base64')}`, 'the endpoint\'s user info, as node:http sent it');
    assert.ok(!JSON.stringify(sy.logs).includes('cret'), 'never logged');
    assert.equal(await metric(sy, 'switchyard_tracing_spans_exported_total'), 2);
    assert.equal(await metric(sy, 'switchyard_tracing_spans_dropped_total', '{reason="export_failed"}'), 0);
  });

  test('a 400 is not retried: the batch is dropped and counted', async () => {
    collector.scripted.push({ status: 400 });
    const sy = await startSwitchyard(config([tracing(), { name: 'metrics', options: { public: true } }]));
    const res = await fetch(`${sy.url}/refused-batch`);
    await res.arrayBuffer();
    const traceId = await loggedTraceId(sy, res.headers.get('x-request-id')!);
    await sy.waitForLog((l) => l.msg === 'could not export spans; dropping them and trying again with the next batch');
    assert.equal(collector.exports.filter((e) => e.spans.some((s) => s.traceId === traceId)).length, 1);
    assert.equal(await metric(sy, 'switchyard_tracing_spans_dropped_total', '{reason="export_failed"}'), 2);
  });

  test('OTEL_EXPORTER_OTLP_COMPRESSION=gzip sends gzip that decodes to the spans', async () => {
    const sy = await startSwitchyard(config([tracing({ protocol: 'http/protobuf' })]), { env: { OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip' } });
    const traceId = await tracedRequest(sy, collector);
    const request = collector.exports.find((e) => e.spans.some((s) => s.traceId === traceId))!;
    assert.equal(request.headers['content-encoding'], 'gzip');
    assert.equal(request.contentType, 'application/x-protobuf');
  });

  test('an https collector is trusted through OTEL_EXPORTER_OTLP_CERTIFICATE, and refused without it', async () => {
    const ca = createTestCa();
    const certFile = `${ca.dir}/collector.crt`;
    const keyFile = `${ca.dir}/collector.key`;
    ca.issue(certFile, keyFile);
    const secure = await startCollector({ tls: { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') } });
    try {
      const trusted = await startSwitchyard(config([tracing({ endpoint: secure.url })]), { env: { OTEL_EXPORTER_OTLP_CERTIFICATE: ca.caFile } });
      await tracedRequest(trusted, secure);
      const untrusted = await startSwitchyard(config([tracing({ endpoint: secure.url })]));
      await (await fetch(`${untrusted.url}/untrusted`)).arrayBuffer();
      const warned = await untrusted.waitForLog((l) => l.msg === 'could not export spans; dropping them and trying again with the next batch');
      assert.match(String(warned.reason), /certificate/i);
    } finally {
      await secure.close();
    }
  });

  test('an unusable compression or certificate variable fails the start, naming it', () => {
    const base = { alwaysSampleErrors: false, b3: 'off', batch: { maxQueueSize: 2048, maxExportBatchSize: 512, exportTimeoutMs: 30000 } } as TracingOptions;
    assert.throws(() => resolveSettings(base, { OTEL_EXPORTER_OTLP_COMPRESSION: 'br' }), /OTEL_EXPORTER_OTLP_COMPRESSION is "br"; expected gzip or none/);
    assert.throws(() => resolveSettings(base, { OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: '/no/such/ca.pem' }), /OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE names \/no\/such\/ca.pem, which cannot be read: ENOENT/);
    assert.equal(resolveSettings({ ...base, compression: 'none' }, { OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip' }).compression, 'none', 'the option wins');
  });
});

describe('without the plugin', () => {
  test('ctx.span records nothing and costs plugins no check; the access log has no trace id', async () => {
    let recording: boolean | undefined;
    const stamp = definePlugin({
      name: 'stamp-quiet',
      schema: { type: 'object' },
      setup(api) {
        api.hooks.access.tap('stamp-quiet', (ctx) => {
          ctx.span.setAttribute('stamp.seen', true);
          ctx.span.addEvent('stamp.looked');
          recording = ctx.span.isRecording();
          return undefined;
        });
      },
    }) as PluginDefinition<never>;
    const sy = await startSwitchyard(config([{ name: 'stamp-quiet' }]), { plugins: { 'stamp-quiet': stamp } });
    const res = await fetch(`${sy.url}/plain`, { headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(recording, false);
    const line = sy.logs.find((l) => l.msg === 'request' && l.requestId === res.headers.get('x-request-id'));
    assert.ok(line);
    assert.equal(line.traceId, undefined);
  });
});

describe('the ai-gateway preset, traced', { timeout: 60000 }, () => {
  test('a streamed and a whole model call carry the GenAI attributes: model, token usage, time to the first chunk', async () => {
    const fake = await startFakeProvider();
    const token = 'admin-token-for-tracing-tests-0123';
    const gw = await startSwitchyard({ preset: 'ai-gateway', server: { store: 'memory://' } } as unknown as object, {
      env: { ADMIN_TOKEN: token, WEB_PROXY: 'false', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: collector.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '10' },
    });
    try {
      const changed = await fetch(`${gw.url}/api/mappings/openai`, {
        method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ target: fake.url }),
      });
      assert.equal(changed.status, 200);
      await changed.arrayBuffer();
      const client = new OpenAI({ apiKey: KEYS.openai, baseURL: `${gw.url}/openai/v1`, maxRetries: 0 });
      const { data: stream, response } = await client.chat.completions.create({ model: 'gpt-traced', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } }).withResponse();
      let chunks = 0;
      for await (const _chunk of stream) chunks++;
      assert.ok(chunks > 1);
      const streamSpan = (await traceOf(await loggedTraceId(gw, response.headers.get('x-request-id')!), 2)).find((s) => s.kind === SERVER)!;
      assert.equal(streamSpan.attributes['gen_ai.response.model'], 'gpt-traced');
      assert.equal(streamSpan.attributes['gen_ai.usage.input_tokens'], 11);
      assert.ok(Number(streamSpan.attributes['gen_ai.usage.output_tokens']) > 0);
      const firstChunk = Number(streamSpan.attributes['gen_ai.response.time_to_first_chunk']);
      assert.ok(firstChunk > 0 && firstChunk < 60, String(firstChunk));

      const { data: whole, response: wholeResponse } = await client.chat.completions.create({ model: 'gpt-whole', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
      assert.equal(whole.model, 'gpt-whole');
      const wholeSpan = (await traceOf(await loggedTraceId(gw, wholeResponse.headers.get('x-request-id')!), 2)).find((s) => s.kind === SERVER)!;
      assert.equal(wholeSpan.attributes['gen_ai.response.model'], 'gpt-whole');
      assert.equal(wholeSpan.attributes['gen_ai.usage.input_tokens'], 11);
      assert.equal(wholeSpan.attributes['gen_ai.response.time_to_first_chunk'], undefined, 'not a stream');
      assert.ok(!JSON.stringify(collector.spans).includes(KEYS.openai), 'the client\'s key is in no span');
    } finally {
      await gw.stop();
      await fake.close();
    }
  });
});

describe('examples/tracing', { timeout: 60000 }, () => {
  test('its Switchyard config starts and traces to the collector the OTEL_* variables name', async () => {
    const file = readFileSync(new URL('../../../examples/tracing/switchyard.yaml', import.meta.url), 'utf8');
    const sy = await startSwitchyard(file.replace(/port: 8080/, 'port: 0'), {
      env: { BACKEND_URL: upstream.url, OTEL_SERVICE_NAME: 'switchyard-edge', OTEL_EXPORTER_OTLP_ENDPOINT: collector.url.replace('/v1/traces', ''), OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '10' },
    });
    const res = await fetch(`${sy.url}/example`, { headers: { traceparent: `00-${'e'.repeat(32)}-${CALLER_SPAN}-01` } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const spans = await traceOf('e'.repeat(32), 2);
    assert.equal(spans.find((s) => s.kind === SERVER)!.serviceName, 'switchyard-edge');
    assert.equal(spans.find((s) => s.kind === SERVER)!.name, 'GET api');
    await sy.stop();
  });
});
