// Tracing: OpenTelemetry spans for requests through the proxy, exported over OTLP/HTTP. A request
// continues its caller's W3C trace context (or B3) or starts a trace, subject to sampling; it gets
// one server span, and one client span per attempt at an upstream, whose id the upstream receives
// as its parent in `traceparent`. Other plugins add attributes and events through `ctx.span`.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, ParentBasedSampler, RandomIdGenerator, SamplingDecision, TraceIdRatioBasedSampler, type Sampler, type SamplingResult, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import {
  ATTR_CLIENT_ADDRESS, ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_REQUEST_METHOD_ORIGINAL, ATTR_HTTP_REQUEST_RESEND_COUNT,
  ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_HTTP_ROUTE, ATTR_NETWORK_PROTOCOL_VERSION, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ATTR_SERVICE_NAME,
  ATTR_URL_FULL, ATTR_URL_PATH, ATTR_URL_SCHEME, ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions';
import type { TLSSocket } from 'node:tls';
import { counter, definePlugin, type RequestContext, type SwitchyardError, type Upstream } from '../../core/index.js';
import { CountedBatchProcessor, type ExportCounters } from './export.js';
import { Propagation } from './propagation.js';
import { resolveSettings, shownUrl, TracingSettingsError, type TracingOptions } from './settings.js';

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
    let settings;
    try {
      settings = resolveSettings(options as TracingOptions, api.env);
    } catch (err) {
      if (err instanceof TracingSettingsError) throw new Error(`tracing: ${err.message}`);
      throw err;
    }
    const exporting = new CountedBatchProcessor(settings, exportCounters(api.metrics), api.log);
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: settings.serviceName }),
      sampler: samplerOf(settings),
      spanProcessors: [exporting],
    });
    const tracer = provider.getTracer('switchyard');
    const propagation = new Propagation(settings.b3);
    const ids = new RandomIdGenerator();
    const { alwaysSampleErrors } = settings;
    api.log.info({ collector: shownUrl(settings.url), protocol: settings.protocol, sampleRatio: settings.sampleRatio, parentBased: settings.parentBased }, 'tracing requests');

    // First of all access taps, so that a refusal by auth or a limit is inside the span.
    api.hooks.access.tap({ name, stage: -Infinity }, (ctx) => {
      const parent = propagation.parent(ctx.req.headers);
      const parentContext = parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
      const method = ctx.req.method ?? 'GET';
      const route = ctx.route?.name;
      const server = tracer.startSpan(route === undefined ? method : `${method} ${route}`, { kind: SpanKind.SERVER, startTime: ctx.startedAt }, parentContext);
      const traced = new Traced(server, parentContext);
      ctx.scratch(name, () => traced);
      ctx.traceId = server.spanContext().traceId;
      if (server.isRecording()) {
        ctx.span = server;
        server.setAttributes(serverAttributes(ctx, method, route));
      }
      return undefined;
    });

    api.hooks.attempt.tap(name, (ctx) => {
      const traced = tracedOf(ctx);
      if (traced === undefined) return;
      const { server } = traced;
      // Not recorded: the upstream still learns the trace and a parent id, without a span object.
      if (!server.isRecording()) {
        const { traceId, traceFlags } = server.spanContext();
        propagation.stamp(ctx.outgoing.headers, { traceId, spanId: ids.generateSpanId(), traceFlags });
        return;
      }
      traced.endAttempt(ctx, undefined);
      // An error from an earlier attempt was retried: it is not how this request ends.
      traced.retried = ctx.error;
      const upstream = ctx.upstream!;
      const method = ctx.outgoing.method;
      const client = tracer.startSpan(method, { kind: SpanKind.CLIENT, startTime: ctx.startedAt + ctx.timings.upstreamStart! }, traced.childContext());
      traced.attempt = client;
      if (client.isRecording()) client.setAttributes(clientAttributes(ctx, upstream, method));
      propagation.stamp(ctx.outgoing.headers, client.spanContext());
    });

    // Before any tap that may retry: this attempt failed, whatever comes next.
    api.hooks.error.tap({ name, stage: -Infinity }, (ctx, error) => {
      tracedOf(ctx)?.endAttempt(ctx, error.code);
      return undefined;
    });

    // Last of the done taps: other plugins' attributes are in by then.
    api.hooks.done.tap({ name, stage: Infinity }, (ctx) => {
      const traced = tracedOf(ctx);
      if (traced === undefined || !traced.server.isRecording()) return;
      const status = statusOf(ctx);
      const failed = status >= 500;
      const error = ctx.error !== traced.retried ? ctx.error : undefined;
      traced.endAttempt(ctx, error?.code);
      const { server } = traced;
      server.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      const size = ctx.response?.headers['content-length'];
      if (size !== undefined) server.setAttribute('http.response.body.size', Number(size));
      if (ctx.answeredBy !== undefined) server.addEvent(ctx.answeredBy === 'cacheLookup' ? 'switchyard.cache.hit' : 'switchyard.answered', { 'switchyard.stage': ctx.answeredBy });
      if (error !== undefined) server.setAttribute('switchyard.error.code', error.code);
      if (failed) {
        server.setAttribute(ATTR_ERROR_TYPE, error?.code ?? String(status));
        server.setStatus({ code: SpanStatusCode.ERROR });
      }
      server.end(ctx.startedAt + (ctx.timings.end ?? ctx.elapsed()));
      if (alwaysSampleErrors && failed && !traced.sampled) for (const span of traced.recorded) exporting.keep(span);
    });

    // A stop or reload sends what is queued, but never waits long on a collector that hangs.
    return () => exporting.shutdown(Math.min(settings.timeoutMs, SHUTDOWN_LIMIT_MS));
  },
});

const SHUTDOWN_LIMIT_MS = 5000;

/** One request's spans. */
class Traced {
  /** The client span of the attempt in flight. */
  attempt: Span | undefined;
  /** ctx.error when the latest attempt began: a failure some earlier attempt had, and retried. */
  retried: SwitchyardError | undefined;
  /** Recorded but unsampled spans, kept in case the request fails (alwaysSampleErrors). */
  readonly recorded: ReadableSpan[] = [];
  readonly sampled: boolean;
  private child: Context | undefined;

  constructor(readonly server: Span, private readonly parentContext: Context) {
    this.sampled = (server.spanContext().traceFlags & 1) === 1;
    if (!this.sampled && server.isRecording()) this.recorded.push(server as unknown as ReadableSpan);
  }

  /** The context client spans start in: the server span's, made once per request. */
  childContext(): Context {
    this.child ??= trace.setSpan(this.parentContext, this.server);
    return this.child;
  }

  /** Ends the attempt in flight, if any: a failure with `code`, else the upstream's answer. */
  endAttempt(ctx: RequestContext, code: string | undefined): void {
    const span = this.attempt;
    if (span === undefined) return;
    this.attempt = undefined;
    if (span.isRecording()) {
      const status = ctx.response?.status;
      if (status !== undefined && ctx.timings.firstByte !== undefined && ctx.timings.firstByte >= ctx.timings.upstreamStart!) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      if (code !== undefined || (status !== undefined && status >= 500)) {
        span.setAttributes({ [ATTR_ERROR_TYPE]: code ?? String(status), 'switchyard.error.code': code, 'switchyard.attempt.outcome': 'failure' });
        span.setStatus({ code: SpanStatusCode.ERROR });
      } else {
        span.setAttribute('switchyard.attempt.outcome', 'success');
      }
      if (!this.sampled) this.recorded.push(span as unknown as ReadableSpan);
    }
    span.end();
  }
}

function tracedOf(ctx: RequestContext): Traced | undefined {
  return ctx.traceId === undefined ? undefined : ctx.scratch<Traced | undefined>(name, noTrace);
}

const noTrace = (): undefined => undefined;

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE']);

function serverAttributes(ctx: RequestContext, method: string, route: string | undefined): Record<string, string | number | undefined> {
  const { req } = ctx;
  const known = KNOWN_METHODS.has(method);
  const length = req.headers['content-length'];
  return {
    [ATTR_HTTP_REQUEST_METHOD]: known ? method : '_OTHER',
    [ATTR_HTTP_REQUEST_METHOD_ORIGINAL]: known ? undefined : method,
    [ATTR_HTTP_ROUTE]: route,
    // The path only: credentials ride in queries (`?key=`), never recorded.
    [ATTR_URL_PATH]: ctx.pathname,
    [ATTR_URL_SCHEME]: (req.socket as TLSSocket | null)?.encrypted === true ? 'https' : 'http',
    [ATTR_CLIENT_ADDRESS]: ctx.clientIp,
    [ATTR_USER_AGENT_ORIGINAL]: req.headers['user-agent'],
    [ATTR_NETWORK_PROTOCOL_VERSION]: req.httpVersion,
    'http.request.body.size': length === undefined ? undefined : Number(length),
    'switchyard.request_id': ctx.id,
  };
}

function clientAttributes(ctx: RequestContext, upstream: Upstream, method: string): Record<string, string | number | undefined> {
  const { target } = upstream;
  const path = ctx.outgoing.path;
  const query = path.indexOf('?');
  const resends = ctx.tried.length - 1;
  return {
    [ATTR_HTTP_REQUEST_METHOD]: KNOWN_METHODS.has(method) ? method : '_OTHER',
    [ATTR_SERVER_ADDRESS]: target.hostname,
    [ATTR_SERVER_PORT]: Number(target.port) || (target.protocol === 'https:' ? 443 : 80),
    // Without the query: an upstream key (upstream-auth) may be in it.
    [ATTR_URL_FULL]: `${target.origin}${query === -1 ? path : path.slice(0, query)}`,
    [ATTR_HTTP_REQUEST_RESEND_COUNT]: resends > 0 ? resends : undefined,
    'switchyard.upstream': upstream.name,
  };
}

/** The status the client got; a response cut short counts as the failure that cut it (499: the client left). */
function statusOf(ctx: RequestContext): number {
  if (ctx.res.writableFinished) return ctx.res.statusCode;
  return ctx.error && ctx.error.code !== 'SY_ERR_CLIENT_ABORTED' ? ctx.error.status : 499;
}

function samplerOf(settings: { sampleRatio: number; parentBased: boolean; alwaysSampleErrors: boolean }): Sampler {
  const ratio = new TraceIdRatioBasedSampler(settings.sampleRatio);
  const sampler = settings.parentBased ? new ParentBasedSampler({ root: ratio }) : ratio;
  return settings.alwaysSampleErrors ? new RecordingAll(sampler) : sampler;
}

/**
 * Records what `inner` would drop, without the sampled flag: those spans stay out of the export
 * unless the request fails (`alwaysSampleErrors`), and the upstream is told "not sampled".
 */
class RecordingAll implements Sampler {
  constructor(private readonly inner: Sampler) {}

  shouldSample(...args: Parameters<Sampler['shouldSample']>): SamplingResult {
    const result = this.inner.shouldSample(...args);
    return result.decision === SamplingDecision.NOT_RECORD ? { ...result, decision: SamplingDecision.RECORD } : result;
  }

  toString(): string {
    return `RecordingAll{${this.inner.toString()}}`;
  }
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
