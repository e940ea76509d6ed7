// The spans a recorded request makes: OpenTelemetry ReadableSpans, the objects the SDK's batch
// processor and the OTLP exporters take, made here rather than by the SDK's tracer. The SDK's
// tracer and span do, per span, what the plugin has already done or never needs: a context
// lookup and a parent check by regular expression, a sanitised copy of the options' attributes, a
// links array, two span-count metrics, two clock readings and an offset, a validity check and a
// hasOwnProperty per attribute. Its attributes object, keyed by a different string each time,
// then sends the exporter's loop over it through megamorphic loads. Here a span keeps its
// attributes as two arrays in the order set (`attributes` is made from them when a reader asks)
// and the plugin's own values, checked where they are made, go in without a check (`record`);
// what other plugins set through `ctx.span` gets the SDK's checks and limits (`setAttribute`).
// Callgrind, sampling 1, main thread: 281,114 → 252,601 instructions a request (bench/README.md,
// "Tracing on the plugin's own spans and transport"; plugins/tracing/README.md, "Cost").
import { diag, SpanStatusCode, type Attributes, type AttributeValue, type HrTime, type Link, type SpanContext, type SpanKind, type SpanStatus } from '@opentelemetry/api';
import { isAttributeValue, sanitizeAttributes } from '@opentelemetry/core';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';

/** What a span keeps at most: the SDK's span limits, from the same environment variables (settings.ts). */
export interface SpanLimitSettings {
  attributeCountLimit: number;
  /** Longer strings are cut to this many characters; Infinity keeps them whole. */
  attributeValueLengthLimit: number;
  eventCountLimit: number;
  attributePerEventCountLimit: number;
}

/** What every span of one plugin instance shares. */
export interface SpanSource {
  readonly resource: ReadableSpan['resource'];
  readonly instrumentationScope: ReadableSpan['instrumentationScope'];
  readonly limits: SpanLimitSettings;
  /** Takes each span as it ends. */
  onEnd(span: ReadableSpan): void;
}

const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });
const NOT_ENDED: HrTime = Object.freeze([0, 0]) as unknown as HrTime;
const NO_LINKS: Link[] = Object.freeze([]) as unknown as Link[];
/** Until a first event: most spans have none, and need no array of their own. */
const NO_EVENTS: TimedEvent[] = Object.freeze([]) as unknown as TimedEvent[];
/** Attributes whose value can be marked shared: a bit each in a 32-bit int, short of the sign bit. */
const SHAREABLE = 31;

export class ProxySpan implements ReadableSpan {
  /** Attribute keys in the order first set, and their values: the serializer reads these. */
  readonly keys: string[] = [];
  readonly values: AttributeValue[] = [];
  /** Bit i: values[i] is a string many spans share (recordShared), whose encoding the serializer keeps; read it with isSharedValue(). */
  sharedValues = 0;
  events: TimedEvent[] = NO_EVENTS;
  status: SpanStatus = UNSET;
  endTime: HrTime = NOT_ENDED;
  ended = false;
  droppedAttributesCount = 0;
  droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  readonly links: Link[] = NO_LINKS;
  readonly resource: ReadableSpan['resource'];
  readonly instrumentationScope: ReadableSpan['instrumentationScope'];
  /**
   * The ids as 32-bit words, big-endian, when this hop drew the trace (ids.ts): the trace id in
   * 0–3, the span id in 4–5 and, when the span has a parent, the parent's span id in 6–7. OTLP's
   * protobuf carries ids as bytes, and the serializer copies these rather than decode the hex
   * (otlp-protobuf.ts). Undefined for a trace a caller named: the hex is decoded.
   */
  idWords: Int32Array | undefined = undefined;

  constructor(
    private readonly context: SpanContext,
    readonly name: string,
    readonly kind: SpanKind,
    readonly parentSpanContext: SpanContext | undefined,
    readonly startTime: HrTime,
    private readonly source: SpanSource,
  ) {
    this.resource = source.resource;
    this.instrumentationScope = source.instrumentationScope;
  }

  spanContext(): SpanContext {
    return this.context;
  }

  /** endTime − startTime, worked out when read: OTLP's exporters never read it. */
  get duration(): HrTime {
    return this.ended ? hrDifference(this.endTime, this.startTime) : NOT_ENDED;
  }

  /** The attributes as an object, made on each read (exporters read it once). */
  get attributes(): Attributes {
    const attributes: Attributes = {};
    for (let i = 0; i < this.keys.length; i++) attributes[this.keys[i]!] = this.values[i];
    return attributes;
  }

  isRecording(): boolean {
    return !this.ended;
  }

  /**
   * One of the plugin's own attributes: a key no one has set on this span yet, a value of a kind
   * OTLP takes. Only the span's limits apply.
   */
  record(key: string, value: AttributeValue): void {
    if (this.keys.length >= this.source.limits.attributeCountLimit) {
      this.droppedAttributesCount++;
      return;
    }
    this.keys.push(key);
    this.values.push(this.cut(value));
  }

  /**
   * As record(), for a string that recurs across spans from a small set (a method, a route, an
   * upstream's name): the serializer writes it from a bounded cache of encodings instead of
   * encoding it again (otlp-protobuf.ts). Only the first SHAREABLE attributes can be so marked.
   */
  recordShared(key: string, value: string): void {
    const at = this.keys.length;
    this.record(key, value);
    if (at < SHAREABLE && this.keys.length > at) this.sharedValues |= 1 << at;
  }

  /** Whether values[at] was recorded as shared and not replaced since. */
  isSharedValue(at: number): boolean {
    return at < SHAREABLE && (this.sharedValues & (1 << at)) !== 0;
  }

  /** An attribute from anyone, checked as the SDK's span checks it; a key set again keeps its place. */
  setAttribute(key: string, value: unknown): void {
    if (value == null || this.ended) return;
    if (key.length === 0) {
      diag.warn(`Invalid attribute key: ${key}`);
      return;
    }
    if (!isAttributeValue(value)) {
      diag.warn(`Invalid attribute value set for key: ${key}`);
      return;
    }
    const at = this.keys.indexOf(key);
    if (at === -1) this.record(key, value);
    else {
      this.values[at] = this.cut(value);
      if (at < SHAREABLE) this.sharedValues &= ~(1 << at);
    }
  }

  setAttributes(attributes: Record<string, unknown>): void {
    for (const key in attributes) if (Object.hasOwn(attributes, key)) this.setAttribute(key, attributes[key]);
  }

  /** An event at `time` (epoch ms; now when undefined), the oldest dropped past the span's limit. */
  addEvent(name: string, attributes?: Record<string, unknown>, time?: number): void {
    if (this.ended) return;
    const { eventCountLimit, attributePerEventCountLimit } = this.source.limits;
    if (eventCountLimit === 0) {
      this.droppedEventsCount++;
      return;
    }
    if (this.events === NO_EVENTS) this.events = [];
    if (this.events.length >= eventCountLimit) {
      this.events.shift();
      this.droppedEventsCount++;
    }
    const kept: Attributes = {};
    let count = 0;
    let dropped = 0;
    const sanitized = sanitizeAttributes(attributes);
    for (const key in sanitized) {
      if (count >= attributePerEventCountLimit) dropped++;
      else {
        kept[key] = this.cut(sanitized[key]!);
        count++;
      }
    }
    this.events.push({ name, attributes: kept, time: time === undefined ? clock.now() : clock.fromEpochMs(time), droppedAttributesCount: dropped });
  }

  setStatus(status: SpanStatus): void {
    if (this.ended || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return;
    this.status = status;
  }

  /** Ends the span (`at`: a performance.now() reading; now when undefined) and hands it on. */
  end(at?: number): void {
    if (this.ended) {
      diag.error(`${this.name} ${this.context.traceId}-${this.context.spanId} - You can only call end() on a span once.`);
      return;
    }
    this.ended = true;
    this.endTime = at === undefined ? clock.now() : clock.fromPerformanceMs(at);
    this.source.onEnd(this);
  }

  /** A value within the span's length limit (strings, and the strings of an array). */
  private cut(value: AttributeValue): AttributeValue {
    const limit = this.source.limits.attributeValueLengthLimit;
    if (limit === Infinity) return value;
    if (typeof value === 'string') return value.length > limit ? value.slice(0, limit) : value;
    if (Array.isArray(value)) return value.map((item: unknown) => (typeof item === 'string' && item.length > limit ? item.slice(0, limit) : item)) as AttributeValue;
    return value;
  }
}

/**
 * Epoch times as HrTime, from the monotonic clock the core stamps requests with (performance.now(),
 * ms since `performance.timeOrigin`). The epoch of its zero is checked against Date.now() at most
 * once a second, as the SDK takes it (per span there), and moved only when the wall clock has
 * moved by more than RESYNC_MS: Date.now() counts whole milliseconds, and following its every
 * rounding would move a span's end against its start.
 */
class SpanClock {
  /** The epoch of performance.now() = 0 in ms, and as whole seconds and the milliseconds past them. */
  private zero = Number.NaN;
  private zeroSeconds = 0;
  private zeroMs = 0;
  private checkedAt = -Infinity;

  now(): HrTime {
    return this.fromPerformanceMs(performance.now());
  }

  fromPerformanceMs(ms: number): HrTime {
    if (ms - this.checkedAt > 1000 || ms < this.checkedAt) this.recheck();
    const sinceZero = this.zeroMs + ms;
    const seconds = Math.floor(sinceZero / 1000);
    return normalized(this.zeroSeconds + seconds, Math.round((sinceZero - seconds * 1000) * 1e6));
  }

  fromEpochMs(ms: number): HrTime {
    const seconds = Math.floor(ms / 1000);
    return normalized(seconds, Math.round((ms - seconds * 1000) * 1e6));
  }

  private recheck(): void {
    const performanceNow = performance.now();
    this.checkedAt = performanceNow;
    const zero = Date.now() - performanceNow;
    if (Math.abs(zero - this.zero) <= RESYNC_MS) return;
    this.zero = zero;
    this.zeroSeconds = Math.floor(zero / 1000);
    this.zeroMs = zero - this.zeroSeconds * 1000;
  }
}

const RESYNC_MS = 5;

export const clock = new SpanClock();

function normalized(seconds: number, nanos: number): HrTime {
  return nanos >= 1e9 ? [seconds + 1, nanos - 1e9] : [seconds, nanos];
}

function hrDifference(end: HrTime, start: HrTime): HrTime {
  let seconds = end[0] - start[0];
  let nanos = end[1] - start[1];
  if (nanos < 0) {
    seconds -= 1;
    nanos += 1e9;
  }
  return [seconds, nanos];
}
