// Ended spans as an OTLP/protobuf ExportTraceServiceRequest: the same bytes as OpenTelemetry's
// own serializer (`ProtobufTraceSerializer` of @opentelemetry/otlp-transformer; a test holds
// them equal over every kind of value), written in one pass with Node's native UTF-8 writer.
// The library's sizes the message in a first pass and writes it in a second, both
// reading every string one character at a time, and in the proxy those strings come in many of
// V8's string representations, so its loops run on megamorphic property loads: about half of
// a sampled request's instructions. `bench/callgrind/otlp-serializer.mjs` (the plugin's two
// spans a request, 512 to a batch): 101,988 instructions a request for the library's, 46,244
// for this, 29,329 after the cuts below, 25,803 with a new trace's ids copied as words; in the
// proxy at sampling 1, 464,734 → 282,304 a request at first (plugins/tracing/README.md).
import type { Attributes, AttributeValue, HrTime, Link, SpanContext } from '@opentelemetry/api';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { ProxySpan } from './span.js';

// Wire types.
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

// Span flags (the W3C flags in the low byte, then whether the parent's context is remote).
const FLAGS_HAS_IS_REMOTE = 0x100;
const FLAGS_IS_REMOTE = 0x200;
/** Span's field 16, the flags: a key past one byte, which tag() does not write. */
const SPAN_FLAGS_KEY = (16 << 3) | FIXED32;

const TWO_TO_32 = 0x100000000;
const FIRST_BUFFER_SIZE = 64 * 1024;
const KEPT_BUFFER_MAX = 4 * 1024 * 1024;
const MIN_INT64 = -(2 ** 63);
const MAX_INT64_EXCLUSIVE = 2 ** 63;

/** The request's bytes, a copy the caller keeps (the exporter retries with them later). */
export function serializeSpans(spans: ReadableSpan[]): Uint8Array {
  const out = writer;
  out.pos = 0;
  for (const [resource, scopes] of groupByResourceAndScope(spans)) {
    out.tag(1, LENGTH_DELIMITED); // ResourceSpans
    const resourceSpans = out.begin();
    out.tag(1, LENGTH_DELIMITED); // Resource
    const resourceStart = out.begin();
    writeAttributes(out, resource.attributes, 1);
    out.tag(2, VARINT); // dropped_attributes_count
    out.varint(0);
    out.end(resourceStart);
    for (const scopeSpans of scopes.values()) {
      out.tag(2, LENGTH_DELIMITED);
      writeScopeSpans(out, scopeSpans);
    }
    out.optionalString(3, resource.schemaUrl);
    out.end(resourceSpans);
  }
  const request = Buffer.from(out.buf.subarray(0, out.pos));
  // One batch of outsized attributes must not hold its buffer for the life of the process.
  if (out.buf.length > KEPT_BUFFER_MAX) out.shrink();
  return request;
}

type Resource = ReadableSpan['resource'];
type Scope = ReadableSpan['instrumentationScope'];

/** Spans under their resource and instrumentation scope, in the order each first appears. */
function groupByResourceAndScope(spans: ReadableSpan[]): Map<Resource, Map<Scope, ReadableSpan[]>> {
  const byResource = new Map<Resource, Map<Scope, ReadableSpan[]>>();
  for (const span of spans) {
    let byScope = byResource.get(span.resource);
    if (byScope === undefined) byResource.set(span.resource, (byScope = new Map()));
    const list = byScope.get(span.instrumentationScope);
    if (list === undefined) byScope.set(span.instrumentationScope, [span]);
    else list.push(span);
  }
  return byResource;
}

function writeScopeSpans(out: Writer, spans: ReadableSpan[]): void {
  const start = out.begin();
  const scope = spans[0]!.instrumentationScope;
  out.tag(1, LENGTH_DELIMITED); // InstrumentationScope
  const scopeStart = out.begin();
  out.tag(1, LENGTH_DELIMITED);
  out.string(scope.name);
  out.optionalString(2, scope.version);
  const { attributes, droppedAttributesCount } = scope as Scope & { attributes?: Attributes; droppedAttributesCount?: number };
  if (attributes) writeAttributes(out, attributes, 3);
  if (droppedAttributesCount) {
    out.tag(4, VARINT);
    out.varint(droppedAttributesCount);
  }
  out.end(scopeStart);
  for (const span of spans) {
    out.tag(2, LENGTH_DELIMITED);
    writeSpan(out, span);
  }
  out.optionalString(3, scope.schemaUrl);
  out.end(start);
}

function writeSpan(out: Writer, span: ReadableSpan): void {
  const start = out.begin();
  const context = span.spanContext();
  // Ids this hop drew are kept as words too: the hex's bytes, copied, not decoded. Five ids a
  // request decoded from hex cost ~6,650 instructions in the proxy at sampling 1, as words ~1,000.
  const words = span instanceof ProxySpan ? span.idWords : undefined;
  writeIds(out, context, words);
  const parent = span.parentSpanContext;
  if (parent?.spanId) {
    out.tag(4, LENGTH_DELIMITED);
    if (words === undefined) out.hex(parent.spanId);
    else out.words(words, 6, 2);
  }
  out.tag(5, LENGTH_DELIMITED);
  out.repeated(span.name);
  // OTLP's SpanKind counts from UNSPECIFIED = 0, the API's from INTERNAL = 0.
  if (span.kind != null) {
    out.tag(6, VARINT);
    out.varint(span.kind + 1);
  }
  out.tag(7, FIXED64);
  out.time(span.startTime);
  out.tag(8, FIXED64);
  out.time(span.endTime);
  if (span instanceof ProxySpan) writeAttributeList(out, span, 9);
  else writeAttributes(out, span.attributes, 9);
  out.tag(10, VARINT);
  out.varint(span.droppedAttributesCount);
  for (const event of span.events) {
    out.tag(11, LENGTH_DELIMITED);
    writeEvent(out, event);
  }
  out.tag(12, VARINT);
  out.varint(span.droppedEventsCount);
  for (const link of span.links) {
    out.tag(13, LENGTH_DELIMITED);
    writeLink(out, link);
  }
  out.tag(14, VARINT);
  out.varint(span.droppedLinksCount);
  out.tag(15, LENGTH_DELIMITED); // Status
  const statusStart = out.begin();
  out.optionalString(2, span.status.message);
  out.tag(3, VARINT);
  out.varint(span.status.code);
  out.end(statusStart);
  out.varint(SPAN_FLAGS_KEY);
  out.fixed32(spanFlags(context, parent?.isRemote));
  out.end(start);
}

function writeEvent(out: Writer, event: TimedEvent): void {
  const start = out.begin();
  out.tag(1, FIXED64);
  out.time(event.time);
  out.tag(2, LENGTH_DELIMITED);
  out.repeated(event.name);
  if (event.attributes) writeAttributes(out, event.attributes, 3);
  out.tag(4, VARINT);
  out.varint(event.droppedAttributesCount || 0);
  out.end(start);
}

function writeLink(out: Writer, link: Link): void {
  const start = out.begin();
  const { context } = link;
  writeIds(out, context);
  if (link.attributes) writeAttributes(out, link.attributes, 4);
  out.tag(5, VARINT);
  out.varint(link.droppedAttributesCount || 0);
  out.tag(6, FIXED32);
  out.fixed32(spanFlags(context, context.isRemote));
  out.end(start);
}

/** trace_id, span_id and trace_state: fields 1 to 3 of both Span and Link; the ids from `words` when given (ProxySpan.idWords). */
function writeIds(out: Writer, context: SpanContext, words?: Int32Array): void {
  out.tag(1, LENGTH_DELIMITED);
  if (words === undefined) out.hex(context.traceId);
  else out.words(words, 0, 4);
  out.tag(2, LENGTH_DELIMITED);
  if (words === undefined) out.hex(context.spanId);
  else out.words(words, 4, 2);
  out.optionalString(3, context.traceState?.serialize());
}

function spanFlags(context: SpanContext, isRemote: boolean | undefined): number {
  return (context.traceFlags & 0xff) | FLAGS_HAS_IS_REMOTE | (isRemote ? FLAGS_IS_REMOTE : 0);
}

/** Repeated KeyValue at `field`: own enumerable keys in their enumeration order. */
function writeAttributes(out: Writer, attributes: Attributes, field: number): void {
  for (const key in attributes) {
    if (!Object.hasOwn(attributes, key)) continue;
    out.tag(field, LENGTH_DELIMITED);
    writeKeyValue(out, key, attributes[key]);
  }
}

/**
 * The same, from the plugin's own spans' keys and values: no object to walk. A value the span
 * says is shared (ProxySpan.recordShared, isSharedValue) is written with its key as one cached
 * KeyValue (writeSharedKeyValue). Seven such values a request (methods, route, scheme, protocol
 * version, server address, upstream, outcome). Key and value each from the cache of recurring
 * strings had cost 44,410 → 41,275 instructions a request in `bench/callgrind/otlp-serializer.mjs`;
 * the whole KeyValue cached, 38,294 → 32,224, and in the proxy at sampling 1 (main thread)
 * 232,649 → 228,686.
 */
function writeAttributeList(out: Writer, span: ProxySpan, field: number): void {
  const { keys, values } = span;
  for (let i = 0; i < keys.length; i++) {
    out.tag(field, LENGTH_DELIMITED);
    if (span.isSharedValue(i)) writeSharedKeyValue(out, keys[i]!, values[i] as string);
    else writeKeyValue(out, keys[i]!, values[i]);
  }
}

/** A KeyValue, its key written from the cache of recurring strings. */
function writeKeyValue(out: Writer, key: string, value: unknown): void {
  const start = out.begin();
  out.tag(1, LENGTH_DELIMITED);
  out.repeated(key);
  out.tag(2, LENGTH_DELIMITED);
  const valueStart = out.begin();
  writeAnyValue(out, value);
  out.end(valueStart);
  out.end(start);
}

/**
 * A KeyValue whose value is a shared string too (a method, a route, an upstream): the whole
 * KeyValue, length first, is kept once written and copied in from then on, one copy where key and
 * value were two, with their tags and lengths. Bounded as the recurring strings are.
 */
function writeSharedKeyValue(out: Writer, key: string, value: string): void {
  let byValue = sharedKeyValues.get(key);
  const encoded = byValue?.get(value);
  if (encoded !== undefined) {
    out.copy(encoded);
    return;
  }
  const start = out.pos;
  writeKeyValue(out, key, value);
  if (sharedKeyValueCount >= REPEATED_MAX || value.length > REPEATED_MAX_LENGTH) return;
  if (byValue === undefined) sharedKeyValues.set(key, (byValue = new Map()));
  byValue.set(value, Buffer.from(out.buf.subarray(start, out.pos)));
  sharedKeyValueCount++;
}

/** AnyValue's fields; a value of no OTLP kind (undefined, a function) leaves it empty. */
function writeAnyValue(out: Writer, value: AttributeValue | unknown): void {
  if (typeof value === 'string') {
    out.tag(1, LENGTH_DELIMITED);
    out.string(value);
  } else if (typeof value === 'boolean') {
    out.tag(2, VARINT);
    out.varint(value ? 1 : 0);
  } else if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= MIN_INT64 && value < MAX_INT64_EXCLUSIVE) {
      out.tag(3, VARINT);
      out.int64(value);
    } else {
      out.tag(4, FIXED64);
      out.double(value);
    }
  } else if (value instanceof Uint8Array) {
    out.tag(7, LENGTH_DELIMITED);
    out.bytes(value);
  } else if (Array.isArray(value)) {
    out.tag(5, LENGTH_DELIMITED); // ArrayValue
    const start = out.begin();
    for (const item of value) {
      out.tag(1, LENGTH_DELIMITED);
      const itemStart = out.begin();
      writeAnyValue(out, item);
      out.end(itemStart);
    }
    out.end(start);
  } else if (typeof value === 'object' && value !== null) {
    out.tag(6, LENGTH_DELIMITED); // KeyValueList
    const start = out.begin();
    writeAttributes(out, value as Attributes, 1);
    out.end(start);
  }
}

/**
 * A growing buffer with protobuf's primitive encodings. A length-delimited field reserves one
 * byte for its length (`begin`), enough for anything under 128 bytes; `end` moves the field's
 * bytes along when the length needs more.
 */
class Writer {
  buf = Buffer.allocUnsafe(FIRST_BUFFER_SIZE);
  /**
   * The same bytes, for fixed-width numbers (times, flags, doubles): a DataView store compiles to
   * a plain store where Buffer's writeUInt32LE stays a call with its range checks. 39,159 → 37,783
   * instructions a request in `bench/callgrind/otlp-serializer.mjs`.
   */
  private view = viewOf(this.buf);
  pos = 0;

  /** Starts over on a fresh buffer of the first size. */
  shrink(): void {
    this.buf = Buffer.allocUnsafe(FIRST_BUFFER_SIZE);
    this.view = viewOf(this.buf);
  }

  private room(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + bytes) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
    this.view = viewOf(grown);
  }

  /**
   * A field's key, for fields 1 to 15: one byte. Not through varint(), whose loop kept it from
   * being inlined: 41,275 → 39,159 instructions a request in `bench/callgrind/otlp-serializer.mjs`
   * (with a branch for larger fields here, 40,075). Span's flags, field 16, take two (SPAN_FLAGS_KEY).
   */
  tag(field: number, wireType: number): void {
    this.room(1);
    this.buf[this.pos++] = (field << 3) | wireType;
  }

  /** A non-negative integer below 2^32. */
  varint(value: number): void {
    this.room(5);
    let v = value >>> 0;
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }

  /** Any integer in int64's range; negative ones in ten bytes of two's complement. */
  int64(value: number): void {
    if (value >= 0 && value < TWO_TO_32) {
      this.varint(value);
      return;
    }
    const magnitude = Math.abs(value);
    let low = magnitude >>> 0;
    let high = (magnitude / TWO_TO_32) >>> 0;
    if (value < 0) {
      low = (~low + 1) >>> 0;
      high = (~high + (low === 0 ? 1 : 0)) >>> 0;
    }
    this.room(10);
    while (high > 0 || low > 0x7f) {
      this.buf[this.pos++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    this.buf[this.pos++] = low;
  }

  fixed32(value: number): void {
    this.room(4);
    this.view.setUint32(this.pos, value >>> 0, true);
    this.pos += 4;
  }

  double(value: number): void {
    this.room(8);
    this.view.setFloat64(this.pos, value, true);
    this.pos += 8;
  }

  /**
   * An HrTime as fixed64 nanoseconds. seconds × 10⁹ passes 2^53, so the seconds are split at 16
   * bits and each part's product (exact, under 2^47) is added into two 32-bit words.
   */
  time([seconds, nanos]: HrTime): void {
    const upper = Math.floor(seconds / 0x10000);
    const fromUpper = upper * 1e9; // shifted left by 16 bits below
    const fromLower = (seconds - upper * 0x10000) * 1e9 + nanos;
    const low = (fromUpper % 0x10000) * 0x10000 + (fromLower % TWO_TO_32);
    const high = Math.floor(fromUpper / 0x10000) + Math.floor(fromLower / TWO_TO_32) + Math.floor(low / TWO_TO_32);
    this.room(8);
    this.view.setUint32(this.pos, low >>> 0, true);
    this.view.setUint32(this.pos + 4, high >>> 0, true);
    this.pos += 8;
  }

  /**
   * A string that recurs in every batch (attribute keys, span and event names): its encoded
   * bytes, length first, are kept and copied in, one native call fewer per use (a native call
   * costs about as much as the rest of an attribute). Bounded: once REPEATED_MAX strings are
   * kept, and for any string over REPEATED_MAX_LENGTH characters, it is written as any string.
   */
  repeated(text: string): void {
    let encoded = repeatedStrings.get(text);
    if (encoded === undefined) {
      if (repeatedStrings.size >= REPEATED_MAX || text.length > REPEATED_MAX_LENGTH) {
        this.string(text);
        return;
      }
      const start = this.pos;
      this.string(text);
      encoded = Buffer.from(this.buf.subarray(start, this.pos));
      repeatedStrings.set(text, encoded);
      return;
    }
    this.copy(encoded);
  }

  /** Bytes as they are. */
  copy(encoded: Uint8Array): void {
    this.room(encoded.length);
    this.buf.set(encoded, this.pos);
    this.pos += encoded.length;
  }

  /** A string field proto3 leaves out when empty (or, here, absent). */
  optionalString(field: number, text: string | undefined): void {
    if (!text) return;
    this.tag(field, LENGTH_DELIMITED);
    this.string(text);
  }

  /** UTF-8 with its length; a string short enough for a one-byte length is written in one call. */
  string(text: string): void {
    const most = text.length * 3;
    this.room(most + 5);
    if (most < 0x80) {
      const written = this.buf.write(text, this.pos + 1);
      this.buf[this.pos] = written;
      this.pos += written + 1;
      return;
    }
    this.varint(Buffer.byteLength(text));
    this.pos += this.buf.write(text, this.pos);
  }

  /**
   * Bytes spelled in hex (trace and span ids). Ids are decoded here, four bytes a store: Buffer's
   * hex write is a native call, about 1,350 instructions an id, five ids a request.
   * `bench/callgrind/otlp-serializer.mjs`: 32,224 → 29,329 instructions a request; in the proxy
   * at sampling 1 (main thread), 228,686 → 225,033–225,310.
   */
  hex(text: string): void {
    const length = text.length >>> 1;
    this.varint(length);
    this.room(length);
    if (text.length === 2 * length && length % 4 === 0 && this.hexWords(text, length)) {
      this.pos += length;
      return;
    }
    const written = this.buf.write(text, this.pos, length, 'hex');
    // Not hex (ids the SDK and the propagators check never are): zeros, at the declared length.
    if (written < length) this.buf.fill(0, this.pos + written, this.pos + length);
    this.pos += length;
  }

  /**
   * `length` bytes (a multiple of 4) from their hex digits, as big-endian words at pos; false for
   * a character that is not a hex digit, whatever it wrote then being written over.
   */
  private hexWords(text: string, length: number): boolean {
    let seen = 0;
    for (let word = 0; word < length; word += 4) {
      let value = 0;
      for (let i = 2 * word; i < 2 * word + 8; i++) {
        const code = text.charCodeAt(i);
        const nibble = HEX_VALUES[code & 0xff]!;
        // -1 (not a digit) sets every high bit, a code past 0xff some: either fails the test below.
        seen |= nibble | (code >> 8);
        value = (value << 4) | nibble;
      }
      this.view.setInt32(this.pos + word, value);
    }
    return (seen & ~0xf) === 0;
  }

  /** `count` 32-bit words from `from`, as 4 × count bytes, big-endian (ids kept as words). */
  words(words: Int32Array, from: number, count: number): void {
    this.varint(4 * count);
    this.room(4 * count);
    for (let i = 0; i < count; i++) this.view.setInt32(this.pos + 4 * i, words[from + i]!);
    this.pos += 4 * count;
  }

  bytes(value: Uint8Array): void {
    this.varint(value.length);
    this.room(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }

  /** Reserves the length byte of a length-delimited field; returns where it is. */
  begin(): number {
    this.room(1);
    return this.pos++;
  }

  end(at: number): void {
    const length = this.pos - at - 1;
    if (length < 0x80) {
      this.buf[at] = length;
      return;
    }
    let extra = 1;
    while (length >= 2 ** (7 * (extra + 1))) extra++;
    this.room(extra);
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    this.pos += extra;
    let v = length;
    let p = at;
    while (v > 0x7f) {
      this.buf[p++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[p] = v;
  }
}

function viewOf(buf: Buffer): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.length);
}

/** Each byte's value as a hex digit, -1 for any other character. */
const HEX_VALUES = new Int8Array(256).fill(-1);
for (let digit = 0; digit < 16; digit++) {
  HEX_VALUES['0123456789abcdef'.charCodeAt(digit)] = digit;
  HEX_VALUES['0123456789ABCDEF'.charCodeAt(digit)] = digit;
}

const REPEATED_MAX = 1024;
const REPEATED_MAX_LENGTH = 128;
const repeatedStrings = new Map<string, Buffer>();
/** Whole KeyValues by key, then shared value; sharedKeyValueCount of them in all. */
const sharedKeyValues = new Map<string, Map<string, Buffer>>();
let sharedKeyValueCount = 0;

/** How many encodings the serializer keeps: each cache stays within REPEATED_MAX (for the tests). */
export function keptEncodings(): { strings: number; keyValues: number } {
  return { strings: repeatedStrings.size, keyValues: sharedKeyValueCount };
}
const writer = new Writer();
