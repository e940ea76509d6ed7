// Serialises one export batch (512 spans: 256 requests' server and client spans, with the
// tracing plugin's attributes, strings in the representations the proxy hands over) CALLS times
// with OpenTelemetry's ProtobufTraceSerializer or plugins/tracing/otlp-protobuf.ts. Under
// callgrind at two CALLS, the difference over the extra batches ÷ 256 is the instructions per
// request:
//   for w in library ours; do for n in 20 120; do valgrind --tool=callgrind \
//     --callgrind-out-file=/dev/null node --single-threaded bench/callgrind/otlp-serializer.mjs $n $w; done; done
// usage: node otlp-serializer.mjs CALLS library|ours   (`npm run build` first)
import { SpanKind, TraceFlags } from '@opentelemetry/api';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { serializeSpans } from '../../dist/plugins/tracing/otlp-protobuf.js';
import { clock, ProxySpan } from '../../dist/plugins/tracing/span.js';

// The plugin's own spans (plugins/tracing/span.ts), as it makes them since it left the SDK's tracer,
// with the values it records as shared (recordShared) marked so.
const batch = [];
const source = {
  resource: resourceFromAttributes({ 'service.name': 'switchyard' }),
  instrumentationScope: { name: 'switchyard' },
  limits: { attributeCountLimit: 128, attributeValueLengthLimit: Infinity, eventCountLimit: 128, attributePerEventCountLimit: 128 },
  onEnd: (span) => batch.push(span),
};
const userAgent = 'wrk/4.2.0 [epoll] Linux/6.1.0'.slice(0);
const hex = (n, digits) => n.toString(16).padStart(digits, '0');
// A new trace's ids as the plugin keeps them beside their hex (ProxySpan.idWords): 32-bit words.
const words = (...ids) => {
  const bytes = Buffer.from(ids.join(''), 'hex');
  return Int32Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readInt32BE(4 * i));
};
for (let i = 0; i < 256; i++) {
  const path = `/3/movie/${550 + i}`;
  const serverContext = { traceId: hex(0x1234567 + i, 32), spanId: hex(0xabcdef + i, 16), traceFlags: TraceFlags.SAMPLED };
  const server = new ProxySpan(serverContext, 'GET main', SpanKind.SERVER, undefined, clock.now(), source);
  server.idWords = words(serverContext.traceId, serverContext.spanId);
  server.recordShared('http.request.method', 'GET');
  server.recordShared('http.route', 'main');
  server.record('url.path', path);
  server.recordShared('url.scheme', 'http');
  server.record('client.address', ['127.0.0', '.1'].join(''));
  server.record('user_agent.original', userAgent);
  server.recordShared('network.protocol.version', '1.1');
  server.record('switchyard.request_id', `${(1e15 + i).toString(16)}-req`.slice(0, 16));
  const client = new ProxySpan({ ...serverContext, spanId: hex(0x123abc + i, 16) }, 'GET', SpanKind.CLIENT, serverContext, clock.now(), source);
  client.idWords = words(serverContext.traceId, client.spanContext().spanId, serverContext.spanId);
  client.recordShared('http.request.method', 'GET');
  client.recordShared('server.address', '127.0.0.1');
  client.record('server.port', 43117);
  client.record('url.full', `http://127.0.0.1:43117${path}`);
  client.recordShared('switchyard.upstream', 'http://127.0.0.1:43117');
  client.record('http.response.status_code', 200);
  client.recordShared('switchyard.attempt.outcome', 'success');
  client.end();
  server.record('http.response.status_code', 200);
  server.record('http.response.body.size', 13);
  server.end();
}
const serialize = process.argv[3] === 'ours' ? serializeSpans : (spans) => ProtobufTraceSerializer.serializeRequest(spans);
let bytes = 0;
for (let i = Number(process.argv[2]); i > 0; i--) bytes += serialize(batch).length;
if (bytes === 0) throw new Error('nothing serialised');
