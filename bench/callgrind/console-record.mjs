// Calls the console recorder's record() CALLS times with request objects like a balanced route's
// (four upstreams in turn, one 502 in fifty), or, with `loop`, only walks the same objects. Run
// under callgrind at two CALLS by bench/console-cost.mjs: the difference over the extra calls,
// less the same for the bare loop, is record()'s instructions per finished request.
// usage: node console-record.mjs CALLS [loop]   (`npm run build` first)
import { ConsoleRecorder } from '../../dist/core/console-recorder.js';

function run(calls, loopOnly) {
  const recorder = new ConsoleRecorder();
  const start = performance.now();
  const requests = [0, 1, 2, 3].map((i) => ({ startedAt: start, timings: { end: 0.4 + i / 10 }, upstream: { id: `bench#${i}` } }));
  let sink = 0;
  for (let i = 0; i < calls; i++) {
    const ctx = requests[i & 3];
    if (loopOnly) sink += ctx.upstream.id.length;
    else recorder.record(ctx, i % 50 === 0 ? 502 : 200, undefined);
  }
  return sink;
}

process.exitCode = run(Number(process.argv[2]), process.argv[3] === 'loop') >= 0 ? 0 : 1;
