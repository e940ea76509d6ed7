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
// input (sampling.ts), without reading the hex back. Each byte's two digits go in with one
// DataView store of a 16-bit pair, and the spread is read with DataView loads, which compile to
// plain loads where Buffer's readUInt32BE stays a call: 2,313 → about 1,500 instructions a draw
// against per-byte table lookups (bench/callgrind/trace-ids.mjs; two runs, 1,417 and 1,561).
// The request-level figures are in plugins/tracing/README.md, "Cost".
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
/** The pool's big-endian words (DataView reads compile to loads; Buffer's readUInt32BE stays a call). */
const poolView = new DataView(pool.buffer, pool.byteOffset, POOL_BYTES);
let taken = POOL_BYTES;

const TRACEPARENT_SHAPE = '00-00000000000000000000000000000000-0000000000000000-00';
const traceparentBytes = Buffer.from(TRACEPARENT_SHAPE, 'latin1');
/** Writes two bytes at any offset in one store (the ids' offsets are odd and even). */
const traceparentView = new DataView(traceparentBytes.buffer, traceparentBytes.byteOffset, traceparentBytes.length);
/** A byte's two hex digits as they lie in memory when stored little-endian: the first in the low 8 bits. */
const HEX_PAIRS = Uint16Array.from({ length: 256 }, (_, byte) => '0123456789abcdef'.charCodeAt(byte >> 4) | ('0123456789abcdef'.charCodeAt(byte & 15) << 8));
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
  for (let i = 0; i < bytes; i++) traceparentView.setUint16(offset + 2 * i, HEX_PAIRS[pool[at + i]!]!, true);
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
  // Read before the span id is drawn: a refill may reuse the pool.
  drawn.spread = (poolView.getUint32(at) ^ poolView.getUint32(at + 4) ^ poolView.getUint32(at + 8) ^ poolView.getUint32(at + 12)) >>> 0;
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
