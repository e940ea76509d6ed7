// Serialises one export batch (512 spans: 256 requests' server and client spans, with the
// tracing plugin's attributes, strings in the representations the proxy hands over) CALLS times
// with OpenTelemetry's ProtobufTraceSerializer or plugins/tracing/otlp-protobuf.ts. Under
// callgrind at two CALLS, the difference over the extra batches ÷ 256 is the instructions per
// request:
//   for w in library ours; do for n in 20 120; do valgrind --tool=callgrind \
//     --callgrind-out-file=/dev/null node --single-threaded bench/callgrind/otlp-serializer.mjs $n $w; done; done
// usage: node otlp-serializer.mjs CALLS library|ours   (`npm run build` first)
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { serializeSpans } from '../../dist/plugins/tracing/otlp-protobuf.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'switchyard' }),
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
const tracer = provider.getTracer('switchyard', '0.1.0');
const userAgent = 'wrk/4.2.0 [epoll] Linux/6.1.0'.slice(0);
for (let i = 0; i < 256; i++) {
  const path = `/3/movie/${550 + i}`;
  const server = tracer.startSpan('GET main', { kind: SpanKind.SERVER });
  server.setAttribute('http.request.method', 'GET');
  server.setAttribute('http.route', 'main');
  server.setAttribute('url.path', path);
  server.setAttribute('url.scheme', 'http');
  server.setAttribute('client.address', ['127.0.0', '.1'].join(''));
  server.setAttribute('user_agent.original', userAgent);
  server.setAttribute('network.protocol.version', '1.1');
  server.setAttribute('switchyard.request_id', `${(1e15 + i).toString(16)}-req`.slice(0, 16));
  const client = tracer.startSpan('GET', { kind: SpanKind.CLIENT }, trace.setSpan(context.active(), server));
  client.setAttribute('http.request.method', 'GET');
  client.setAttribute('server.address', '127.0.0.1');
  client.setAttribute('server.port', 43117);
  client.setAttribute('url.full', `http://127.0.0.1:43117${path}`);
  client.setAttribute('switchyard.upstream', 'http://127.0.0.1:43117');
  client.setAttribute('http.response.status_code', 200);
  client.setAttribute('switchyard.attempt.outcome', 'success');
  client.end();
  server.setAttribute('http.response.status_code', 200);
  server.setAttribute('http.response.body.size', 13);
  server.setStatus({ code: SpanStatusCode.UNSET });
  server.end();
}
const batch = exporter.getFinishedSpans();
const serialize = process.argv[3] === 'ours' ? serializeSpans : (spans) => ProtobufTraceSerializer.serializeRequest(spans);
let bytes = 0;
for (let i = Number(process.argv[2]); i > 0; i--) bytes += serialize(batch).length;
if (bytes === 0) throw new Error('nothing serialised');
