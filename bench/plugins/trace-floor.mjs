// Paired load's floor for trace context (bench/paired.mjs, BENCH_PAIRED=trace-floor): the least a
// proxy that propagates W3C trace context does for a request it does not record, written as a
// plugin with none of OpenTelemetry loaded. A new trace id and span id for each request, drawn from
// a batch of random bytes; the caller's traceparent, when it sent one, passed on as it came; one
// tap (attempt), which writes the header. What the tracing plugin at sampling 0 costs above this is
// what its way of doing the same costs (its taps, its objects, its packages), not propagation's.
import { randomFillSync } from 'node:crypto';
import { definePlugin, hexDigitsOf16 } from '../../dist/core/index.js';

// Ids as the tracing plugin draws them (plugins/tracing/ids.ts, its cheapest way measured): a batch
// of random bytes written as hex into a batch of traceparents, one string, sliced per request.
// Written again here, not imported: ids.ts imports traceparent.ts, which loads OpenTelemetry.
const IDS_PER_BATCH = 512;
/** `00-` 32 hex `-` 16 hex `-00`. */
const TRACEPARENT_LENGTH = 55;
const WORDS_PER_ID = 6;
const randomBytes = Buffer.alloc(4 * WORDS_PER_ID * IDS_PER_BATCH);
const randomWords = new DataView(randomBytes.buffer, randomBytes.byteOffset, randomBytes.length);
const batchText = Buffer.from('00-00000000000000000000000000000000-0000000000000000-00'.repeat(IDS_PER_BATCH), 'latin1');
const batchView = new DataView(batchText.buffer, batchText.byteOffset, batchText.length);
let batch = '';
let next = IDS_PER_BATCH;

/** An unsampled new trace's traceparent (an all-zero id, 2^-64 at worst, is not worth a check here). */
function newTraceparent() {
  if (next === IDS_PER_BATCH) {
    randomFillSync(randomBytes);
    for (let id = 0; id < IDS_PER_BATCH; id++) {
      for (let word = 0; word < WORDS_PER_ID; word++) {
        const at = id * TRACEPARENT_LENGTH + (word < 4 ? 3 : 4) + 8 * word;
        const value = randomWords.getUint32(4 * (id * WORDS_PER_ID + word));
        batchView.setInt32(at, hexDigitsOf16(value >>> 16), true);
        batchView.setInt32(at + 4, hexDigitsOf16(value & 0xffff), true);
      }
    }
    batch = batchText.toString('latin1');
    next = 0;
  }
  const at = TRACEPARENT_LENGTH * next++;
  return batch.slice(at, at + TRACEPARENT_LENGTH);
}

export default definePlugin({
  name: 'trace-floor',
  schema: { type: 'object', additionalProperties: false },
  setup(api) {
    api.hooks.attempt.tap('trace-floor', (ctx) => {
      const { headers } = ctx.outgoing;
      if (headers.traceparent === undefined) headers.traceparent = newTraceparent();
    });
  },
});
