// The balancer's `latency` algorithm (issue 32): the peak-EWMA formula sends most traffic to the
// faster of two real upstreams whose latency the test sets, follows an upstream that recovers or
// slows down, keeps equal upstreams even, and holds under 64 concurrent connections; the
// tmdb-proxy formula stays available. Counts are asserted, never durations: the pace below only
// spreads the requests out in time, and a loaded machine stretches it, which changes no outcome
// asserted here (the algorithm's clock then runs longer, and its re-measuring comes sooner).
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import { setTimeout as pause } from 'node:timers/promises';
import { balancer as balancerPreset } from '../../presets/balancer.js';
import { tmdb as tmdbPreset } from '../../presets/tmdb.js';
import { fleetConfig, get, many, startFleet, type Answer, type Fleet } from '../helpers/fleet.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

let fleet: Fleet;

before(async () => {
  fleet = await startFleet(['a', 'b']);
});
after(() => fleet.close());

/** Sets each upstream's answer delay (ms), for the length of one test. */
function delays(a: number, b: number): void {
  fleet.byName('a').delay = a;
  fleet.byName('b').delay = b;
}

async function withLatencyBalancer(options: Record<string, unknown>, run: (sy: RunningSwitchyard) => Promise<void>): Promise<void> {
  const sy = await startSwitchyard(fleetConfig(fleet, [{ name: 'balancer', options: { algorithm: 'latency', ...options } }]));
  try {
    await run(sy);
  } finally {
    await sy.stop();
    delays(0, 0);
  }
}

// One request every PACE ms: 50 a second, each decay time (500 ms by default) seeing 25 picks.
const PACE = 20;
// How many paced requests make five seconds at that pace.
const FIVE_SECONDS = 5000 / PACE;

/**
 * `count` requests started one every `PACE` ms without waiting for the answers (a steady arrival
 * rate, so requests to a slow upstream overlap, as in-flight counts do in production); the
 * upstream of each, in order of sending. Bounded: `count` requests.
 */
async function paced(url: string, count: number): Promise<string[]> {
  const answers: Promise<Answer>[] = [];
  for (let i = 0; i < count; i++) {
    answers.push(get(url));
    // Spacing the arrivals is the point here, not waiting for something to happen.
    if (i < count - 1) await pause(PACE);
  }
  return (await Promise.all(answers)).map((a) => a.upstream ?? `status ${a.status}`);
}

function count(names: readonly string[], name: string): number {
  return names.filter((n) => n === name).length;
}

function split(names: readonly string[]): string {
  return `a ${count(names, 'a')} / b ${count(names, 'b')} of ${names.length}`;
}

interface UpstreamRow { name: string; cost: number | null; share: number | null }

async function upstreamRows(sy: RunningSwitchyard): Promise<{ latencyFormula: string | null; upstreams: UpstreamRow[] }> {
  const view = await (await fetch(`${sy.url}/upstream`)).json() as { routes: { latencyFormula: string | null; upstreams: UpstreamRow[] }[] };
  return view.routes[0]!;
}

describe('latency (peak EWMA) at a steady pace', { timeout: 120000 }, () => {
  test('with 1 ms against 120 ms, at least 85 % of 200 requests go to the fast upstream, and /upstream shows why', async (t: TestContext) => {
    delays(1, 120);
    await withLatencyBalancer({}, async (sy) => {
      const names = await paced(sy.url, 200);
      t.diagnostic(`1 ms vs 120 ms: ${split(names)}`);
      assert.ok(count(names, 'a') >= 170, split(names));
      const route = await upstreamRows(sy);
      assert.equal(route.latencyFormula, 'peak-ewma');
      const [a, b] = route.upstreams;
      t.diagnostic(`/upstream: a cost ${a!.cost} share ${a!.share}, b cost ${b!.cost} share ${b!.share}`);
      assert.ok(a!.cost! < b!.cost!, `the fast upstream costs less: ${JSON.stringify(route.upstreams)}`);
      assert.ok(a!.share! > b!.share!, `and carries more: ${JSON.stringify(route.upstreams)}`);
    });
  });

  test('with 50 ms against 150 ms, at least 70 % of 200 requests go to the faster upstream', async (t: TestContext) => {
    delays(50, 150);
    await withLatencyBalancer({}, async (sy) => {
      const names = await paced(sy.url, 200);
      t.diagnostic(`50 ms vs 150 ms: ${split(names)}`);
      assert.ok(count(names, 'a') >= 140, split(names));
    });
  });

  test('two equal upstreams split 200 requests within 60/40', async (t: TestContext) => {
    delays(1, 1);
    await withLatencyBalancer({}, async (sy) => {
      const names = await paced(sy.url, 200);
      t.diagnostic(`equal (1 ms each): ${split(names)}`);
      assert.ok(count(names, 'a') >= 80 && count(names, 'b') >= 80, split(names));
    });
  });

  test('a slow upstream that turns fast carries at least a third of the traffic within 5 s', async (t: TestContext) => {
    delays(1, 120);
    await withLatencyBalancer({}, async (sy) => {
      const before = await paced(sy.url, 100);
      t.diagnostic(`while b is slow: ${split(before)}`);
      assert.ok(count(before, 'b') < 20, `b gets little while slow: ${split(before)}`);
      delays(1, 1);
      const after = await paced(sy.url, FIVE_SECONDS);
      const lastTwo = after.slice(-(2 * FIVE_SECONDS) / 5);
      t.diagnostic(`after b turned fast: ${split(after)}; in the fourth and fifth seconds ${split(lastTwo)}`);
      assert.ok(count(lastTwo, 'b') >= lastTwo.length / 3, `b carries a third again in the fourth and fifth seconds: ${split(lastTwo)}`);
    });
  });

  test('a fast upstream that turns slow carries less than a third of the traffic within 5 s', async (t: TestContext) => {
    delays(1, 20);
    await withLatencyBalancer({}, async (sy) => {
      const before = await paced(sy.url, 100);
      t.diagnostic(`while a is fast: ${split(before)}`);
      assert.ok(count(before, 'a') > 50, `a gets most while fast: ${split(before)}`);
      delays(120, 20);
      const after = await paced(sy.url, FIVE_SECONDS);
      const lastTwo = after.slice(-(2 * FIVE_SECONDS) / 5);
      t.diagnostic(`after a turned slow: ${split(after)}; in the fourth and fifth seconds ${split(lastTwo)}`);
      assert.ok(count(lastTwo, 'a') < lastTwo.length / 3, `a carries less than a third in the fourth and fifth seconds: ${split(lastTwo)}`);
    });
  });
});

describe('latency (peak EWMA) under 64 concurrent connections', { timeout: 120000 }, () => {
  const CONNECTIONS = 64;
  const REQUESTS = 640;

  test('the faster upstream still carries most: 1 ms against 120 ms, and 50 ms against 150 ms', async (t: TestContext) => {
    for (const [fast, slow] of [[1, 120], [50, 150]] as const) {
      delays(fast, slow);
      await withLatencyBalancer({}, async (sy) => {
        const names = (await many(sy.url, REQUESTS, { concurrency: CONNECTIONS })).map((a) => a.upstream ?? `status ${a.status}`);
        t.diagnostic(`${fast} ms vs ${slow} ms, ${CONNECTIONS} connections: ${split(names)}`);
        // In flight counts here, and everything (clients, proxy, upstreams) shares the test's
        // event loop, which adds the same queueing to both latencies: a smaller lead than paced.
        assert.ok(count(names, 'a') >= 0.6 * REQUESTS, `${fast} ms vs ${slow} ms: ${split(names)}`);
      });
    }
  });

  test('equal upstreams stay within 60/40', async (t: TestContext) => {
    delays(1, 1);
    await withLatencyBalancer({}, async (sy) => {
      const names = (await many(sy.url, REQUESTS, { concurrency: CONNECTIONS })).map((a) => a.upstream ?? `status ${a.status}`);
      t.diagnostic(`equal, ${CONNECTIONS} connections: ${split(names)}`);
      assert.ok(count(names, 'a') >= 0.4 * REQUESTS && count(names, 'b') >= 0.4 * REQUESTS, split(names));
    });
  });
});

describe('latency options', { timeout: 60000 }, () => {
  test('formula tmdb-proxy keeps the TMDB proxy\'s spread: the slow upstream still gets a fifth or more', async (t: TestContext) => {
    delays(1, 120);
    await withLatencyBalancer({ latency: { formula: 'tmdb-proxy' } }, async (sy) => {
      const names = await paced(sy.url, 200);
      t.diagnostic(`tmdb-proxy, 1 ms vs 120 ms: ${split(names)}`);
      assert.ok(count(names, 'b') >= 40, split(names));
      const route = await upstreamRows(sy);
      assert.equal(route.latencyFormula, 'tmdb-proxy');
      assert.ok(route.upstreams.every((u) => u.cost === null && u.share !== null && u.share > 0), JSON.stringify(route.upstreams));
    });
  });

  test('an unknown formula and a decay time out of range are refused with the option\'s path', async () => {
    const config = (latency: Record<string, unknown>) => fleetConfig(fleet, [{ name: 'balancer', options: { algorithm: 'latency', latency } }]);
    await assert.rejects(startSwitchyard(config({ formula: 'fastest' })), /options\.latency\.formula: must be one of "peak-ewma", "tmdb-proxy"/);
    await assert.rejects(startSwitchyard(config({ decayTime: 0 })), /options\.latency\.decayTime: must be >= 10/);
  });

  test('the tmdb preset pins the tmdb-proxy formula, and the balancer preset leaves latency at peak-ewma', () => {
    type Built = { routes: { plugins?: { name: string; options: Record<string, any> }[] }[]; plugins: { name: string; options: Record<string, any> }[] };
    const tmdbConfig = tmdbPreset.build({ BASE_WEIGHT_MULTIPLIER: '30' }) as unknown as Built;
    for (const route of tmdbConfig.routes) {
      const latency = route.plugins!.find((p) => p.name === 'balancer')!.options.latency;
      assert.equal(latency.formula, 'tmdb-proxy');
      assert.equal(latency.baseWeightMultiplier, 30);
    }
    const balancerConfig = balancerPreset.build({ BACKEND_SERVERS: 'http://10.0.0.1:8080,http://10.0.0.2:8080', LB_ALGORITHM: 'latency' }) as unknown as Built;
    const options = balancerConfig.plugins.find((p) => p.name === 'balancer')!.options;
    assert.equal(options.algorithm, 'latency');
    assert.equal(options.latency?.formula, undefined, 'the balancer\'s default formula, peak-ewma');
  });
});
