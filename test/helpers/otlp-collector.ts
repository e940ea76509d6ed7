// A fake OpenTelemetry collector on 127.0.0.1: it takes OTLP/HTTP trace exports in JSON or
// protobuf, decodes them into plain spans, and can be switched to hang (hold every export open).
// Protobuf is decoded with protobufjs against the few OTLP trace messages written out below.
import { EventEmitter } from 'node:events';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';

export interface CollectedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP's numbering: 2 server, 3 client. */
  kind: number;
  attributes: Record<string, unknown>;
  /** Keys the span carried more than once (OTLP wants each once). */
  repeatedKeys: string[];
  events: { name: string; attributes: Record<string, unknown> }[];
  /** 0 unset, 1 ok, 2 error. */
  statusCode: number;
  /** W3C trace flags in the low byte (1: sampled), then whether the parent is remote (0x100 and 0x200); 0 when absent. */
  flags: number;
  serviceName: unknown;
}

export interface ExportRequest {
  headers: IncomingHttpHeaders;
  contentType: string | undefined;
  spans: CollectedSpan[];
}

export interface Collector {
  /** The traces endpoint, `http://127.0.0.1:<port>/v1/traces`. */
  readonly url: string;
  readonly exports: ExportRequest[];
  readonly spans: CollectedSpan[];
  /** `hang`: take the request, never answer it. */
  mode: 'ok' | 'hang';
  /** Answers for the next export requests, in order (their spans are recorded all the same); then 200s. */
  readonly scripted: { status: number; headers?: Record<string, string> }[];
  /** Export requests received and not answered yet (held by `hang`). */
  readonly held: number;
  /** Resolves once at least `count` spans have arrived (at once if they have). */
  waitForSpans(count: number): Promise<CollectedSpan[]>;
  /** Answers the exports held open (200, nothing rejected). */
  release(): void;
  /** Resolves when the next export request arrives (answered or held). */
  nextExport(): Promise<ExportRequest>;
  close(): Promise<void>;
}

/** `tls`: serve https with this key and certificate (PEM). */
export async function startCollector(options: { tls?: { key: string; cert: string } } = {}): Promise<Collector> {
  const exports: ExportRequest[] = [];
  const spans: CollectedSpan[] = [];
  const arrivals = new EventEmitter<{ export: [ExportRequest] }>();
  const heldResponses = new Set<ServerResponse>();
  const collector = {
    mode: 'ok' as 'ok' | 'hang',
    scripted: [] as { status: number; headers?: Record<string, string> }[],
    exports,
    spans,
    url: '',
    get held() {
      return heldResponses.size;
    },
    waitForSpans(count: number): Promise<CollectedSpan[]> {
      return new Promise((resolve) => {
        const check = () => {
          if (spans.length < count) return;
          arrivals.off('export', check);
          resolve(spans);
        };
        arrivals.on('export', check);
        check();
      });
    },
    nextExport: () => new Promise<ExportRequest>((resolve) => arrivals.once('export', resolve)),
    release() {
      for (const res of heldResponses) answer(res, res.req.headers['content-type']);
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const sent = Buffer.concat(chunks);
      const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(sent) : sent;
      const contentType = req.headers['content-type'];
      const decoded = contentType?.startsWith('application/json') ? fromJson(JSON.parse(body.toString('utf8')) as JsonRequest) : fromProtobuf(body);
      const request = { headers: req.headers, contentType, spans: decoded };
      exports.push(request);
      spans.push(...decoded);
      const script = collector.scripted.shift();
      if (script !== undefined) {
        res.writeHead(script.status, script.headers);
        res.end();
      } else if (collector.mode === 'hang') {
        heldResponses.add(res);
        res.on('close', () => heldResponses.delete(res));
      } else {
        answer(res, contentType);
      }
      arrivals.emit('export', request);
    });
  };
  const server = options.tls === undefined ? http.createServer(onRequest) : https.createServer(options.tls, onRequest);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  collector.url = `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
  return collector;
}

function answer(res: ServerResponse, contentType: string | undefined): void {
  if (contentType?.startsWith('application/json')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  } else {
    res.writeHead(200, { 'content-type': 'application/x-protobuf' });
    res.end();
  }
}

interface JsonValue {
  stringValue?: string;
  intValue?: number | string;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: JsonValue[] };
}

interface JsonKeyValue {
  key: string;
  value: JsonValue;
}

interface JsonSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: JsonKeyValue[];
  events?: { name: string; attributes?: JsonKeyValue[] }[];
  status?: { code?: number };
  flags?: number;
}

interface JsonRequest {
  resourceSpans: { resource?: { attributes?: JsonKeyValue[] }; scopeSpans: { spans?: JsonSpan[] }[] }[];
}

function valueOf(value: JsonValue | undefined): unknown {
  if (value === undefined) return undefined;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(valueOf);
  return undefined;
}

function attributesOf(list: JsonKeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]));
}

/** OTLP JSON: ids are hex strings, enums numbers. */
function fromJson(request: JsonRequest): CollectedSpan[] {
  return request.resourceSpans.flatMap((resourceSpans) => {
    const serviceName = attributesOf(resourceSpans.resource?.attributes)['service.name'];
    return resourceSpans.scopeSpans.flatMap((scope) => (scope.spans ?? []).map((span) => ({
      traceId: span.traceId,
      spanId: span.spanId,
      parentSpanId: span.parentSpanId ?? '',
      name: span.name,
      kind: span.kind,
      attributes: attributesOf(span.attributes),
      repeatedKeys: (span.attributes ?? []).map((kv) => kv.key).filter((key, i, keys) => keys.indexOf(key) !== i),
      events: (span.events ?? []).map((event) => ({ name: event.name, attributes: attributesOf(event.attributes) })),
      statusCode: span.status?.code ?? 0,
      flags: span.flags ?? 0,
      serviceName,
    })));
  });
}

// The messages of opentelemetry/proto/collector/trace/v1 and trace/v1 this collector reads, with
// their field numbers; everything else in an export is skipped as unknown fields.
const OTLP_TRACE_PROTO = `
syntax = "proto3";
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { repeated Span spans = 2; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; repeated Event events = 11; Status status = 15; fixed32 flags = 16;
}
message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; }
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message ArrayValue { repeated AnyValue values = 1; }
message AnyValue {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; ArrayValue array_value = 5; }
}
`;

const ExportTraceServiceRequest = protobuf.parse(OTLP_TRACE_PROTO).root.lookupType('ExportTraceServiceRequest');

function fromProtobuf(body: Buffer): CollectedSpan[] {
  const decoded = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), { longs: Number, bytes: String, defaults: false, oneofs: false });
  // toObject gives bytes as base64; OTLP JSON (and everyone reading ids) uses hex.
  const hex = (base64: string | undefined) => Buffer.from(base64 ?? '', 'base64').toString('hex');
  const json: JsonRequest = {
    resourceSpans: ((decoded.resourceSpans ?? []) as JsonRequest['resourceSpans']).map((rs) => ({
      resource: rs.resource,
      scopeSpans: (rs.scopeSpans ?? []).map((scope) => ({
        spans: (scope.spans ?? []).map((span) => ({ ...span, traceId: hex(span.traceId), spanId: hex(span.spanId), parentSpanId: hex(span.parentSpanId), kind: span.kind ?? 0 })),
      })),
    })),
  };
  return fromJson(json);
}
