// Trace and span ids, and the sampling decision for a new trace, made before OpenTelemetry's SDK is
// asked anything: an unsampled request never reaches it. Ids come from a pool of random bytes
// refilled 4 KiB at a time (one randomFillSync per ~170 requests) and are written as hex by one
// native call each; OpenTelemetry's RandomIdGenerator calls Math.random() and writeUInt32BE per 4
// bytes. The plugin draws a new trace's id first and decides on it (the SDK's TraceIdRatioBased
// sampler, a pure function of the id), so an unsampled request never reaches the SDK's tracer.
// Callgrind (bench/callgrind/run.sh, bench/configs/tracing.yaml): see plugins/tracing/README.md, "Cost".
import { randomFillSync } from 'node:crypto';
import type { IdGenerator } from '@opentelemetry/sdk-trace-base';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let taken = POOL_BYTES;

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

/** 32 lower-case hex digits. */
export function newTraceId(): string {
  const at = fresh(16);
  return pool.toString('hex', at, at + 16);
}

/** 16 lower-case hex digits. */
export function newSpanId(): string {
  const at = fresh(8);
  return pool.toString('hex', at, at + 8);
}

/**
 * The SDK's ids, from the same pool. A new trace whose id the plugin already drew (to decide on
 * it) hands that id over in `nextTraceId`, set just before the SDK's startSpan, which runs
 * synchronously and takes it.
 */
export class PooledIds implements IdGenerator {
  nextTraceId: string | undefined;

  generateTraceId(): string {
    const id = this.nextTraceId ?? newTraceId();
    this.nextTraceId = undefined;
    return id;
  }

  generateSpanId(): string {
    return newSpanId();
  }
}
