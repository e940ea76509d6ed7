// The plugin's own spans (plugins/tracing/span.ts) against the OpenTelemetry SDK's: the same
// operations give the same attributes, events, limits and status, and both of OpenTelemetry's
// serializers and the plugin's write them as they write the SDK's spans.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpanKind, SpanStatusCode, TraceFlags, type SpanContext } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { keptEncodings, serializeSpans } from '../../plugins/tracing/otlp-protobuf.js';
import { resolveSettings, type TracingOptions } from '../../plugins/tracing/settings.js';
import { clock, ProxySpan, type SpanLimitSettings, type SpanSource } from '../../plugins/tracing/span.js';

const RESOURCE = resourceFromAttributes({ 'service.name': 'span-test' });

function source(limits: Partial<SpanLimitSettings> = {}): SpanSource & { ended: ReadableSpan[] } {
  const ended: ReadableSpan[] = [];
  return {
    resource: RESOURCE,
    instrumentationScope: { name: 'switchyard' },
    limits: { attributeCountLimit: 128, attributeValueLengthLimit: Infinity, eventCountLimit: 128, attributePerEventCountLimit: 128, ...limits },
    onEnd: (span) => ended.push(span),
    ended,
  };
}

const PARENT: SpanContext = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState: new TraceState('vendor=value') };
const OWN: SpanContext = { traceId: PARENT.traceId, spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED, traceState: PARENT.traceState };

function proxySpan(limits?: Partial<SpanLimitSettings>): { span: ProxySpan; ended: ReadableSpan[] } {
  const from = source(limits);
  return { span: new ProxySpan(OWN, 'GET movies', SpanKind.SERVER, PARENT, clock.now(), from), ended: from.ended };
}

/** An SDK span with the same limits, in the same trace. */
function sdkSpan(limits: Partial<SpanLimitSettings> = {}): { span: ReturnType<ReturnType<BasicTracerProvider['getTracer']>['startSpan']>; ended: () => ReadableSpan[] } {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ resource: RESOURCE, spanProcessors: [new SimpleSpanProcessor(exporter)], spanLimits: { attributeCountLimit: 128, attributeValueLengthLimit: Infinity, eventCountLimit: 128, attributePerEventCountLimit: 128, ...limits } });
  const span = provider.getTracer('switchyard').startSpan('GET movies', { kind: SpanKind.SERVER });
  return { span, ended: () => exporter.getFinishedSpans() };
}

/** What other plugins may throw at ctx.span: good values, bad ones, a key set twice. */
function exercise(target: { setAttribute(key: string, value: never): unknown; setAttributes(attributes: never): unknown; addEvent(name: string, attributes?: never): unknown }): void {
  target.setAttribute('gen_ai.request.model' as string, 'gpt-4o-mini' as never);
  target.setAttribute('gen_ai.usage.input_tokens', 12 as never);
  target.setAttribute('', 'empty key' as never);
  target.setAttribute('nothing', null as never);
  target.setAttribute('undefined', undefined as never);
  target.setAttribute('an object', { a: 1 } as never);
  target.setAttribute('mixed array', ['a', 1] as never);
  target.setAttribute('strings', ['a', null, 'bc'] as never);
  target.setAttribute('flag', true as never);
  target.setAttribute('gen_ai.request.model', 'gpt-4o' as never);
  target.setAttributes({ 'a.b': 'c', 'n': 1.5, skipped: undefined } as never);
  target.addEvent('switchyard.refused', { 'switchyard.error.code': 'SY_ERR_AUTH', bad: { x: 1 }, 'http.response.status_code': 401 } as never);
}

describe('the plugin\'s spans', () => {
  test('take attributes and events as the SDK\'s spans do: checks, order, a key set again', () => {
    const ours = proxySpan();
    const theirs = sdkSpan();
    exercise(ours.span);
    exercise(theirs.span);
    ours.span.end();
    theirs.span.end();
    const [sdk] = theirs.ended();
    assert.deepEqual(Object.entries(ours.span.attributes), Object.entries(sdk!.attributes), 'same keys, same values, same order');
    assert.equal(ours.span.droppedAttributesCount, sdk!.droppedAttributesCount);
    assert.deepEqual(ours.span.events.map((e) => [e.name, e.attributes, e.droppedAttributesCount]), sdk!.events.map((e) => [e.name, e.attributes, e.droppedAttributesCount]));
    assert.equal(ours.ended.length, 1, 'handed on once, when it ended');
  });

  test('keep the SDK\'s limits: attribute count, value length (strings and string arrays), events, attributes per event', () => {
    const limits = { attributeCountLimit: 3, attributeValueLengthLimit: 4, eventCountLimit: 2, attributePerEventCountLimit: 1 };
    const ours = proxySpan(limits);
    const theirs = sdkSpan(limits);
    for (const target of [ours.span, theirs.span]) {
      target.setAttribute('one', 'abcdefgh');
      target.setAttribute('two', ['abcdef', 'xy']);
      target.setAttribute('three', 3);
      target.setAttribute('four', 4);
      target.setAttribute('one', 'replaced past the count');
      for (const name of ['first', 'second', 'third']) target.addEvent(name, { kept: 'abcdefgh', dropped: 1 });
      target.end();
    }
    const [sdk] = theirs.ended();
    assert.deepEqual(Object.entries(ours.span.attributes), Object.entries(sdk!.attributes));
    assert.deepEqual(ours.span.attributes, { one: 'repl', two: ['abcd', 'xy'], three: 3 });
    assert.equal(ours.span.droppedAttributesCount, sdk!.droppedAttributesCount);
    assert.equal(ours.span.droppedAttributesCount, 1);
    assert.deepEqual(ours.span.events.map((e) => [e.name, e.attributes, e.droppedAttributesCount]), [['second', { kept: 'abcd' }, 1], ['third', { kept: 'abcd' }, 1]]);
    assert.deepEqual(sdk!.events.map((e) => [e.name, e.attributes, e.droppedAttributesCount]), [['second', { kept: 'abcd' }, 1], ['third', { kept: 'abcd' }, 1]]);
    assert.equal(ours.span.droppedEventsCount, sdk!.droppedEventsCount);
    // The plugin's own attributes go through the same limits.
    const own = proxySpan({ attributeCountLimit: 1, attributeValueLengthLimit: 2 });
    own.span.record('http.request.method', 'GET');
    own.span.record('url.path', '/x');
    assert.deepEqual(own.span.attributes, { 'http.request.method': 'GE' });
    assert.equal(own.span.droppedAttributesCount, 1);
  });

  test('an ended span takes nothing more and is handed on once; an error status stays', () => {
    const { span, ended } = proxySpan();
    span.setStatus({ code: SpanStatusCode.ERROR });
    span.setStatus({ code: SpanStatusCode.UNSET });
    span.end();
    span.setAttribute('late', 1);
    span.addEvent('late');
    span.setStatus({ code: SpanStatusCode.OK });
    span.end();
    assert.equal(ended.length, 1);
    assert.deepEqual([span.attributes, span.events, span.status.code, span.isRecording()], [{}, [], SpanStatusCode.ERROR, false]);
  });

  test('times: epoch nanoseconds from the monotonic clock, the duration their exact difference', () => {
    const before = Date.now();
    const start = clock.now();
    const { span } = proxySpan();
    const at = performance.now() + 1234.5678;
    span.end(at);
    const after = Date.now();
    for (const [seconds, nanos] of [start, span.endTime, span.duration]) {
      assert.ok(Number.isInteger(seconds) && Number.isInteger(nanos) && nanos >= 0 && nanos < 1e9, `${seconds}, ${nanos}`);
    }
    const startMs = start[0] * 1000 + start[1] / 1e6;
    assert.ok(startMs >= before - 2 && startMs <= after + 2, `${startMs} within [${before}, ${after}]`);
    const endNs = BigInt(span.endTime[0]) * 1_000_000_000n + BigInt(span.endTime[1]);
    const startNs = BigInt(span.startTime[0]) * 1_000_000_000n + BigInt(span.startTime[1]);
    assert.equal(BigInt(span.duration[0]) * 1_000_000_000n + BigInt(span.duration[1]), endNs - startNs);
    // Ended 1234.5678 ms after it started, or a little more: the clock's recheck a second on must not move it.
    assert.ok(endNs - startNs >= 1_234_567_000n && endNs - startNs < 1_300_000_000n, String(endNs - startNs));
    // An event at an epoch millisecond with a fraction: seconds and nanoseconds exactly.
    span.ended = false;
    span.addEvent('at', undefined, 1_700_000_000_123.25);
    assert.deepEqual(span.events.at(-1)!.time, [1_700_000_000, 123_250_000]);
  });

  test('the plugin\'s serializer and both of OpenTelemetry\'s read them as they read the SDK\'s', () => {
    const { span, ended } = proxySpan();
    span.record('http.request.method', 'GET');
    span.record('url.path', '/3/movie/550');
    span.record('http.response.status_code', 200);
    exercise(span);
    span.setStatus({ code: SpanStatusCode.ERROR });
    const client = new ProxySpan({ ...OWN, spanId: '1111111111111111' }, 'GET', SpanKind.CLIENT, OWN, clock.now(), source());
    client.record('server.address', '127.0.0.1');
    client.end();
    span.end();
    const spans = [client, ended[0]!];
    const ours = Buffer.from(serializeSpans(spans));
    const theirs = Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);
    assert.ok(ours.equals(theirs), `${ours.length} bytes against the library's ${theirs.length}`);
    const json = JSON.parse(new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans)));
    const server = json.resourceSpans[0].scopeSpans[0].spans[1];
    assert.equal(server.parentSpanId, PARENT.spanId);
    assert.equal(server.traceState, 'vendor=value');
    assert.equal(server.kind, 2);
    assert.deepEqual(server.attributes.slice(0, 3).map((a: { key: string }) => a.key), ['http.request.method', 'url.path', 'http.response.status_code']);
    assert.equal(server.events[0].name, 'switchyard.refused');
  });

  test('ids kept as words (a trace drawn here) are written as the library writes their hex, a root and its child', () => {
    // Words whose high bit is set too: they are stored as negative int32s.
    const trace = '8af7651916cd43dd8448eb211c80319c';
    const root: SpanContext = { traceId: trace, spanId: 'f0f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED };
    const child: SpanContext = { traceId: trace, spanId: '0000000000000001', traceFlags: TraceFlags.SAMPLED };
    const words = (...ids: string[]): Int32Array => {
      const bytes = Buffer.from(ids.join(''), 'hex');
      return Int32Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readInt32BE(4 * i));
    };
    const server = new ProxySpan(root, 'GET movies', SpanKind.SERVER, undefined, clock.now(), source());
    server.idWords = words(trace, root.spanId);
    const client = new ProxySpan(child, 'GET', SpanKind.CLIENT, root, clock.now(), source());
    client.idWords = words(trace, child.spanId, root.spanId);
    client.end();
    server.end();
    const spans = [client, server];
    const ours = Buffer.from(serializeSpans(spans));
    const fromHex = (span: ProxySpan): ReadableSpan => Object.create(span, { idWords: { value: undefined } }) as ReadableSpan;
    assert.ok(ours.equals(Buffer.from(serializeSpans(spans.map(fromHex)))), 'the same bytes as the hex path');
    assert.ok(ours.equals(Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!)), 'the library\'s bytes');
  });

  test('values recorded as shared are written from the serializer\'s cache as the library writes them, until someone replaces them', () => {
    const build = (): ReadableSpan[] => {
      const { span, ended } = proxySpan({ attributeValueLengthLimit: 12 });
      span.recordShared('http.request.method', 'GET');
      span.recordShared('http.route', 'movies');
      span.record('url.path', '/3/movie/550');
      span.recordShared('network.protocol.version', ['1', '1'].join('.'));
      span.recordShared('switchyard.upstream', 'http://tmdb-mirror-1.example');
      span.recordShared('unicode', 'Ça coûte €');
      // Another plugin replaces two shared values: a number and a string of its own.
      span.setAttribute('http.route', 42);
      span.setAttribute('switchyard.upstream', 'changed');
      // Attributes 6 to 45; the 33rd (index 32: 1 << 32 is 1, the method's bit) a number.
      for (let i = 0; i < 40; i++) {
        if (i === 26) span.record('a number past the marks', 7);
        else span.recordShared(`shared.${i}`, `value ${i % 3}`);
      }
      // Replacing the 33rd keeps the method's mark (1 << 32 would name it), and its bytes.
      span.setAttribute('a number past the marks', 8);
      span.end();
      return ended;
    };
    for (let round = 0; round < 2; round++) {
      const spans = build();
      const ours = Buffer.from(serializeSpans(spans));
      const theirs = Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);
      assert.ok(ours.equals(theirs), `round ${round}: ${ours.length} bytes against the library's ${theirs.length}`);
    }
    const [span] = build() as ProxySpan[];
    assert.deepEqual(span!.attributes['http.route'], 42);
    assert.equal(span!.attributes['switchyard.upstream'], 'changed');
    assert.equal(span!.attributes['shared.30'], 'value 0', 'past the 31 marked ones, values are written as any');
    // Attributes 0 to 5: method, route, url.path, protocol version, upstream, unicode.
    assert.equal(span!.sharedValues & 0b111111, 0b101001, 'the method, protocol version and unicode value stay marked; the replaced route and upstream do not');
  });

  test('shared key-value pairs past what the serializer keeps, too long to keep, or under a second key, are written as the library writes them', () => {
    const build = (): ReadableSpan[] => {
      const from = source();
      const span = (): ProxySpan => new ProxySpan(OWN, 'GET movies', SpanKind.SERVER, PARENT, clock.now(), from);
      // The same value under two keys, and one key with two values: each pair is its own.
      const first = span();
      first.recordShared('http.request.method', 'GET');
      first.recordShared('switchyard.stage', 'GET');
      first.recordShared('switchyard.upstream', 'mirror-1');
      first.end();
      const second = span();
      second.recordShared('switchyard.upstream', 'mirror-2');
      second.recordShared('http.route', 'r'.repeat(200));
      second.end();
      // More distinct pairs than are kept, each marked shared (a span marks 31 at most).
      for (let i = 0; i < 1100; i += 20) {
        const many = span();
        for (let k = i; k < i + 20; k++) many.recordShared(`pair.${k}`, `value ${k}`);
        many.end();
      }
      return from.ended;
    };
    for (let round = 0; round < 2; round++) {
      const spans = build();
      const ours = Buffer.from(serializeSpans(spans));
      const theirs = Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);
      assert.ok(ours.equals(theirs), `round ${round}: ${ours.length} bytes against the library's ${theirs.length}`);
    }
    const kept = keptEncodings();
    assert.ok(kept.keyValues === 1024 && kept.strings <= 1024, `kept ${kept.keyValues} key-value pairs and ${kept.strings} strings, 1,024 of each at most`);
  });

  test('limits come from the SDK\'s environment variables, the span\'s own over the general ones', () => {
    const base = { alwaysSampleErrors: false, b3: 'off', batch: { maxQueueSize: 2048, maxExportBatchSize: 512, exportTimeoutMs: 30000 } } as TracingOptions;
    assert.deepEqual(resolveSettings(base, {}).limits, { attributeCountLimit: 128, attributeValueLengthLimit: Infinity, eventCountLimit: 128, attributePerEventCountLimit: 128 });
    const env = { OTEL_ATTRIBUTE_COUNT_LIMIT: '10', OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '20', OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '256', OTEL_SPAN_EVENT_COUNT_LIMIT: '5', OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT: '3' };
    assert.deepEqual(resolveSettings(base, env).limits, { attributeCountLimit: 20, attributeValueLengthLimit: 256, eventCountLimit: 5, attributePerEventCountLimit: 3 });
    assert.throws(() => resolveSettings(base, { OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: 'lots' }), /OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT is "lots"; expected a whole number$/);
  });
});

describe('the plugin\'s attribute names', () => {
  test('each of the semantic conventions is spelled as the conventions package spells it', async () => {
    const names: Record<string, string> = await import('../../plugins/tracing/attributes.js');
    const stable: Record<string, unknown> = await import('@opentelemetry/semantic-conventions');
    const incubating: Record<string, unknown> = await import('@opentelemetry/semantic-conventions/incubating');
    let checked = 0;
    for (const [constant, name] of Object.entries(names)) {
      if (name.startsWith('switchyard.')) continue;
      assert.equal(name, stable[constant] ?? incubating[constant], constant);
      checked++;
    }
    assert.equal(checked, 17);
  });
});
