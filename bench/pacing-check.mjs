// Shows how bench/paced.lua's requests arrive: with a fixed pause the 64 connections fall into
// lockstep and arrive together; with the jittered pause (the default) they spread out.
//
//   node bench/pacing-check.mjs        (about 25 s; needs wrk)
//
// This process answers the requests itself (1 KiB from memory, pinned to core 0, wrk to core 1)
// and records when each one arrives. A burst is a run of arrivals each less than 100 µs after the
// previous one. The first 20 % of each run is left out: lockstep takes a few seconds to form.
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readCoreTimes, stealPercent } from './lib/cpu.mjs';
import { installCleanupHandlers, pinningTool, repinProcess } from './lib/processes.mjs';
import { WRK, WRK_INSTALL_HINT, runWrk } from './lib/wrk.mjs';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'paced.lua');
const SECONDS = 10;
const CONNECTIONS = 64;
const BURST_GAP_NS = 100_000n;
const BODY = Buffer.alloc(1024, 'x');

if (!WRK) {
  console.error(WRK_INSTALL_HINT);
  process.exit(1);
}
installCleanupHandlers();
const pinned = Boolean(pinningTool);
if (pinned) repinProcess(process.pid, 0);

console.log(`| pause | requests | p99 ms | largest burst | requests in bursts ≥ 16 | ≥ 32 | ≥ 48 | steal % |`);
console.log(`| --- | --- | --- | --- | --- | --- | --- | --- |`);
for (const [label, jitter] of [['fixed (BENCH_PACED_JITTER=0)', '0'], ['jittered (default)', '1']]) {
  process.env.BENCH_PACED_JITTER = jitter;
  const { arrivals, report, steal } = await recordArrivals();
  const bursts = burstSizes(arrivals.slice(Math.floor(arrivals.length * 0.2)));
  const inBurstsOf = (k) => `${share(bursts, k).toFixed(1)} %`;
  console.log(
    `| ${label} | ${report.requests} | ${report.p99Ms?.toFixed(2)} | ${Math.max(...bursts)} | ${inBurstsOf(16)} | ${inBurstsOf(32)} | ${inBurstsOf(48)} | ${steal.toFixed(1)} |`,
  );
}
if (!pinned) console.log('\n(taskset not found: ran unpinned)');
process.exit(0);

async function recordArrivals() {
  const arrivals = [];
  const server = http.createServer((req, res) => {
    arrivals.push(process.hrtime.bigint());
    res.end(BODY);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/`;
  const before = readCoreTimes();
  const report = await runWrk({ url, seconds: SECONDS, connections: CONNECTIONS, core: pinned ? 1 : null, script: SCRIPT });
  const steal = stealPercent(before, readCoreTimes());
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  return { arrivals, report, steal };
}

function burstSizes(times) {
  const sizes = [];
  let size = 1;
  for (let i = 1; i < times.length; i++) {
    if (times[i] - times[i - 1] < BURST_GAP_NS) size++;
    else {
      sizes.push(size);
      size = 1;
    }
  }
  sizes.push(size);
  return sizes;
}

/** Percent of all requests that arrived in a burst of at least `k`. */
function share(sizes, k) {
  const total = sizes.reduce((a, b) => a + b, 0);
  return (100 * sizes.filter((s) => s >= k).reduce((a, b) => a + b, 0)) / total;
}
