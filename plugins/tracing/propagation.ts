// Trace context in and out: W3C `traceparent`/`tracestate` always, B3 (single `b3` header or the
// X-B3-* set) for older meshes when asked. The parsing is OpenTelemetry's, but for the canonical
// traceparent (traceparent.ts); the traceparent written upstream is formatted here, a fixed
// 55-character string.
import { ROOT_CONTEXT, trace, type SpanContext, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3';
import type { IncomingHttpHeaders } from 'node:http';
import { readTraceparent, TRACEPARENT_LENGTH } from './traceparent.js';

export type B3Mode = 'off' | 'single' | 'multi';

const headerGetter: TextMapGetter<IncomingHttpHeaders> = {
  keys: (headers) => Object.keys(headers),
  get: (headers, key) => headers[key.toLowerCase()],
};

const headerSetter: TextMapSetter<IncomingHttpHeaders> = {
  set: (headers, key, value) => {
    headers[key.toLowerCase()] = value;
  },
};

export class Propagation {
  private readonly b3: B3Propagator | undefined;

  constructor(b3: B3Mode) {
    this.b3 = b3 === 'off' ? undefined : new B3Propagator({ injectEncoding: b3 === 'single' ? B3InjectEncoding.SINGLE_HEADER : B3InjectEncoding.MULTI_HEADER });
  }

  /** The caller's span, from `traceparent` (and `tracestate`), else from B3 when enabled; undefined for none or a malformed one. */
  parent(headers: IncomingHttpHeaders): SpanContext | undefined {
    const traceparent = headers.traceparent;
    if (typeof traceparent === 'string') {
      const parent = readTraceparent(traceparent);
      // null too for W3C's invalid all-zero ids (the library's pattern excludes them).
      if (parent !== null) {
        parent.isRemote = true;
        const tracestate = headers.tracestate;
        if (tracestate !== undefined) parent.traceState = new TraceState(Array.isArray(tracestate) ? tracestate.join(',') : tracestate);
        return parent;
      }
    }
    if (this.b3 === undefined) return undefined;
    return trace.getSpanContext(this.b3.extract(ROOT_CONTEXT, headers, headerGetter));
  }

  /**
   * Whether the caller's traceparent can go upstream as it came, for a request this hop does not
   * record: W3C version 00 with nothing around it, and no B3 to write beside it.
   */
  passesOn(headers: IncomingHttpHeaders): boolean {
    if (this.b3 !== undefined) return false;
    const traceparent = headers.traceparent;
    return typeof traceparent === 'string' && traceparent.length === TRACEPARENT_LENGTH && traceparent.startsWith('00-');
  }

  /**
   * Names `span` as the parent of what the upstream does: traceparent (`formatted` when the caller
   * has it already), and B3 when enabled. The caller's tracestate goes on as it came.
   */
  stamp(headers: IncomingHttpHeaders, span: SpanContext, formatted?: string): void {
    headers.traceparent = formatted ?? `00-${span.traceId}-${span.spanId}-0${span.traceFlags & 1}`;
    if (this.b3 !== undefined) this.b3.inject(trace.setSpanContext(ROOT_CONTEXT, span), headers, headerSetter);
  }
}
