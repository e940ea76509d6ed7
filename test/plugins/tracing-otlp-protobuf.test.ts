// plugins/tracing/otlp-protobuf.ts against OpenTelemetry's own protobuf serializer: for spans of
// every shape the SDK makes (and the value kinds only hand-built spans carry), the bytes must be
// the library's, byte for byte. The exporter tests (tracing.test.ts) decode the same bytes with
// protobufjs in a fake collector.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { context, SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes, type SpanContext } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { serializeSpans } from '../../plugins/tracing/otlp-protobuf.js';

function theLibrarys(spans: ReadableSpan[]): Buffer {
  return Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);
}

function assertSameBytes(spans: ReadableSpan[]): void {
  const ours = Buffer.from(serializeSpans(spans));
  const expected = theLibrarys(spans);
  const at = ours.findIndex((byte, i) => byte !== expected[i]);
  assert.ok(ours.equals(expected), `${ours.length} bytes against the library's ${expected.length}; first difference at byte ${at}`);
}

/** A provider whose ended spans land in the returned list. */
function recorder(serviceName: string, attributes: Attributes = {}): { provider: BasicTracerProvider; ended: () => ReadableSpan[] } {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName, ...attributes }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
    spanLimits: { attributeValueLengthLimit: Infinity, attributeCountLimit: 1000 },
  });
  return { provider, ended: () => exporter.getFinishedSpans() };
}

const STRINGS: Record<string, string> = {
  empty: '',
  ascii: 'GET /3/movie/550',
  'one-byte length, longest': 'x'.repeat(42),
  'one-byte length by bytes, not by reserve': 'y'.repeat(127),
  'two-byte length': 'z'.repeat(128),
  'three-byte length': 'u'.repeat(20_000),
  latin1: 'Ça coûte 5 €',
  cjk: '日本語のタイトル',
  // 150 bytes in 50 characters: the one-byte length a short string is written behind is too small.
  'cjk, longer in bytes than its reserve': '日'.repeat(50),
  emoji: 'ok 😀 👍🏽',
  'lone surrogate': 'bad \ud800 half',
  'long url': `http://127.0.0.1:8080/3/search/movie?query=${'amélie '.repeat(40)}`,
  // A concatenation and a slice, the representations the proxy's strings often come in.
  cons: ['x-forwarded-', 'for: ', '203.0.113.7'].join(''),
  sliced: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36'.slice(8, 40),
};

const NUMBERS: Record<string, number> = {
  zero: 0, one: 1, 'varint edge': 127, 'two-byte varint': 128, 'int32 max': 2 ** 31 - 1, 'uint32 max': 2 ** 32 - 1,
  'past 32 bits': 2 ** 32, 'forty bits': 2 ** 40 + 12345, 'past 2^53': 2 ** 60, 'int64 max double': 2 ** 63 - 1024,
  'minus one': -1, 'minus 2^40': -(2 ** 40) - 7, 'int64 min': -(2 ** 63), 'negative zero': -0,
  half: 0.5, 'out of int64': 2 ** 64, 'negative double': -123.456, nan: Number.NaN, infinity: Number.POSITIVE_INFINITY,
};

describe('tracing: the one-pass OTLP protobuf serializer writes the library\'s bytes', () => {
  test('a server span and its client span as the plugin makes them, with events, and a remote parent', () => {
    const { provider, ended } = recorder('switchyard');
    const tracer = provider.getTracer('switchyard', '0.1.0');
    const remote: SpanContext = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState: new TraceState('vendor=abc,other=x-1') };
    const parent = trace.setSpanContext(context.active(), remote);
    const server = tracer.startSpan('GET movies', { kind: SpanKind.SERVER, attributes: { 'http.request.method': 'GET', 'url.path': '/3/movie/550' } }, parent);
    server.setAttribute('http.response.status_code', 200);
    server.setAttribute('client.address', '127.0.0.1');
    server.addEvent('switchyard.cache.hit', { 'switchyard.stage': 'cacheLookup' });
    server.addEvent('no attributes');
    const client = tracer.startSpan('GET', { kind: SpanKind.CLIENT, attributes: { 'server.address': '127.0.0.1', 'server.port': 43117, 'url.full': STRINGS['long url']! } }, trace.setSpan(context.active(), server));
    client.setStatus({ code: SpanStatusCode.ERROR, message: 'SY_ERR_UPSTREAM_UNREACHABLE: connect ECONNREFUSED' });
    client.end();
    server.setStatus({ code: SpanStatusCode.OK });
    server.end();
    const internal = tracer.startSpan('internal, no parent', { kind: SpanKind.INTERNAL });
    internal.end();
    assertSameBytes(ended());
  });

  test('strings of every length class and script, numbers of every encoding, booleans and arrays', () => {
    const { provider, ended } = recorder('switchyard', { 'host.name': 'proxy-1' });
    const span = provider.getTracer('t').startSpan('values');
    for (const [name, value] of Object.entries(STRINGS)) span.setAttribute(`s.${name}`, value);
    for (const [name, value] of Object.entries(NUMBERS)) span.setAttribute(`n.${name}`, value);
    span.setAttributes({ 'b.true': true, 'b.false': false, 'a.strings': ['a', 'é', ''], 'a.ints': [1, -1, 2 ** 40], 'a.doubles': [0.25, -3.5], 'a.bools': [true, false], 'a.with null': ['x', null, 'y'], 'a.empty': [] });
    span.addEvent('event with every kind', { s: STRINGS.emoji, n: -5, d: 1.25, b: true, a: ['q'] });
    span.end();
    assertSameBytes(ended());
  });

  test('links, trace state on the span, and kinds of every value', () => {
    const { provider, ended } = recorder('switchyard');
    const tracer = provider.getTracer('links', '2.0.0');
    const linked: SpanContext = { traceId: 'ffffffffffffffffffffffffffffffff', spanId: '0000000000000001', traceFlags: TraceFlags.NONE, isRemote: false, traceState: new TraceState('a=1') };
    for (const kind of [SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER]) {
      const span = tracer.startSpan(`kind ${kind}`, { kind, links: [{ context: linked, attributes: { why: 'batch' } }, { context: { ...linked, isRemote: true } }] });
      span.end();
    }
    assertSameBytes(ended());
  });

  test('several resources and scopes, interleaved, group as the library groups them', () => {
    const first = recorder('first');
    const second = recorder('second', { 'deployment.environment.name': 'prod' });
    const spans: ReadableSpan[] = [];
    for (let i = 0; i < 6; i++) {
      const { provider } = i % 2 === 0 ? first : second;
      const span = provider.getTracer(i % 3 === 0 ? 'scope-a' : 'scope-b', i % 3 === 0 ? undefined : '1.2.3', { schemaUrl: i === 1 ? 'https://opentelemetry.io/schemas/1.26.0' : undefined }).startSpan(`span ${i}`);
      span.end();
    }
    spans.push(...first.ended(), ...second.ended());
    spans.sort((a, b) => a.name.localeCompare(b.name)); // interleave the two resources again
    assertSameBytes(spans);
  });

  test('value kinds only a hand-built span carries: bytes, nested arrays, key-value lists, undefined', () => {
    const { provider, ended } = recorder('switchyard');
    provider.getTracer('t').startSpan('model').end();
    const [base] = ended();
    const handMade = Object.create(base!, {
      attributes: { value: { bytes: new Uint8Array([0, 1, 254, 255]), nested: [['a', 1], [true]], kv: { inner: 'v', deeper: { n: 2 }, list: [1.5] }, missing: undefined, fn: () => 1 } },
      endTime: { value: [2 ** 33, 999_999_999] },
      startTime: { value: [1_764_950_400, 123] },
    }) as ReadableSpan;
    assertSameBytes([handMade]);
  });

  test('ids in upper and mixed case as the library reads them; an id that is not hex, zeros from its first bad digit', () => {
    const { provider, ended } = recorder('switchyard');
    provider.getTracer('t').startSpan('model').end();
    const [base] = ended();
    const withIds = (traceId: string, spanId: string, parentId?: string): ReadableSpan => Object.create(base!, {
      spanContext: { value: () => ({ traceId, spanId, traceFlags: TraceFlags.SAMPLED }) },
      parentSpanContext: { value: parentId === undefined ? undefined : { traceId, spanId: parentId, traceFlags: TraceFlags.SAMPLED } },
    }) as ReadableSpan;
    assertSameBytes([withIds('0AF7651916CD43DD8448EB211C80319C', 'B7AD6B7169203331', '00F067aa0BA902B7'), withIds('0af7651916cd43dd8448eb211c80319c', 'ffffffffffffffff', 'FFFFFFFF00000001')]);
    // Not hex: the bytes before the bad digit's pair, then zeros, at the id's length.
    const bad = Buffer.from(serializeSpans([withIds('0af7651916cd43dd8448eb211c80319g', 'b7ad6b71692033x1')]));
    const expectedTraceId = Buffer.concat([Buffer.from('0af7651916cd43dd8448eb211c8031', 'hex'), Buffer.alloc(1)]);
    const expectedSpanId = Buffer.concat([Buffer.from('b7ad6b71692033', 'hex'), Buffer.alloc(1)]);
    assert.ok(bad.includes(Buffer.concat([Buffer.from([0x0a, 16]), expectedTraceId, Buffer.from([0x12, 8]), expectedSpanId])), bad.toString('hex'));
  });

  test('timestamps whose nanoseconds carry from the low word into the high one', () => {
    const { provider, ended } = recorder('switchyard');
    provider.getTracer('t').startSpan('model').end();
    const [base] = ended();
    const times: Array<[number, number]> = [[1_700_000_000, 0], [1_764_950_401, 999_999_999], [65_536, 999_999_999], [0, 1], [2 ** 32 - 1, 999_999_999]];
    const spans = times.map(([seconds, nanos]) => Object.create(base!, {
      startTime: { value: [seconds, nanos] },
      endTime: { value: [seconds + 1, nanos] },
      events: { value: [{ name: 'at', time: [seconds, nanos], droppedAttributesCount: 0 }] },
    }) as ReadableSpan);
    assertSameBytes(spans);
  });

  test('more distinct keys and names than the cache of recurring strings keeps, written twice', () => {
    const { provider, ended } = recorder('switchyard');
    const tracer = provider.getTracer('t');
    for (let i = 0; i < 3; i++) {
      const span = tracer.startSpan(`span ${i} ${'é'.repeat(i * 100)}`);
      span.setAttribute(`long key ${'k'.repeat(200)} ${i}`, 'past the length a recurring string is kept at');
      for (let k = 0; k < 600; k++) span.setAttribute(`key.${i}.${k}`, k);
      span.end();
    }
    assertSameBytes(ended());
    assertSameBytes(ended());
  });

  test('a batch past the size whose buffer is kept, then a small one', () => {
    const { provider, ended } = recorder('switchyard');
    const tracer = provider.getTracer('t');
    for (let i = 0; i < 5; i++) tracer.startSpan(`big ${i}`, { attributes: { body: String(i).repeat(1024 * 1024) } }).end();
    assertSameBytes(ended());
    const [first] = ended();
    assertSameBytes([first!]);
    // A batch that fits the fresh first-size buffer: its times and flags must land in it.
    const small = tracer.startSpan('small after big', { attributes: { n: 1.5 } });
    small.end();
    assertSameBytes(ended().slice(-1));
  });

  test('a batch past the buffer\'s first 64 KiB, and each result kept after the next call', () => {
    const { provider, ended } = recorder('switchyard');
    const tracer = provider.getTracer('switchyard');
    for (let i = 0; i < 512; i++) {
      const span = tracer.startSpan(`GET route-${i}`, { kind: SpanKind.SERVER });
      span.setAttributes({ 'url.full': `http://127.0.0.1:9/${'p'.repeat(i % 300)}?i=${i}`, 'user_agent.original': STRINGS.sliced!, 'http.response.body.size': i * 1000 });
      span.end();
    }
    const spans = ended();
    const big = serializeSpans(spans);
    assert.ok(big.length > 128 * 1024, `${big.length} bytes`);
    const kept = Buffer.from(big);
    const small = serializeSpans(spans.slice(0, 3));
    assert.ok(Buffer.from(big).equals(kept), 'the first result was not overwritten by the second call');
    assert.ok(Buffer.from(small).equals(theLibrarys(spans.slice(0, 3))));
    assertSameBytes(spans);
  });
});
