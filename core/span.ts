// `ctx.span`: where a plugin records what it knows about a request (a model name, a token count, a
// refusal) on the request's trace span. A tracing plugin puts a recording span there for the
// requests it samples; everywhere else it is NO_SPAN, which drops what it is given, so a plugin
// calls it without asking whether tracing is configured. The shape is a subset of OpenTelemetry's
// Span: an OpenTelemetry span is a RequestSpan as it is, and the core needs no tracing library.

/** A span attribute's value, as OpenTelemetry takes it. */
export type SpanAttributeValue = string | number | boolean | Array<string | null | undefined> | Array<number | null | undefined> | Array<boolean | null | undefined>;

export type SpanAttributes = Record<string, SpanAttributeValue | undefined>;

export interface RequestSpan {
  /** False when nothing is recorded (no tracing plugin, or the request is not sampled): skip costly attributes. */
  isRecording(): boolean;
  setAttribute(key: string, value: SpanAttributeValue): void;
  setAttributes(attributes: SpanAttributes): void;
  /** Something that happened at a moment of the request (now, unless `time` says when: epoch ms). */
  addEvent(name: string, attributes?: SpanAttributes, time?: number): void;
}

class NoSpan implements RequestSpan {
  isRecording(): boolean {
    return false;
  }

  setAttribute(): void {}

  setAttributes(): void {}

  addEvent(): void {}
}

/** The span of a request nothing traces: records nothing. */
export const NO_SPAN: RequestSpan = Object.freeze(new NoSpan());
