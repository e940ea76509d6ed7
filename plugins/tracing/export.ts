// From ended spans to the collector: OpenTelemetry's BatchSpanProcessor and OTLP export delegate
// (its bounded concurrency and timeouts) with the serializer for the protocol and the plugin's
// transport (transport.ts), a door in front of the batch queue and a counter behind the exporter,
// so every span that does not reach the collector is counted in /metrics. Nothing here runs on a
// request's path but onEnd(), which only queues: an exporter that is down or hangs costs
// requests nothing.
import type { Context } from '@opentelemetry/api';
import { TraceFlags } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { createOtlpNetworkExportDelegate, OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { createOtlpHttpExporterMetrics } from '@opentelemetry/otlp-exporter-base/node-http';
import { JsonTraceSerializer, ProtobufTraceSerializer, TraceExporterMetricsHelper } from '@opentelemetry/otlp-transformer';
import { BatchSpanProcessor, type ReadableSpan, type Span, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Logger } from 'pino';
import { serializeSpans } from './otlp-protobuf.js';
import type { TracingSettings } from './settings.js';
import { shownUrl } from './settings.js';
import { createTransport } from './transport.js';

/** Where the counts go: prom-client counters, shared by every instance in the registry. */
export interface ExportCounters {
  exported(count: number): void;
  dropped(reason: 'queue_full' | 'export_failed' | 'shutdown', count: number): void;
}

/**
 * The batch processor behind a bounded door. The batch processor drops spans itself when its
 * queue is full, but only says so to the OpenTelemetry diagnostic log; the door keeps the same
 * bound (spans queued = spans let in − spans handed to the exporter) and counts what it turns away.
 */
export class CountedBatchProcessor implements SpanProcessor {
  private readonly batch: BatchSpanProcessor;
  private readonly exporter: CountingExporter;
  private readonly maxQueueSize: number;
  private letIn = 0;
  private closed = false;

  constructor(settings: TracingSettings, counters: ExportCounters, log: Logger) {
    this.exporter = new CountingExporter(otlpExporter(settings), counters, log, shownUrl(settings.url));
    this.maxQueueSize = settings.maxQueueSize;
    this.batch = new BatchSpanProcessor(this.exporter, {
      maxQueueSize: settings.maxQueueSize,
      maxExportBatchSize: settings.maxExportBatchSize,
      scheduledDelayMillis: settings.scheduleDelayMs,
      exportTimeoutMillis: settings.exportTimeoutMs,
    });
    this.counters = counters;
  }

  private readonly counters: ExportCounters;

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    this.enqueue(span);
  }

  /**
   * Exports a span recorded without the sampled flag (an unsampled request that failed, kept by
   * `alwaysSampleErrors`): the batch processor only takes sampled spans, so it gets a view of the
   * span that says sampled and is otherwise the span itself.
   */
  keep(span: ReadableSpan): void {
    const context = span.spanContext();
    const sampled = { ...context, traceFlags: context.traceFlags | TraceFlags.SAMPLED };
    this.enqueue(Object.create(span, { spanContext: { value: () => sampled } }) as ReadableSpan);
  }

  private enqueue(span: ReadableSpan): void {
    if (this.closed) {
      this.counters.dropped('shutdown', 1);
      return;
    }
    if (this.letIn - this.exporter.handedOver >= this.maxQueueSize) {
      this.counters.dropped('queue_full', 1);
      return;
    }
    this.letIn++;
    this.batch.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return this.batch.forceFlush();
  }

  /** Sends what is queued, waiting at most `limitMs`; what is still queued then is counted as dropped. */
  async shutdown(limitMs = Infinity): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => {
      if (Number.isFinite(limitMs)) timer = setTimeout(resolve, limitMs).unref();
    });
    await Promise.race([this.batch.shutdown().catch(() => undefined), limit]);
    clearTimeout(timer);
    const left = this.letIn - this.exporter.handedOver;
    if (left > 0) this.counters.dropped('shutdown', left);
  }
}

/** Counts each batch's fate and logs when exporting starts failing and when it works again. */
class CountingExporter implements SpanExporter {
  /** Spans the batch processor took out of its queue and handed over so far. */
  handedOver = 0;
  private failing = false;

  constructor(
    private readonly inner: SpanExporter,
    private readonly counters: ExportCounters,
    private readonly log: Logger,
    private readonly shown: string,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.handedOver += spans.length;
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) {
        this.counters.exported(spans.length);
        if (this.failing) this.log.info({ collector: this.shown }, 'spans reach the collector again');
        this.failing = false;
      } else {
        this.counters.dropped('export_failed', spans.length);
        // The exporter's error names the status or the socket error, never the request's headers.
        if (!this.failing) this.log.warn({ collector: this.shown, reason: result.error?.message }, 'could not export spans; dropping them and trying again with the next batch');
        this.failing = true;
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/**
 * OpenTelemetry's OTLP exporter for the protocol: for protobuf the one-pass serializer of
 * otlp-protobuf.ts (the same bytes as the library's), for JSON the library's serializer.
 */
function otlpExporter(settings: TracingSettings): SpanExporter {
  const protobuf = settings.protocol === 'http/protobuf';
  const serializer = protobuf ? { serializeRequest: serializeSpans, deserializeResponse: ProtobufTraceSerializer.deserializeResponse } : JsonTraceSerializer;
  const transport = createTransport({
    url: settings.url,
    headers: { ...settings.headers, 'content-type': protobuf ? 'application/x-protobuf' : 'application/json' },
    compression: settings.compression,
    tls: settings.tls,
  });
  const metrics = createOtlpHttpExporterMetrics('otlp_http_span_exporter', TraceExporterMetricsHelper, settings.url, undefined);
  // One batch at a time is what the batch processor sends; a few more for forced flushes.
  const delegate = createOtlpNetworkExportDelegate({ timeoutMillis: settings.timeoutMs, concurrencyLimit: 4, compression: settings.compression }, serializer, metrics, transport);
  return new OTLPExporterBase<ReadableSpan[]>(delegate);
}
