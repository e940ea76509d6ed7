// Request ids: a client's sane X-Request-Id is kept so a trace spans hops; otherwise a random
// (version 4) UUID. A leaf module: the batching below is a measured speed trick.
import type { IncomingMessage } from 'node:http';
import { randomFillSync } from 'node:crypto';

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
const batchText = Buffer.alloc(UUID_LENGTH * IDS_PER_BATCH);
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
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
  let at = 0;
  for (let i = 0; i < randomBytes.length; i++) {
    const n = i % UUID_BYTES;
    let byte = randomBytes[i]!;
    if (n === 6) byte = (byte & 0x0f) | 0x40; // version 4
    else if (n === 8) byte = (byte & 0x3f) | 0x80; // RFC 4122 variant
    if (n === 4 || n === 6 || n === 8 || n === 10) batchText[at++] = 0x2d; // '-'
    batchText[at++] = HEX_DIGITS[byte >> 4]!;
    batchText[at++] = HEX_DIGITS[byte & 0x0f]!;
  }
  return batchText.toString('latin1');
}
