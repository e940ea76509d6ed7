// Request ids: a client's sane X-Request-Id is kept so a trace spans hops; otherwise a random
// (version 4) UUID. A leaf module: the batching below is a measured speed trick.
import type { IncomingMessage } from 'node:http';
import { randomFillSync } from 'node:crypto';
import { hexDigitsOf16 } from './hex.js';

const REQUEST_ID = /^[\w.:@/+=-]{1,200}$/;

/** Keeps a sane incoming X-Request-Id so a trace spans hops; makes one otherwise. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : newRequestId();
}

const UUID_BYTES = 16;
const UUID_LENGTH = 36;
const IDS_PER_BATCH = 256;
const randomBytes = Buffer.alloc(UUID_BYTES * IDS_PER_BATCH);
const randomWords = new DataView(randomBytes.buffer, randomBytes.byteOffset, randomBytes.length);
const batchText = Buffer.from('00000000-0000-0000-0000-000000000000'.repeat(IDS_PER_BATCH), 'latin1');
/** Four hex digits a store (core/hex.ts). */
const batchView = new DataView(batchText.buffer, batchText.byteOffset, batchText.length);
/** Where each 16-bit unit's four digits go in a UUID's 36 characters (the dashes stay put). */
const UNIT_AT = [0, 4, 9, 14, 19, 24, 28, 32];
let batch = '';
let nextInBatch = IDS_PER_BATCH;

/**
 * A random (version 4) UUID, as crypto.randomUUID makes. They are made 256 at a time into one
 * string, and each request takes a slice of it, which V8 makes without copying. randomUUID joins
 * its 36 characters from 20 pieces, which are then flattened again to be written out in both
 * directions; one string per id read back from a buffer still cost about 2,000 instructions.
 */
export function newRequestId(): string {
  if (nextInBatch === IDS_PER_BATCH) {
    batch = newBatchOfIds();
    nextInBatch = 0;
  }
  const at = nextInBatch++ * UUID_LENGTH;
  return batch.slice(at, at + UUID_LENGTH);
}

function newBatchOfIds(): string {
  randomFillSync(randomBytes);
  for (let id = 0; id < IDS_PER_BATCH; id++) writeUuid(id);
  return batchText.toString('latin1');
}

/**
 * One UUID's digits, four at a time. A function of its own, called 256 times a batch, so that V8
 * optimises it as it does any hot function; the batch's loop runs once per 256 requests, and
 * under callgrind it was sometimes left to baseline code (1,807 instructions a request against
 * 776). Byte at a time, with two table lookups, the optimised loop cost 776–908 a request; this,
 * 472–479 (bench/callgrind/run.sh, main thread, the function alone).
 */
function writeUuid(id: number): void {
  const bytes = id * UUID_BYTES;
  const text = id * UUID_LENGTH;
  for (let unit = 0; unit < UUID_BYTES / 2; unit++) {
    let value = randomWords.getUint16(bytes + 2 * unit);
    if (unit === 3) value = (value & 0x0fff) | 0x4000; // version 4
    else if (unit === 4) value = (value & 0x3fff) | 0x8000; // RFC 4122 variant
    batchView.setInt32(text + UNIT_AT[unit]!, hexDigitsOf16(value), true);
  }
}
