// Preloaded into a proxy under paired load (`BENCH_GC=1 node bench/paired.mjs`, through
// NODE_OPTIONS=--require): V8's garbage-collection pauses on the event loop's thread, summed, so
// the report can say whether a configuration's extra CPU is collection or its own code. After each
// batch of GC entries it writes one line to BENCH_GC_FILE: the totals so far. The runner reads the
// last line at each window's start and end; between two collections the totals do not move, so
// the last line is exact up to the observer's delivery, a tick after the pause.
'use strict';
const { appendFileSync } = require('node:fs');
const { constants, PerformanceObserver } = require('node:perf_hooks');

const file = process.env.BENCH_GC_FILE;
if (file) {
  const totals = { pauseMs: 0, minor: 0, major: 0 };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      totals.pauseMs += entry.duration;
      if (entry.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) totals.minor++;
      else if (entry.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) totals.major++;
    }
    appendFileSync(file, `${JSON.stringify(totals)}\n`);
  }).observe({ entryTypes: ['gc'] });
}
