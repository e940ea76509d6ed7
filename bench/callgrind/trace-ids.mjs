// Draws CALLS new traces as the tracing plugin does for every request it does not record
// (plugins/tracing/ids.ts: the traceparent string, its trace id and the sampling spread). Under
// callgrind at two CALLS, the difference ÷ the extra calls is the instructions per draw:
//   for n in 20000 40000; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//     node --single-threaded bench/callgrind/trace-ids.mjs $n; done
// usage: node trace-ids.mjs CALLS   (`npm run build` first)
import { newTrace, traceIdOf } from '../../dist/plugins/tracing/ids.js';

// The loop is a function of its own: V8 optimises a function, not a module's top level, whose
// interpreted loop would be most of the figure.
function draw(calls) {
  let sink = 0;
  for (let i = calls; i > 0; i--) {
    const drawn = newTrace();
    sink += (drawn.spread & 1) + traceIdOf(drawn.traceparent).length + drawn.traceparent.charCodeAt(54);
  }
  return sink;
}
if (draw(Number(process.argv[2])) === 0) throw new Error('nothing drawn');
