// The plugin decides on new traces from the random bytes of their ids (sampling.ts); these tests
// hold that decision equal to OpenTelemetry's TraceIdRatioBased sampler reading the same id, and
// the ids (ids.ts, drawn in batches) to W3C trace context, with the copies spans keep detached
// from their batch.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { SamplingDecision, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base';
import { parseTraceParent } from '@opentelemetry/core';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { detached, IDS_PER_BATCH, newSpanId, newTrace, spanIdOf, traceIdOf } from '../../plugins/tracing/ids.js';
import { TraceRatio } from '../../plugins/tracing/sampling.js';

const sdkSamples = (ratio: number, traceId: string) =>
  new TraceIdRatioBasedSampler(ratio).shouldSample(ROOT_CONTEXT, traceId).decision === SamplingDecision.RECORD_AND_SAMPLED;

describe('the ratio rule on new traces', () => {
  test('each drawn id\'s spread is exactly the one the SDK reads from its hex', () => {
    // A ratio whose bound is the spread itself turns the id down, one a step above takes it: both
    // samplers agree on both only if they read the same number.
    for (let i = 0; i < 2000; i++) {
      const { traceparent, spread } = newTrace();
      const traceId = traceIdOf(traceparent);
      for (const [bound, expected] of [[spread, false], [spread + 1, true]] as const) {
        if (bound > 0xffffffff) continue;
        const ratio = (bound + 0.5) / 0xffffffff;
        assert.equal(new TraceRatio(ratio).admitsSpread(spread), expected, `${traceId} at bound ${bound}`);
        assert.equal(sdkSamples(ratio, traceId), expected, `the SDK, ${traceId} at bound ${bound}`);
      }
    }
  });

  test('decisions equal the SDK\'s at the usual ratios and the edges', () => {
    const ratios = [0, -1, Number.NaN, 1e-9, 0.01, 0.25, 0.5, 0.999999, 1, 2];
    const taken = new Map<number, number>(ratios.map((r) => [r, 0]));
    for (let i = 0; i < 20000; i++) {
      const { traceparent, spread } = newTrace();
      const traceId = traceIdOf(traceparent);
      for (const ratio of ratios) {
        const ours = new TraceRatio(ratio).admitsSpread(spread);
        assert.equal(ours, sdkSamples(ratio, traceId), `${traceId} at ${ratio}`);
        if (ours) taken.set(ratio, taken.get(ratio)! + 1);
      }
    }
    assert.equal(taken.get(0), 0);
    assert.equal(taken.get(Number.NaN), 0);
    assert.equal(taken.get(1), 20000);
    assert.equal(taken.get(2), 20000);
    // The ids are random: the share taken is near the ratio (binomial, far outside 6 σ otherwise).
    assert.ok(Math.abs(taken.get(0.5)! - 10000) < 450, String(taken.get(0.5)));
    assert.ok(Math.abs(taken.get(0.01)! - 200) < 85, String(taken.get(0.01)));
  });

  test('ids come out as W3C trace context writes them, every digit at every place, across batches', () => {
    // 4,000 draws and 4,000 span ids span many batches; a digit written at the wrong place or from the wrong
    // half of a byte shows as a place that never sees some digit (or as a spread the SDK reads
    // differently, above).
    const seen = Array.from({ length: 48 }, () => new Set<string>());
    const spanIds = new Set<string>();
    for (let i = 0; i < 4000; i++) {
      const { traceparent } = newTrace();
      assert.match(traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      const parsed = parseTraceParent(traceparent);
      assert.ok(parsed, traceparent);
      assert.equal(parsed.traceId, traceIdOf(traceparent));
      assert.equal(parsed.spanId, spanIdOf(traceparent));
      const ids = traceIdOf(traceparent) + spanIdOf(traceparent);
      for (let at = 0; at < ids.length; at++) seen[at]!.add(ids[at]!);
      const spanId = newSpanId();
      assert.match(spanId, /^[0-9a-f]{16}$/);
      spanIds.add(spanId);
    }
    for (const [at, digits] of seen.entries()) assert.equal(digits.size, 16, `place ${at} saw only ${[...digits].sort().join('')}`);
    assert.equal(spanIds.size, 4000);
  });

  test('a detached id keeps no batch of ids alive, as a span waiting for export holds it', () => {
    setFlagsFromString('--expose-gc');
    const collect = runInNewContext('gc') as () => void;
    // One id kept from each batch, as a sampled request at 1 % keeps its ids queued.
    const heapWith = (keep: (id: string) => string) => {
      const kept: string[] = [];
      for (let i = 0; i < IDS_PER_BATCH * 500; i++) {
        const { traceparent } = newTrace();
        if (i % IDS_PER_BATCH === 0) kept.push(keep(traceIdOf(traceparent)));
      }
      collect();
      const used = process.memoryUsage().heapUsed;
      assert.equal(kept.length, 500);
      return used;
    };
    const base = heapWith(() => '');
    const sliced = heapWith((id) => id) - base;
    const own = heapWith(detached) - base;
    // 500 batches of 28 KiB (~14 MiB) against 500 strings of 32 characters.
    assert.ok(sliced > 10 * 1024 * 1024, `sliced ids kept ${sliced} bytes`);
    assert.ok(own < 1024 * 1024, `detached ids kept ${own} bytes`);
    const one = traceIdOf(newTrace().traceparent);
    assert.equal(detached(one), one);
  });

  test('a caller\'s trace id is decided by the SDK\'s sampler itself', () => {
    const ratio = new TraceRatio(0.5);
    assert.equal(ratio.admitsTraceId('00000000000000000000000000000001'), true);
    assert.equal(ratio.admitsTraceId('ffffffff00000000000000000000000f'), false);
    assert.equal(ratio.admitsTraceId('not an id'), false);
  });
});
