// Paired load's controls for what tracing costs by being there (bench/paired.mjs): a global plugin
// that taps the stages the tracing plugin taps (access first, attempt, error, done last) and does
// nothing in them. `loadTracing` also loads the tracing plugin's module, and with it every package
// tracing loads, and uses none of it; `ballastMB` keeps that many megabytes of plain objects on
// the heap, no code: whether a bigger heap alone makes requests dearer.
import { definePlugin } from '../../dist/core/index.js';

/** What one ballast entry holds on the heap: an object, its string and a two-element array. */
const BYTES_PER_ENTRY = 152;

export default definePlugin({
  name: 'idle-taps',
  schema: {
    type: 'object',
    properties: {
      loadTracing: { type: 'boolean', default: false },
      ballastMB: { type: 'number', minimum: 0, default: 0 },
    },
    additionalProperties: false,
  },
  async setup(api, options) {
    const kept = [];
    if (options.loadTracing) kept.push(await import('../../dist/plugins/tracing/index.js'));
    for (let i = 0; i < (options.ballastMB * 1e6) / BYTES_PER_ENTRY; i++) kept.push({ id: i, name: `entry-${i}`, tags: [i, i + 1] });
    api.hooks.access.tap({ name: 'idle-taps', stage: -Infinity }, (ctx) => {
      ctx.traceId = undefined;
      return undefined;
    });
    api.hooks.attempt.tap('idle-taps', (ctx) => {
      ctx.span.isRecording();
    });
    api.hooks.error.tap({ name: 'idle-taps', stage: -Infinity }, () => undefined);
    api.hooks.done.tap({ name: 'idle-taps', stage: Infinity }, (ctx) => {
      ctx.span.isRecording();
    });
    return () => {
      kept.length = 0;
    };
  },
});
