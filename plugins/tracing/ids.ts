// Trace and span ids, from a pool of random bytes refilled 4 KiB at a time (one randomFillSync per
// ~170 requests), never the SDK's RandomIdGenerator (Math.random() and writeUInt32BE per 4 bytes).
// A new trace is drawn as the whole traceparent this hop sends when it does not record the request
// (`00-<trace id>-<span id>-00`): the hex digits go into a buffer shaped like the header and one
// native call makes the string; the trace id is a slice of it, which V8 makes without copying.
// Two hex toString() calls and a template string did the same work for 7,966 instructions per new
// unsampled trace, this for 6,321 (callgrind, the id, the SDK sampler's decision and undici's
// header check, in a loop: (instructions at 2n − at n) ÷ n, n = 20,000, one run of both). Writing
// the hex with a table of two-digit strings cost over 11,000: a string built of many pieces is
// dearer than one native call. The bytes of the trace id also give the sampling decision its
// input (sampling.ts), without reading the hex back.
// The request-level figures are in plugins/tracing/README.md, "Cost".
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let taken = POOL_BYTES;

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
const TRACEPARENT_SHAPE = '00-00000000000000000000000000000000-0000000000000000-00';
const traceparentBytes = Buffer.from(TRACEPARENT_SHAPE, 'latin1');
const TRACE_ID_AT = 3;
const SPAN_ID_AT = 36;

/** Where `bytes` fresh random bytes start in the pool; never all zero (an invalid id in W3C trace context). */
function fresh(bytes: number): number {
  for (;;) {
    if (taken + bytes > POOL_BYTES) {
      randomFillSync(pool);
      taken = 0;
    }
    const at = taken;
    taken += bytes;
    for (let i = at; i < at + bytes; i++) if (pool[i] !== 0) return at;
  }
}

/**
 * Writes `bytes` fresh random bytes as lower-case hex into traceparentBytes from `offset`;
 * returns where they are in the pool, valid until the next draw.
 */
function drawInto(offset: number, bytes: number): number {
  const at = fresh(bytes);
  for (let i = 0; i < bytes; i++) {
    const byte = pool[at + i]!;
    traceparentBytes[offset + 2 * i] = HEX_DIGITS[byte >> 4]!;
    traceparentBytes[offset + 2 * i + 1] = HEX_DIGITS[byte & 15]!;
  }
  return at;
}

/** A new trace: what newTrace() drew. */
export interface NewTrace {
  /** The traceparent of an unsampled first hop: `00-<32 hex>-<16 hex>-00`. */
  traceparent: string;
  /** The trace id's four 32-bit words xor-ed together, what the ratio rule decides on (sampling.ts). */
  spread: number;
}

const drawn: NewTrace = { traceparent: '', spread: 0 };

/** A new trace. The object is reused by the next call: read it at once. */
export function newTrace(): NewTrace {
  const at = drawInto(TRACE_ID_AT, 16);
  // Before the span id is drawn: a refill may reuse the pool.
  drawn.spread = (pool.readUInt32BE(at) ^ pool.readUInt32BE(at + 4) ^ pool.readUInt32BE(at + 8) ^ pool.readUInt32BE(at + 12)) >>> 0;
  drawInto(SPAN_ID_AT, 8);
  drawn.traceparent = traceparentBytes.toString('latin1', 0, TRACEPARENT_SHAPE.length);
  return drawn;
}

/** The trace id of a traceparent made by newTrace(). */
export function traceIdOf(traceparent: string): string {
  return traceparent.slice(TRACE_ID_AT, TRACE_ID_AT + 32);
}

/** The span id of a traceparent made by newTrace(). */
export function spanIdOf(traceparent: string): string {
  return traceparent.slice(SPAN_ID_AT, SPAN_ID_AT + 16);
}

/** 16 lower-case hex digits. */
export function newSpanId(): string {
  const at = fresh(8);
  return pool.toString('hex', at, at + 8);
}
