// Which new traces are recorded: OpenTelemetry's TraceIdRatioBased rule (the trace id's four 32-bit
// words xor-ed, below ratio × 0xffffffff), so a service downstream that samples by trace id at the
// same ratio agrees with this hop. The rule is applied here to the random bytes the id was drawn
// from (ids.ts); the SDK's sampler reads it back from the hex, checking it with a regular
// expression first: 3,148 instructions a request in the proxy at ratio 0.01 (callgrind with V8's
// perf map; bench/README.md, "Tracing on the plugin's own spans and transport"), more than half of
// what the 1.03× target allows an unsampled request. A test holds the two equal over thousands of
// ids and every kind of ratio. A caller's trace id (not parent-based) is rare and goes to the
// SDK's sampler itself.
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { SamplingDecision, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base';

export class TraceRatio {
  private readonly upperBound: number;
  private readonly sdk: TraceIdRatioBasedSampler;

  constructor(ratio: number) {
    // As the SDK's sampler bounds it (it takes 1 as "all", so 0xffffffff itself is sampled).
    this.upperBound = ratio >= 1 ? 0x100000000 : ratio > 0 ? Math.floor(ratio * 0xffffffff) : 0;
    this.sdk = new TraceIdRatioBasedSampler(ratio);
  }

  /** A new trace, by its id's spread (NewTrace.spread). */
  admitsSpread(spread: number): boolean {
    return spread < this.upperBound;
  }

  /** A trace a caller named, by its id. */
  admitsTraceId(traceId: string): boolean {
    return this.sdk.shouldSample(ROOT_CONTEXT, traceId).decision === SamplingDecision.RECORD_AND_SAMPLED;
  }
}
