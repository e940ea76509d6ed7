// Tracing: OpenTelemetry spans for requests through the proxy, exported over OTLP/HTTP. A request
// continues its caller's W3C trace context (or B3) or starts a trace, subject to sampling; it gets
// one server span, and one client span per attempt at an upstream, whose id the upstream receives
// as its parent in `traceparent`. Other plugins add attributes and events through `ctx.span`.
import { SpanKind, SpanStatusCode, TraceFlags, type SpanContext, type SpanStatus } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { TLSSocket } from 'node:tls';
import { counter, definePlugin, type RequestContext, type RequestSpan, type SpanAttributes, type SpanAttributeValue, type SwitchyardError, type Upstream } from '../../core/index.js';
import {
  ATTR_CLIENT_ADDRESS, ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_BODY_SIZE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_REQUEST_METHOD_ORIGINAL, ATTR_HTTP_REQUEST_RESEND_COUNT,
  ATTR_HTTP_RESPONSE_BODY_SIZE, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_HTTP_ROUTE, ATTR_NETWORK_PROTOCOL_VERSION, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT,
  ATTR_SERVICE_NAME, ATTR_SWITCHYARD_ATTEMPT_OUTCOME, ATTR_SWITCHYARD_ERROR_CODE, ATTR_SWITCHYARD_REQUEST_ID, ATTR_SWITCHYARD_STAGE,
  ATTR_SWITCHYARD_UPSTREAM, ATTR_URL_FULL, ATTR_URL_PATH, ATTR_URL_SCHEME, ATTR_USER_AGENT_ORIGINAL,
} from './attributes.js';
import { CountedBatchProcessor, type ExportCounters } from './export.js';
import { copySpanIdWords, copyTraceIdWords, detached, newSpanId, newTrace, spanIdOf, traceIdOf } from './ids.js';
import { Propagation } from './propagation.js';
import { TraceRatio } from './sampling.js';
import { resolveSettings, shownUrl, TracingSettingsError, type TracingOptions, type TracingSettings } from './settings.js';
import { clock, ProxySpan, type SpanSource } from './span.js';

export const name = 'tracing';

// The env-backed options have no default here: unset, the environment's value applies.
export const schema = {
  type: 'object',
  properties: {
    serviceName: { type: 'string', minLength: 1, description: 'service.name of the spans; else OTEL_SERVICE_NAME, else "switchyard"' },
    endpoint: { type: 'string', pattern: '^https?://', description: 'the full traces URL (…/v1/traces); else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://localhost:4318/v1/traces' },
    protocol: { enum: ['http/protobuf', 'http/json'], description: 'else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf' },
    headers: {
      type: 'object', additionalProperties: { type: 'string' },
      description: 'sent with every export, over those of OTEL_EXPORTER_OTLP_HEADERS; never logged (give secrets as ${VARS} named like secrets, so /config masks them)',
    },
    compression: { enum: ['gzip', 'none'], description: 'gzip each export request; else OTEL_EXPORTER_OTLP_TRACES_COMPRESSION / OTEL_EXPORTER_OTLP_COMPRESSION, else none' },
    timeoutMs: { type: 'integer', minimum: 1, description: 'one export request\'s time limit; else OTEL_EXPORTER_OTLP_TIMEOUT, else 10000' },
    sampleRatio: { type: 'number', minimum: 0, maximum: 1, description: 'share of new traces recorded; else from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else 1' },
    parentBased: { type: 'boolean', description: 'follow the caller\'s sampled flag when it sends a trace context; else from OTEL_TRACES_SAMPLER, else true' },
    alwaysSampleErrors: { type: 'boolean', default: false, description: 'also export requests that were not sampled but failed (5xx or an error code); records every request' },
    b3: { enum: ['off', 'single', 'multi'], default: 'off', description: 'also read B3 and write it upstream: the single b3 header or the X-B3-* set' },
    batch: {
      type: 'object', default: {}, additionalProperties: false,
      properties: {
        scheduleDelayMs: { type: 'integer', minimum: 0, description: 'longest wait before a batch goes out; else OTEL_BSP_SCHEDULE_DELAY, else 5000' },
        maxQueueSize: { type: 'integer', minimum: 1, default: 2048, description: 'spans waiting for export at most; more are dropped and counted' },
        maxExportBatchSize: { type: 'integer', minimum: 1, default: 512, description: 'spans per export request at most' },
        exportTimeoutMs: { type: 'integer', minimum: 1, default: 30000, description: 'a batch\'s time limit, retries included' },
      },
    },
  },
  additionalProperties: false,
} as const;

export default definePlugin<typeof schema>({
  name,
  schema,
  setup(api, options) {
    if (api.route !== undefined) throw new Error('tracing is a global plugin: configure it under the top-level plugins, not on a route');
    let settings: TracingSettings;
    try {
      settings = resolveSettings(options as TracingOptions, api.env);
    } catch (err) {
      if (err instanceof TracingSettingsError) throw new Error(`tracing: ${err.message}`);
      throw err;
    }
    const exporting = new CountedBatchProcessor(settings, exportCounters(api.metrics), api.log);
    const spans: SpanSource = {
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: settings.serviceName }),
      instrumentationScope: { name: 'switchyard' },
      limits: settings.limits,
      onEnd: (span) => exporting.onEnd(span),
    };
    const propagation = new Propagation(settings.b3);
    const roots = new TraceRatio(settings.sampleRatio);
    const { alwaysSampleErrors, parentBased } = settings;
    api.log.info({ collector: shownUrl(settings.url), protocol: settings.protocol, sampleRatio: settings.sampleRatio, parentBased }, 'tracing requests');

    /**
     * The request's server span. A new trace's ids are those of the traceparent it was drawn as,
     * copied out of their batch once, together (ids.ts, detached()); a continued trace's span id
     * is drawn here.
     */
    function startServerSpan(ctx: RequestContext, parent: SpanContext | undefined, traceId: string, traceparent: string | undefined, sampled: boolean): Recorded {
      const method = ctx.req.method ?? 'GET';
      const route = ctx.route?.name;
      const own = traceparent === undefined ? undefined : detached(traceparent);
      const context: SpanContext = {
        traceId: own === undefined ? detached(traceId) : traceIdOf(own),
        spanId: own === undefined ? detached(newSpanId()) : spanIdOf(own),
        traceFlags: sampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
        traceState: parent?.traceState,
      };
      const server = new ProxySpan(context, spanName(method, route), SpanKind.SERVER, parent, clock.fromPerformanceMs(ctx.startedAt), spans);
      if (own !== undefined) server.idWords = drawnTraceWords();
      setServerAttributes(server, ctx, method, route);
      return new Recorded(server, sampled);
    }

    // First of all access taps, so that a refusal by auth or a limit is inside the span.
    api.hooks.access.tap({ name, stage: -Infinity }, (ctx) => {
      const { headers } = ctx.req;
      const parent = propagation.parent(headers);
      let traceId: string;
      let sampled: boolean;
      // A new trace is drawn as the traceparent the upstream gets if it is not recorded (ids.ts).
      let unsampledTraceparent: string | undefined;
      if (parent === undefined) {
        const drawn = newTrace();
        unsampledTraceparent = drawn.traceparent;
        traceId = traceIdOf(unsampledTraceparent);
        sampled = roots.admitsSpread(drawn.spread);
      } else {
        traceId = parent.traceId;
        sampled = parentBased ? (parent.traceFlags & TraceFlags.SAMPLED) !== 0 : roots.admitsTraceId(traceId);
      }
      ctx.traceId = traceId;
      if (sampled || alwaysSampleErrors) ctx.span = startServerSpan(ctx, parent, traceId, unsampledTraceparent, sampled);
      // Not recorded, and the caller said "not sampled" too: its traceparent goes upstream as it
      // came, which W3C trace context allows a hop that records nothing. Else the upstream is
      // told this trace, "not sampled", and a parent id no span will ever have.
      else if (unsampledTraceparent !== undefined) ctx.span = new Unrecorded(traceId, unsampledTraceparent);
      else if (parent !== undefined && ((parent.traceFlags & TraceFlags.SAMPLED) !== 0 || !propagation.passesOn(headers))) ctx.span = new Unrecorded(traceId, undefined);
      return undefined;
    });

    api.hooks.attempt.tap(name, (ctx) => {
      const traced = ctx.span;
      if (traced instanceof Recorded) {
        traced.endAttempt(ctx, undefined);
        // An error from an earlier attempt was retried: it is not how this request ends.
        traced.retried = ctx.error;
        const method = ctx.outgoing.method;
        const { server } = traced;
        const parent = server.spanContext();
        const context: SpanContext = { traceId: parent.traceId, spanId: detached(newSpanId()), traceFlags: parent.traceFlags, traceState: parent.traceState };
        const client = new ProxySpan(context, method, SpanKind.CLIENT, parent, clock.fromPerformanceMs(ctx.startedAt + ctx.timings.upstreamStart!), spans);
        if (server.idWords !== undefined) client.idWords = drawnChildWords(server.idWords);
        setClientAttributes(client, ctx, ctx.upstream!, method);
        traced.attempt = client;
        propagation.stamp(ctx.outgoing.headers, context);
      } else if (traced instanceof Unrecorded) {
        propagation.stamp(ctx.outgoing.headers, traced, traced.traceparent);
      }
    });

    // Before any tap that may retry: this attempt failed, whatever comes next.
    api.hooks.error.tap({ name, stage: -Infinity }, (ctx, error) => {
      const traced = ctx.span;
      if (traced instanceof Recorded) traced.endAttempt(ctx, error.code);
      return undefined;
    });

    // Last of the done taps: other plugins' attributes are in by then.
    api.hooks.done.tap({ name, stage: Infinity }, (ctx) => {
      const traced = ctx.span;
      if (!(traced instanceof Recorded)) return;
      const status = statusOf(ctx);
      const failed = status >= 500;
      const error = ctx.error !== traced.retried ? ctx.error : undefined;
      traced.endAttempt(ctx, error?.code);
      const { server } = traced;
      // Checked and de-duplicated: other plugins have had the span since the access stage.
      server.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      const size = ctx.response?.headers['content-length'];
      if (size !== undefined) server.setAttribute(ATTR_HTTP_RESPONSE_BODY_SIZE, Number(size));
      if (ctx.answeredBy !== undefined) server.addEvent(ctx.answeredBy === 'cacheLookup' ? 'switchyard.cache.hit' : 'switchyard.answered', { [ATTR_SWITCHYARD_STAGE]: ctx.answeredBy });
      if (error !== undefined) server.setAttribute(ATTR_SWITCHYARD_ERROR_CODE, error.code);
      if (failed) {
        server.setAttribute(ATTR_ERROR_TYPE, error?.code ?? String(status));
        server.setStatus(ERROR_STATUS);
      }
      server.end(ctx.startedAt + (ctx.timings.end ?? ctx.elapsed()));
      if (alwaysSampleErrors && failed && !traced.sampled) for (const span of traced.recorded) exporting.keep(span);
    });

    // A stop or reload sends what is queued, but never waits long on a collector that hangs.
    return () => exporting.shutdown(Math.min(settings.timeoutMs, SHUTDOWN_LIMIT_MS));
  },
});

const SHUTDOWN_LIMIT_MS = 5000;

const ERROR_STATUS: SpanStatus = Object.freeze({ code: SpanStatusCode.ERROR });

/**
 * `ctx.span` of a request that is not recorded: it records nothing, and is the trace context the
 * upstream is told (a new trace, or the caller's restamped), with "not sampled".
 */
class Unrecorded implements RequestSpan, SpanContext {
  readonly traceFlags = TraceFlags.NONE;
  /** The parent id the upstream is told, once asked for (B3, or a caller's trace restamped). */
  private parentId: string | undefined;

  /** `traceparent`: a new trace's, as newTrace() drew it; undefined when the caller named the trace. */
  constructor(readonly traceId: string, readonly traceparent: string | undefined) {}

  /**
   * A parent id for the upstream, kept for retries: the new trace's own (a slice of its
   * traceparent), else made at the first attempt that needs one. Unasked for, a new trace's
   * traceparent goes upstream as drawn and the slice is never made.
   */
  get spanId(): string {
    return (this.parentId ??= this.traceparent === undefined ? newSpanId() : spanIdOf(this.traceparent));
  }

  isRecording(): boolean {
    return false;
  }

  setAttribute(): void {}

  setAttributes(): void {}

  addEvent(): void {}
}

/** `ctx.span` of a recorded request: the server span, and the client span of the attempt in flight. */
class Recorded implements RequestSpan {
  /** The client span of the attempt in flight. */
  attempt: ProxySpan | undefined;
  /** ctx.error when the latest attempt began: a failure some earlier attempt had, and retried. */
  retried: SwitchyardError | undefined;
  /** Recorded but unsampled spans, kept in case the request fails (alwaysSampleErrors). */
  readonly recorded: ReadableSpan[] = [];

  constructor(readonly server: ProxySpan, readonly sampled: boolean) {
    if (!sampled) this.recorded.push(server);
  }

  isRecording(): boolean {
    return this.server.isRecording();
  }

  setAttribute(key: string, value: SpanAttributeValue): void {
    this.server.setAttribute(key, value);
  }

  setAttributes(attributes: SpanAttributes): void {
    this.server.setAttributes(attributes);
  }

  addEvent(name: string, attributes?: SpanAttributes, time?: number): void {
    this.server.addEvent(name, attributes, time);
  }

  /** Ends the attempt in flight, if any: a failure with `code`, else the upstream's answer. */
  endAttempt(ctx: RequestContext, code: string | undefined): void {
    const span = this.attempt;
    if (span === undefined) return;
    this.attempt = undefined;
    const status = ctx.response?.status;
    if (status !== undefined && ctx.timings.firstByte !== undefined && ctx.timings.firstByte >= ctx.timings.upstreamStart!) span.record(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    if (code !== undefined || (status !== undefined && status >= 500)) {
      span.record(ATTR_ERROR_TYPE, code ?? String(status));
      if (code !== undefined) span.record(ATTR_SWITCHYARD_ERROR_CODE, code);
      span.recordShared(ATTR_SWITCHYARD_ATTEMPT_OUTCOME, 'failure');
      span.setStatus(ERROR_STATUS);
    } else {
      span.recordShared(ATTR_SWITCHYARD_ATTEMPT_OUTCOME, 'success');
    }
    if (!this.sampled) this.recorded.push(span);
    span.end();
  }
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE']);

/** `GET <route>`, made once per method and route. */
const spanNames = new Map<string, Map<string | undefined, string>>();

function spanName(method: string, route: string | undefined): string {
  if (!KNOWN_METHODS.has(method)) return route === undefined ? method : `${method} ${route}`;
  let ofMethod = spanNames.get(method);
  if (ofMethod === undefined) spanNames.set(method, (ofMethod = new Map()));
  let named = ofMethod.get(route);
  if (named === undefined) ofMethod.set(route, (named = route === undefined ? method : `${method} ${route}`));
  return named;
}

// The plugin's own attributes, set as the span starts (before any other plugin can reach it), each
// key once and each value a string or number made here: recorded without the checks other
// plugins' attributes get (span.ts). Client spans are never handed to other plugins.
function setServerAttributes(span: ProxySpan, ctx: RequestContext, method: string, route: string | undefined): void {
  const { req } = ctx;
  const known = KNOWN_METHODS.has(method);
  span.recordShared(ATTR_HTTP_REQUEST_METHOD, known ? method : '_OTHER');
  if (!known) span.record(ATTR_HTTP_REQUEST_METHOD_ORIGINAL, method);
  if (route !== undefined) span.recordShared(ATTR_HTTP_ROUTE, route);
  // The path only: credentials ride in queries (`?key=`), never recorded.
  span.record(ATTR_URL_PATH, ctx.pathname);
  span.recordShared(ATTR_URL_SCHEME, (req.socket as TLSSocket | null)?.encrypted === true ? 'https' : 'http');
  span.record(ATTR_CLIENT_ADDRESS, ctx.clientIp);
  const userAgent = req.headers['user-agent'];
  if (userAgent !== undefined) span.record(ATTR_USER_AGENT_ORIGINAL, userAgent);
  span.recordShared(ATTR_NETWORK_PROTOCOL_VERSION, req.httpVersion);
  const length = req.headers['content-length'];
  if (length !== undefined) span.record(ATTR_HTTP_REQUEST_BODY_SIZE, Number(length));
  span.record(ATTR_SWITCHYARD_REQUEST_ID, detached(ctx.id));
}

/** A new trace's server span ids as ProxySpan.idWords, right after newTrace() drew them. */
function drawnTraceWords(): Int32Array {
  const words = new Int32Array(6);
  copyTraceIdWords(words, 0);
  copySpanIdWords(words, 4);
  return words;
}

/** A child's ids as ProxySpan.idWords, right after newSpanId() drew its span id: the trace's, its own, its parent's. */
function drawnChildWords(parent: Int32Array): Int32Array {
  const words = new Int32Array(8);
  for (let i = 0; i < 4; i++) words[i] = parent[i]!;
  copySpanIdWords(words, 4);
  words[6] = parent[4]!;
  words[7] = parent[5]!;
  return words;
}

/** What a client span says of its upstream, worked out once per upstream. */
interface UpstreamFacts {
  readonly address: string;
  readonly port: number;
  readonly origin: string;
}

const upstreamFacts = new WeakMap<Upstream, UpstreamFacts>();

function factsOf(upstream: Upstream): UpstreamFacts {
  let facts = upstreamFacts.get(upstream);
  if (facts === undefined) {
    const { target } = upstream;
    facts = { address: target.hostname, port: Number(target.port) || (target.protocol === 'https:' ? 443 : 80), origin: target.origin };
    upstreamFacts.set(upstream, facts);
  }
  return facts;
}

function setClientAttributes(span: ProxySpan, ctx: RequestContext, upstream: Upstream, method: string): void {
  const facts = factsOf(upstream);
  const path = ctx.outgoing.path;
  const query = path.indexOf('?');
  const resends = ctx.tried.length - 1;
  span.recordShared(ATTR_HTTP_REQUEST_METHOD, KNOWN_METHODS.has(method) ? method : '_OTHER');
  span.recordShared(ATTR_SERVER_ADDRESS, facts.address);
  span.record(ATTR_SERVER_PORT, facts.port);
  // Without the query: an upstream key (upstream-auth) may be in it.
  span.record(ATTR_URL_FULL, facts.origin + (query === -1 ? path : path.slice(0, query)));
  if (resends > 0) span.record(ATTR_HTTP_REQUEST_RESEND_COUNT, resends);
  span.recordShared(ATTR_SWITCHYARD_UPSTREAM, upstream.name);
}

/** The status the client got; a response cut short counts as the failure that cut it (499: the client left). */
function statusOf(ctx: RequestContext): number {
  if (ctx.res.writableFinished) return ctx.res.statusCode;
  return ctx.error && ctx.error.code !== 'SY_ERR_CLIENT_ABORTED' ? ctx.error.status : 499;
}

function exportCounters(registry: Parameters<typeof counter>[0]): ExportCounters {
  const exported = counter(registry, { name: 'switchyard_tracing_spans_exported_total', help: 'Spans the collector accepted.' });
  const dropped = counter(registry, {
    name: 'switchyard_tracing_spans_dropped_total', help: 'Spans that never reached the collector: the export queue was full, an export failed or timed out, or the proxy stopped first.',
    labelNames: ['reason'],
  });
  return {
    exported: (count) => exported.inc(count),
    dropped: (reason, count) => dropped.inc({ reason }, count),
  };
}
