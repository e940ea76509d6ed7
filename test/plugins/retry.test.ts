// The retry plugin: options checking, failover on connection errors and 5xx, what is never retried
// (4xx, a POST the upstream may have read unless allowed, bodies past the replay buffer; a POST
// that never reached an upstream is retried), Retry-After, the retry budget, the
// X-Upstream header, and no client-visible failure when an upstream dies mid-load.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fleetConfig, get, many, startFleet, tally, type Fleet } from '../helpers/fleet.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

let fleet: Fleet;

before(async () => {
  fleet = await startFleet(['a', 'b', 'c']);
});
after(() => fleet.close());

function reset(): void {
  for (const m of fleet.members) {
    m.mode = 'ok';
    m.failStatus = 503;
    m.failHeaders = {};
    m.release();
  }
}

async function withYard(plugins: unknown[], run: (sy: RunningSwitchyard) => Promise<void>, members = fleet.members.length): Promise<void> {
  const config = fleetConfig(fleet, plugins);
  (config.routes as { upstreams: unknown[] }[])[0]!.upstreams.splice(members);
  const sy = await startSwitchyard(config);
  try {
    await run(sy);
  } finally {
    await sy.stop();
    reset();
  }
}

const hitsOf = () => fleet.members.reduce((sum, m) => sum + m.hits, 0);
const balancer = { name: 'balancer' };
const retry = (options: Record<string, unknown> = {}) => ({ name: 'retry', options: { backoff: { base: 1, max: 5 }, ...options } });

describe('retry options (sanity)', { timeout: 60000 }, () => {
  test('negative retries, unknown methods and non-5xx statuses are rejected naming the option', async () => {
    const start = (options: Record<string, unknown>) => startSwitchyard(fleetConfig(fleet, [{ name: 'retry', options }]));
    await assert.rejects(start({ retries: -1 }), /options\.retries: must be >= 0/);
    await assert.rejects(start({ methods: ['FETCH'] }), /options\.methods\[0\]: must be one of "GET"/);
    await assert.rejects(start({ statuses: [404] }), /options\.statuses\[0\]: must be >= 500/);
    await assert.rejects(start({ budget: { ratio: 2 } }), /options\.budget\.ratio: must be <= 1/);
    await assert.rejects(start({ upstreamHeader: 'X Upstream' }), /options\.upstreamHeader: must match pattern/);
  });
});

describe('failover', { timeout: 60000 }, () => {
  test('a refused connection is retried on another upstream; X-Upstream names the one that answered', async () => {
    const a = fleet.byName('a');
    await a.kill();
    try {
      await withYard([balancer, retry()], async (sy) => {
        const answers = await many(sy.url, 12);
        assert.deepEqual(answers.map((x) => x.status), Array(12).fill(200));
        assert.deepEqual(tally(answers), { b: 6, c: 6 });
        assert.deepEqual(answers.map((x) => x.headers.get('x-upstream')), answers.map((x) => x.upstream));
      });
    } finally {
      await a.revive();
    }
  });

  test('the X-Upstream header can be turned off', async () => {
    await withYard([balancer, retry({ upstreamHeader: '' })], async (sy) => {
      assert.equal((await get(sy.url)).headers.get('x-upstream'), null);
    });
  });

  test('503 is retried elsewhere; 500 (not configured) and 404 pass through after one attempt', async () => {
    const a = fleet.byName('a');
    await withYard([balancer, retry()], async (sy) => {
      a.mode = 'fail';
      const first = await get(sy.url);
      assert.equal(first.status, 200);
      assert.equal(first.upstream, 'b');
      for (const status of [500, 404]) {
        a.failStatus = status;
        const before = hitsOf();
        const answers = await many(sy.url, 6);
        assert.ok(answers.some((x) => x.status === status), `the requests that went to a came back ${status}`);
        assert.equal(hitsOf() - before, 6, `${status} is not retried`);
      }
    });
  });

  test('a request with no upstream left to try gets the last failure after `retries` retries', async () => {
    for (const m of fleet.members) m.mode = 'fail';
    await withYard([balancer, retry({ retries: 2, budget: { minRetries: 100 } })], async (sy) => {
      const before = hitsOf();
      const answer = await get(sy.url);
      assert.equal(answer.status, 503);
      assert.equal(hitsOf() - before, 3, 'first attempt and two retries, each on another upstream');
    });
  });

  test('no client-visible failure for GETs when an upstream is killed mid-load', async () => {
    const b = fleet.byName('b');
    const passive = { name: 'health-check', options: { passive: { failures: 2, unhealthyTimeout: 60000 } } };
    try {
      await withYard([balancer, passive, retry({ retries: 2 })], async (sy) => {
        let sent = 0;
        let killed: Promise<void> | undefined;
        const answers = await many(sy.url, 400, {
          concurrency: 10,
          init: () => {
            if (++sent === 120) killed = b.kill();
            return {};
          },
        });
        await killed;
        assert.deepEqual(answers.filter((x) => x.status !== 200).map((x) => x.status), []);
        const after = tally(answers.slice(300));
        assert.equal(after.b, undefined, 'once marked down b gets no more traffic');
      });
    } finally {
      await b.revive();
    }
  });
});

describe('what is never retried', { timeout: 60000 }, () => {
  test('a POST refused by its upstream is retried elsewhere with its body intact, unless retryUnsent is off', async () => {
    const a = fleet.byName('a');
    await a.kill();
    try {
      await withYard([balancer, retry()], async (sy) => {
        const answers = await many(sy.url, 4, { init: (i) => ({ method: 'POST', body: `payload-${i}` }) });
        assert.deepEqual(answers.map((x) => x.status), [200, 200, 200, 200]);
        assert.deepEqual(answers.map((x) => (JSON.parse(x.text) as { body: string }).body), ['payload-0', 'payload-1', 'payload-2', 'payload-3']);
      });
      await withYard([balancer, retry({ retryUnsent: false })], async (sy) => {
        const answers = await many(sy.url, 2, { init: () => ({ method: 'POST', body: 'payload' }) });
        assert.deepEqual(answers.map((x) => x.status).sort(), [200, 502]);
      });
    } finally {
      await a.revive();
    }
  });

  test('a POST that reached its upstream is not retried unless the route allows it; then its body is replayed intact', async () => {
    const a = fleet.byName('a');
    a.mode = 'reset';
    await withYard([balancer, retry()], async (sy) => {
      const answers = await many(sy.url, 2, { init: () => ({ method: 'POST', body: 'payload' }) });
      assert.deepEqual(answers.map((x) => x.status).sort(), [200, 502]);
    });
    a.mode = 'fail';
    await withYard([balancer, retry()], async (sy) => {
      const answers = await many(sy.url, 2, { init: () => ({ method: 'POST', body: 'payload' }) });
      assert.deepEqual(answers.map((x) => x.status).sort(), [200, 503]);
    });
    a.mode = 'reset';
    await withYard([balancer, retry({ methods: ['GET', 'POST'] })], async (sy) => {
      const answers = await many(sy.url, 4, { init: (i) => ({ method: 'POST', body: `payload-${i}` }) });
      assert.deepEqual(answers.map((x) => x.status), [200, 200, 200, 200]);
      assert.deepEqual(answers.map((x) => (JSON.parse(x.text) as { body: string }).body), ['payload-0', 'payload-1', 'payload-2', 'payload-3']);
    });
  });

  test('a body larger than the replay buffer is streamed and so not retried', async () => {
    const a = fleet.byName('a');
    await a.kill();
    try {
      await withYard([balancer, retry({ methods: ['POST'], replayLimit: 16 })], async (sy) => {
        const answers = await many(sy.url, 2, { init: () => ({ method: 'POST', body: 'x'.repeat(17) }) });
        assert.deepEqual(answers.map((x) => x.status).sort(), [200, 502]);
        const ok = answers.find((x) => x.status === 200)!;
        assert.equal((JSON.parse(ok.text) as { body: string }).body, 'x'.repeat(17), 'the large body still streams through');
      });
    } finally {
      await a.revive();
    }
  });
});

describe('Retry-After and budgets', { timeout: 60000 }, () => {
  test('Retry-After is honoured when it fits the retryTimeout budget, else the 503 goes to the client', async () => {
    const a = fleet.byName('a');
    a.mode = 'fail';
    a.failHeaders = { 'retry-after': '3600' };
    await withYard([balancer, retry({ retryTimeout: 2000 })], async (sy) => {
      const before = a.hits;
      const answer = await get(sy.url);
      assert.equal(answer.status, 503);
      assert.equal(answer.headers.get('retry-after'), '3600');
      assert.equal(a.hits - before, 1, 'an hour does not fit: no retry');
    }, 1);
    a.mode = 'fail';
    a.failHeaders = { 'retry-after': '0' };
    await withYard([balancer, retry({ retryTimeout: 2000 })], async (sy) => {
      const before = a.hits;
      await get(sy.url);
      assert.equal(a.hits - before, 3, 'no wait asked: the only upstream is retried');
    }, 1);
  });

  test('the retry budget caps retries when every upstream fails', async () => {
    for (const m of fleet.members) m.mode = 'fail';
    await withYard([balancer, retry({ retries: 2, budget: { ratio: 0.1, minRetries: 0, window: 60000 } })], async (sy) => {
      const before = hitsOf();
      const answers = await many(sy.url, 100);
      assert.ok(answers.every((x) => x.status === 503));
      const retries = hitsOf() - before - 100;
      assert.ok(retries > 0, 'some retries were allowed');
      assert.ok(retries <= 11, `retries stay within 10% of requests: ${retries}`);
    });
  });
});
