// Trace and span ids, never the SDK's RandomIdGenerator (Math.random() and writeUInt32BE per 4
// bytes). A leaf module: the batching below is a measured speed trick, the one core/request-id.ts
// uses for request ids.
//
// Ids are made 512 at a time as whole traceparents (`00-<trace id>-<span id>-00`, the header a hop
// that does not record the request sends) into one string, and each draw takes a slice of it,
// which V8 makes without copying; a trace or span id is a slice of that slice. Drawing each
// traceparent into a buffer and reading it back with one toString() per draw cost 2,351
// instructions a draw with its trace id, this 972 (bench/callgrind/trace-ids.mjs: (instructions
// at 40,000 draws − at 20,000) ÷ 20,000); in the proxy at sampling 0, 175,900 → 174,861 a request
// (bench/callgrind/run.sh, main thread). The per-draw toString() was ~450 of it, and its second
// encoding (`hex`, for span ids) made Buffer's toString polymorphic for every caller in the
// process: at sampling 0.01, 177,668 → 176,427.
// The sampling decision reads the trace id's random bytes, not its hex (sampling.ts).
//
// 512, not 128: a batch's randomFillSync() costs what it costs per call more than per byte (6.9 µs
// for 128 ids' 3 KiB, 9.7 µs for 1,024 ids' 24 KiB, alone in a loop), and in the proxy, where its
// code is cold each time, V8's sampling profiler put 0.20–0.30 % of the CPU at sampling 0 in it
// with batches of 128, a third of the plugin's own frames (bench/README.md, "What tracing costs
// by being there"). The draw that writes a batch takes ~25 µs (median of 2,000 batches, alone).
//
// A slice keeps its batch (28 KiB) alive: what a span holds until its export is detached() first.
import { randomFillSync } from 'node:crypto';
import { hexDigitsOf16 } from '../../core/index.js';
import { SPAN_ID_AT, TRACE_ID_AT, TRACEPARENT_LENGTH } from './traceparent.js';

const TRACE_ID_BYTES = 16;
const SPAN_ID_BYTES = 8;
const SLOT_BYTES = TRACE_ID_BYTES + SPAN_ID_BYTES;
/** Exported for the tests, which draw across batches. */
export const IDS_PER_BATCH = 512;

const randomBytes = Buffer.alloc(SLOT_BYTES * IDS_PER_BATCH);
/** The random bytes' big-endian words (DataView reads compile to loads; Buffer's readUInt32BE stays a call). */
const randomWords = new DataView(randomBytes.buffer, randomBytes.byteOffset, randomBytes.length);
const batchText = Buffer.from('00-00000000000000000000000000000000-0000000000000000-00'.repeat(IDS_PER_BATCH), 'latin1');
/** Four hex digits a store, at any offset (the ids' offsets are odd and even). */
const batchView = new DataView(batchText.buffer, batchText.byteOffset, batchText.length);
let batch = '';
let nextInBatch = IDS_PER_BATCH;
/** Where the last slot taken starts in randomBytes. */
let lastTaken = 0;

/** Takes the next slot of the batch, making a new batch when this one is used up. */
function nextSlot(): number {
  if (nextInBatch === IDS_PER_BATCH) {
    batch = newBatch();
    nextInBatch = 0;
  }
  lastTaken = nextInBatch * SLOT_BYTES;
  return nextInBatch++;
}

function newBatch(): string {
  randomFillSync(randomBytes);
  for (let slot = 0; slot < IDS_PER_BATCH; slot++) {
    const bytes = slot * SLOT_BYTES;
    makeIdsValid(bytes);
    const text = slot * TRACEPARENT_LENGTH;
    // One call site, so that V8 inlines the digits' arithmetic (six unrolled calls it did not).
    for (let word = 0; word < SLOT_BYTES / 4; word++) {
      const at = text + (word < TRACE_ID_BYTES / 4 ? TRACE_ID_AT : SPAN_ID_AT - 2 * TRACE_ID_BYTES) + 8 * word;
      const value = randomWords.getUint32(bytes + 4 * word);
      batchView.setInt32(at, hexDigitsOf16(value >>> 16), true);
      batchView.setInt32(at + 4, hexDigitsOf16(value & 0xffff), true);
    }
  }
  return batchText.toString('latin1');
}

/**
 * An all-zero id is invalid in W3C trace context (a chance of 2^-128 and 2^-64): its last bit set
 * makes it valid, as OpenTelemetry's own generator does.
 */
function makeIdsValid(bytes: number): void {
  if ((randomWords.getUint32(bytes) | randomWords.getUint32(bytes + 4) | randomWords.getUint32(bytes + 8) | randomWords.getUint32(bytes + 12)) === 0) {
    randomBytes[bytes + TRACE_ID_BYTES - 1] = 1;
  }
  if ((randomWords.getUint32(bytes + TRACE_ID_BYTES) | randomWords.getUint32(bytes + TRACE_ID_BYTES + 4)) === 0) randomBytes[bytes + SLOT_BYTES - 1] = 1;
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
  const slot = nextSlot();
  const bytes = slot * SLOT_BYTES;
  drawn.spread = (randomWords.getUint32(bytes) ^ randomWords.getUint32(bytes + 4) ^ randomWords.getUint32(bytes + 8) ^ randomWords.getUint32(bytes + 12)) >>> 0;
  const text = slot * TRACEPARENT_LENGTH;
  drawn.traceparent = batch.slice(text, text + TRACEPARENT_LENGTH);
  return drawn;
}

/** The trace id of a traceparent made by newTrace(). */
export function traceIdOf(traceparent: string): string {
  return traceparent.slice(TRACE_ID_AT, TRACE_ID_AT + 2 * TRACE_ID_BYTES);
}

/** The span id of a traceparent made by newTrace(). */
export function spanIdOf(traceparent: string): string {
  return traceparent.slice(SPAN_ID_AT, SPAN_ID_AT + 2 * SPAN_ID_BYTES);
}

/** 16 lower-case hex digits. */
export function newSpanId(): string {
  const text = nextSlot() * TRACEPARENT_LENGTH + SPAN_ID_AT;
  return batch.slice(text, text + 2 * SPAN_ID_BYTES);
}

/**
 * The trace id of the last draw (newTrace()) as four 32-bit words, into[at] to into[at + 3]: for
 * a span to keep, so that the serializer copies words, not decodes hex (ProxySpan.idWords). Read
 * it right after the draw: the next batch writes over the bytes.
 */
export function copyTraceIdWords(into: Int32Array, at: number): void {
  for (let word = 0; word < TRACE_ID_BYTES / 4; word++) into[at + word] = randomWords.getInt32(lastTaken + 4 * word);
}

/** The span id of the last draw (newTrace() or newSpanId()) as two 32-bit words, into[at] and into[at + 1]. */
export function copySpanIdWords(into: Int32Array, at: number): void {
  into[at] = randomWords.getInt32(lastTaken + TRACE_ID_BYTES);
  into[at + 1] = randomWords.getInt32(lastTaken + TRACE_ID_BYTES + 4);
}

/**
 * The same id as a string of its own, not a slice of a batch: for what a span holds until it is
 * exported, seconds later. Sliced, each sampled request's ids kept their batch (7 KiB when it was
 * 128 ids) and its request id the core's 9 KiB one alive through the queue: at 1 % sampling ~6 MiB
 * for a queue of 850 spans, copied through each scavenge into the old generation. Joining makes a
 * new string that slicing flattens into one of its own; ~300 instructions, on sampled requests
 * only.
 */
export function detached(id: string): string {
  return ` ${id}`.slice(1);
}
