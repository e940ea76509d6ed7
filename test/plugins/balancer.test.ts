// The balancer plugin: options checking, each algorithm's distribution over real upstreams, the hash
// ring, panic mode and failFast, connection limits, slow start, and runtime upstream changes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import { Switchyard } from '../../core/index.js';
import { HashRing } from '../../plugins/balancer/hash-ring.js';
import { admin, fleetConfig, get, healthTap, many, startFleet, tally, upstreamRef, type Fleet } from '../helpers/fleet.js';
import { catalogs, startSwitchyard, startUpstream, type RunningSwitchyard } from '../helpers/servers.js';

let fleet: Fleet;

before(async () => {
  fleet = await startFleet(['a', 'b', 'c']);
});
after(() => fleet.close());

async function withYard(config: Record<string, unknown>, run: (sy: RunningSwitchyard) => Promise<void>, files: Record<string, string> = {}): Promise<void> {
  const sy = await startSwitchyard(config, { files });
  try {
    await run(sy);
  } finally {
    await sy.stop();
  }
}

const balancer = (options: Record<string, unknown>) => ({ name: 'balancer', options });

/** Longest run of the same upstream in a row. */
function longestRun(names: readonly (string | undefined)[]): number {
  let longest = 0;
  let run = 0;
  names.forEach((name, i) => {
    run = i > 0 && names[i - 1] === name ? run + 1 : 1;
    longest = Math.max(longest, run);
  });
  return longest;
}

function share(counts: Record<string, number>, name: string, total: number): number {
  return (counts[name] ?? 0) / total;
}

describe('balancer options (sanity)', { timeout: 60000 }, () => {
  test('an unknown algorithm is rejected with the path of the option', async () => {
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [balancer({ algorithm: 'fastest' })])), /routes\[0\]\.plugins\[0\]\.options\.algorithm: must be one of "round-robin"/);
  });

  test('header-hash without hashKey, unknown keys and out-of-range numbers are rejected', async () => {
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [balancer({ algorithm: 'header-hash' })])), /options: must have required property 'hashKey'/);
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [balancer({ algoritm: 'random' })])), /options: unknown key "algoritm"/);
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [balancer({ slowStart: { minWeightPercent: 0 } })])), /options\.slowStart\.minWeightPercent: must be >= 1/);
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [balancer({ latency: { alphaMin: 0.9, alphaMax: 0.2 } })])), /alphaMin \(0\.9\) is above alphaMax/);
  });

  test('an upstream weight of 0 is rejected', async () => {
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [balancer({ algorithm: 'weighted' })], { upstreams: [{ weight: 0 }] })), /upstreams\[0\]\.weight: must be > 0/);
  });
});

// Seven tests of a few hundred requests each: over a minute together on a machine under load, so the
// bound is per test (npm test's --test-timeout), not one minute for the lot.
describe('distribution', () => {
  test('round-robin gives each upstream exactly its turn', async () => {
    await withYard(fleetConfig(fleet, [balancer({ algorithm: 'round-robin' })]), async (sy) => {
      const answers = await many(sy.url, 300);
      assert.deepEqual(tally(answers), { a: 100, b: 100, c: 100 });
      assert.equal(longestRun(answers.map((a) => a.upstream)), 1);
    });
  });

  test('weighted 5:1:1 follows the weights and interleaves: never five in a row', async () => {
    await withYard(fleetConfig(fleet, [balancer({ algorithm: 'weighted' })], { upstreams: [{ weight: 5 }, { weight: 1 }, { weight: 1 }] }), async (sy) => {
      const answers = await many(sy.url, 700);
      assert.deepEqual(tally(answers), { a: 500, b: 100, c: 100 });
      assert.ok(longestRun(answers.map((a) => a.upstream)) < 5, 'smooth weighted round robin never sends five in a row');
    });
  });

  test('random spreads evenly, weighted-random by weight (within a few percent)', async () => {
    await withYard(fleetConfig(fleet, [balancer({ algorithm: 'random' })]), async (sy) => {
      const counts = tally(await many(sy.url, 2000, { concurrency: 8 }));
      for (const name of ['a', 'b', 'c']) assert.ok(Math.abs(share(counts, name, 2000) - 1 / 3) < 0.04, `${name}: ${JSON.stringify(counts)}`);
    });
    await withYard(fleetConfig(fleet, [balancer({ algorithm: 'weighted-random' })], { upstreams: [{ weight: 6 }, { weight: 3 }, { weight: 1 }] }), async (sy) => {
      const counts = tally(await many(sy.url, 2000, { concurrency: 8 }));
      assert.ok(Math.abs(share(counts, 'a', 2000) - 0.6) < 0.04, JSON.stringify(counts));
      assert.ok(Math.abs(share(counts, 'b', 2000) - 0.3) < 0.04, JSON.stringify(counts));
      assert.ok(Math.abs(share(counts, 'c', 2000) - 0.1) < 0.03, JSON.stringify(counts));
    });
  });

  test('least-connections avoids the upstream holding requests open', async () => {
    const a = fleet.byName('a');
    await withYard(fleetConfig(fleet, [balancer({ algorithm: 'least-connections' })]), async (sy) => {
      a.mode = 'hang';
      try {
        const pending: Promise<unknown>[] = [];
        const start = a.hits;
        for (let i = 0; i < 30; i++) {
          const answer = get(sy.url);
          // Whichever upstream got it: a keeps it open; b and c answer at once.
          let onHit = () => {};
          const held = new Promise<'held'>((resolve) => {
            onHit = () => resolve('held');
            a.once('hit', onHit);
          });
          if ((await Promise.race([answer, held])) === 'held') pending.push(answer);
          a.off('hit', onHit);
        }
        assert.equal(a.hits - start, 1, 'after its first request a has one in flight and b, c have none');
        a.release();
        await Promise.all(pending);
      } finally {
        a.mode = 'ok';
        a.release();
      }
    });
  });

  test('least-connections-weighted on an idle route follows the weights', async () => {
    await withYard(fleetConfig(fleet, [balancer({ algorithm: 'least-connections-weighted' })], { upstreams: [{ weight: 3 }, { weight: 1 }, { weight: 1 }] }), async (sy) => {
      assert.deepEqual(tally(await many(sy.url, 500)), { a: 300, b: 100, c: 100 });
    });
  });

  test('priority: the lowest tier takes all traffic; the next only when none of it is healthy', async () => {
    const tap = healthTap();
    const config = fleetConfig(fleet, [balancer({ algorithm: 'priority' })], { upstreams: [{ priority: 0 }, { priority: 0 }, { priority: 1 }], globalPlugins: [tap.plugin] });
    await withYard(config, async (sy) => {
      assert.deepEqual(tally(await many(sy.url, 40)), { a: 20, b: 20 });
      const health = tap.health();
      health.set(upstreamRef(fleet.byName('a')), false, 'test');
      assert.deepEqual(tally(await many(sy.url, 10)), { b: 10 });
      health.set(upstreamRef(fleet.byName('b')), false, 'test');
      assert.deepEqual(tally(await many(sy.url, 10)), { c: 10 });
      health.set(upstreamRef(fleet.byName('a')), true);
      assert.deepEqual(tally(await many(sy.url, 10)), { a: 10 });
    }, tap.file);
  });
  test("an upstream added at run time without a priority joins the config file's last tier; with one it goes where it is told", async () => {
    const extra = await startFleet(['d', 'e']);
    const config = fleetConfig(fleet, [balancer({ algorithm: 'priority' })], { upstreams: [{ priority: 1 }, { priority: 1 }, { priority: 3 }] });
    try {
      await withYard(config, async (sy) => {
        const added = await admin(sy.url, 'POST', '/upstream/main', { url: extra.urls[0], name: 'd', weight: 10 });
        assert.equal(((await added.json()) as { upstream: { priority: number } }).upstream.priority, 3);
        assert.deepEqual(tally(await many(sy.url, 8)), { a: 4, b: 4 });
        const told = await admin(sy.url, 'POST', '/upstream/main', { url: extra.urls[1], name: 'e', priority: 0 });
        assert.equal(((await told.json()) as { upstream: { priority: number } }).upstream.priority, 0);
        assert.deepEqual(tally(await many(sy.url, 4)), { e: 4 });
      });
    } finally {
      await extra.close();
    }
  });
});

describe('sticky balancing with consistent hashing', { timeout: 60000 }, () => {
  test('the ring moves about 1/N keys when an upstream joins, all of them to the newcomer', () => {
    const keys = Array.from({ length: 20000 }, (_, i) => `client-${i}`);
    const four = new HashRing(['a', 'b', 'c', 'd'].map((key) => ({ key, weight: 1, value: key })));
    const five = new HashRing(['a', 'b', 'c', 'd', 'e'].map((key) => ({ key, weight: 1, value: key })));
    let moved = 0;
    const perOwner: Record<string, number> = {};
    for (const key of keys) {
      const before = four.lookup(key)!;
      const after = five.lookup(key)!;
      perOwner[before] = (perOwner[before] ?? 0) + 1;
      if (before !== after) {
        moved++;
        assert.equal(after, 'e', 'a key only ever moves to the new upstream');
      }
    }
    assert.ok(Math.abs(moved / keys.length - 1 / 5) < 0.05, `moved ${moved / keys.length}`);
    for (const owner of ['a', 'b', 'c', 'd']) assert.ok(Math.abs(perOwner[owner]! / keys.length - 0.25) < 0.06, JSON.stringify(perOwner));
  });

  test('the ring passes over an excluded upstream: only its keys move', () => {
    const ring = new HashRing(['a', 'b', 'c', 'd'].map((key) => ({ key, weight: 1, value: key })));
    for (let i = 0; i < 5000; i++) {
      const key = `k${i}`;
      const owner = ring.lookup(key)!;
      const without = ring.lookup(key, (o) => o !== 'b')!;
      if (owner !== 'b') assert.equal(without, owner);
      else assert.notEqual(without, 'b');
    }
  });

  test('ip-hash keeps each client on one upstream, and a runtime-added upstream takes about 1/N of them', async () => {
    const extra = await startFleet(['d']);
    const config = fleetConfig(fleet, [balancer({ algorithm: 'ip-hash' })], { server: { trustedProxies: ['127.0.0.1'] } });
    try {
      await withYard(config, async (sy) => {
        const clients = Array.from({ length: 400 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
        const asClient = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });
        const first = await many(sy.url, clients.length, { concurrency: 8, init: (i) => asClient(clients[i]!) });
        const again = await many(sy.url, clients.length, { concurrency: 8, init: (i) => asClient(clients[i]!) });
        assert.deepEqual(again.map((a) => a.upstream), first.map((a) => a.upstream), 'the same client lands on the same upstream');
        const counts = tally(first);
        for (const name of ['a', 'b', 'c']) assert.ok(share(counts, name, clients.length) > 0.2, JSON.stringify(counts));

        const added = await admin(sy.url, 'POST', '/upstream/main', { url: extra.urls[0], name: 'd' });
        assert.equal(added.status, 201);
        const later = await many(sy.url, clients.length, { concurrency: 8, init: (i) => asClient(clients[i]!) });
        const moved = later.filter((a, i) => a.upstream !== first[i]!.upstream);
        assert.ok(moved.every((a) => a.upstream === 'd'), 'keys only move to the new upstream');
        assert.ok(moved.length / clients.length > 0.1 && moved.length / clients.length < 0.4, `moved ${moved.length} of ${clients.length}`);
      });
    } finally {
      await extra.close();
    }
  });

  test('ip-hash: the clients of a down upstream move to the others, every other client stays put', async () => {
    const tap = healthTap();
    const config = fleetConfig(fleet, [balancer({ algorithm: 'ip-hash' })], { server: { trustedProxies: ['127.0.0.1'] }, globalPlugins: [tap.plugin] });
    await withYard(config, async (sy) => {
      const clients = Array.from({ length: 200 }, (_, i) => `10.1.0.${i}`);
      const asClients = { concurrency: 8, init: (i: number) => ({ headers: { 'x-forwarded-for': clients[i]! } }) };
      const first = (await many(sy.url, clients.length, asClients)).map((a) => a.upstream);
      assert.ok(first.includes('a'), 'some clients start on a');
      const a = upstreamRef(fleet.byName('a'));
      tap.health().set(a, false, 'test');
      try {
        const down = (await many(sy.url, clients.length, asClients)).map((a) => a.upstream);
        down.forEach((upstream, i) => {
          if (first[i] === 'a') assert.notEqual(upstream, 'a', `client ${clients[i]} left a`);
          else assert.equal(upstream, first[i], `client ${clients[i]} stayed put`);
        });
      } finally {
        tap.health().set(a, true);
      }
      assert.deepEqual((await many(sy.url, clients.length, asClients)).map((a) => a.upstream), first, 'with a back, its clients return');
    }, tap.file);
  });

  test('header-hash and cookie-hash stick by their key; a request without one is still served', async () => {
    await withYard(fleetConfig(fleet, [balancer({ algorithm: 'header-hash', hashKey: 'X-Session' })]), async (sy) => {
      for (const session of ['alpha', 'beta', 'gamma', 'delta']) {
        const answers = await many(sy.url, 10, { init: () => ({ headers: { 'x-session': session } }) });
        assert.equal(new Set(answers.map((a) => a.upstream)).size, 1, `session ${session} sticks`);
      }
      assert.equal((await get(sy.url)).status, 200);
    });
    await withYard(fleetConfig(fleet, [balancer({ algorithm: 'cookie-hash', hashKey: 'sid' })]), async (sy) => {
      const seen = new Set<string | undefined>();
      for (let i = 0; i < 30; i++) {
        const answers = await many(sy.url, 5, { init: () => ({ headers: { cookie: `theme=dark; sid=user-${i}` } }) });
        assert.equal(new Set(answers.map((a) => a.upstream)).size, 1);
        seen.add(answers[0]!.upstream);
      }
      assert.equal(seen.size, 3, 'different sessions spread over the upstreams');
    });
  });

  test('SSE requests may use their own algorithm', async () => {
    await withYard(fleetConfig(fleet, [balancer({ algorithm: 'round-robin', streamingAlgorithm: 'header-hash', hashKey: 'x-user' })]), async (sy) => {
      const sse = await many(sy.url, 9, { init: () => ({ headers: { accept: 'text/event-stream', 'x-user': 'u1' } }) });
      assert.equal(new Set(sse.map((a) => a.upstream)).size, 1, 'SSE requests of one user stick');
      const plain = await many(sy.url, 9, { init: () => ({ headers: { 'x-user': 'u1' } }) });
      assert.equal(new Set(plain.map((a) => a.upstream)).size, 3, 'plain requests rotate');
    });
  });
});

describe('latency-aware algorithms', { timeout: 60000 }, () => {
  test('latency with the tmdb-proxy formula favours the fast upstream, and /upstream shows the weights it used', async () => {
    const slow = fleet.byName('c');
    slow.delay = 200;
    try {
      // Alpha held low: the base weight (∝ 1/latency) dominates the log-shaped dynamic one.
      const options = { algorithm: 'latency', latency: { formula: 'tmdb-proxy', baseWeightMultiplier: 1, dynamicWeightMultiplier: 20, alphaInitial: 0.1, alphaMin: 0.1, alphaMax: 0.2 } };
      await withYard(fleetConfig(fleet, [balancer(options)]), async (sy) => {
        const counts = tally(await many(sy.url, 300, { concurrency: 6 }));
        assert.ok(share(counts, 'c', 300) < 0.15, `the slow upstream gets less: ${JSON.stringify(counts)}`);
        const view = await (await fetch(`${sy.url}/upstream`)).json() as { routes: { upstreams: { name: string; ewmaMs: number; weights: { base: number; dynamic: number } }[] }[] };
        const [a, , c] = view.routes[0]!.upstreams;
        assert.ok(c!.ewmaMs > a!.ewmaMs);
        assert.ok(c!.weights.dynamic < a!.weights.dynamic && c!.weights.base < a!.weights.base);
      });
    } finally {
      slow.delay = 0;
    }
  });

  test('p2c sends less to the slow upstream', async () => {
    const slow = fleet.byName('c');
    slow.delay = 40;
    try {
      await withYard(fleetConfig(fleet, [balancer({ algorithm: 'p2c' })]), async (sy) => {
        const counts = tally(await many(sy.url, 600, { concurrency: 6 }));
        assert.ok(share(counts, 'c', 600) < 0.2, JSON.stringify(counts));
      });
    } finally {
      slow.delay = 0;
    }
  });

  test('an upstream reporting high load gets less with latency and reports enabled', async () => {
    await withYard(fleetConfig(fleet, [balancer({ algorithm: 'latency', reports: { enabled: true } })]), async (sy) => {
      const refused = await admin(sy.url, 'POST', '/report', { upstream: 'a', cpu: 2 });
      assert.equal(refused.status, 400);
      const ok = await admin(sy.url, 'POST', '/report', { upstream: 'a', cpu: 0.95 });
      assert.equal(ok.status, 200);
      const counts = tally(await many(sy.url, 600, { concurrency: 6 }));
      assert.ok(share(counts, 'a', 600) < 0.12, JSON.stringify(counts));
    });
  });
});

describe('when upstreams are down or full', { timeout: 60000 }, () => {
  test('panic mode: with every upstream unhealthy, traffic still goes to all of them', async () => {
    const tap = healthTap();
    await withYard(fleetConfig(fleet, [balancer({})], { globalPlugins: [tap.plugin] }), async (sy) => {
      for (const m of fleet.members) tap.health().set(upstreamRef(m), false, 'test');
      const answers = await many(sy.url, 30);
      assert.deepEqual(tally(answers), { a: 10, b: 10, c: 10 });
      assert.ok(sy.logs.some((l) => String(l.msg).startsWith('panic mode')));
      for (const m of fleet.members) tap.health().set(upstreamRef(m), true);
    }, tap.file);
  });

  test('panic mode ends when one upstream is healthy again: it alone takes the traffic, and the end is logged once', async () => {
    const tap = healthTap();
    await withYard(fleetConfig(fleet, [balancer({})], { globalPlugins: [tap.plugin] }), async (sy) => {
      for (const m of fleet.members) tap.health().set(upstreamRef(m), false, 'test');
      assert.deepEqual(tally(await many(sy.url, 30)), { a: 10, b: 10, c: 10 }, 'in panic mode');
      const [first] = fleet.members;
      tap.health().set(upstreamRef(first!), true);
      assert.deepEqual(tally(await many(sy.url, 30)), { a: 30 }, 'only the healthy one once it is back');
      const over = sy.logs.filter((l) => l.msg === 'panic mode over: a healthy upstream is back');
      assert.equal(over.length, 1);
      assert.equal(over[0]!.route, 'main');
      for (const m of fleet.members) tap.health().set(upstreamRef(m), true);
      assert.deepEqual(tally(await many(sy.url, 30)), { a: 10, b: 10, c: 10 }, 'all again once all are healthy');
    }, tap.file);
  });

  test('failFast: with every upstream unhealthy the route answers 503 at once, naming it', async () => {
    const tap = healthTap();
    await withYard(fleetConfig(fleet, [balancer({ failFast: true })], { globalPlugins: [tap.plugin] }), async (sy) => {
      for (const m of fleet.members) tap.health().set(upstreamRef(m), false, 'test');
      const hits = fleet.members.reduce((n, m) => n + m.hits, 0);
      const res = await fetch(sy.url);
      assert.equal(res.status, 503);
      const body = await res.json() as { code: string; error: string };
      assert.equal(body.code, 'SY_ERR_NO_HEALTHY_UPSTREAM');
      assert.match(body.error, /route main/);
      assert.equal(fleet.members.reduce((n, m) => n + m.hits, 0), hits, 'no upstream was asked');
      for (const m of fleet.members) tap.health().set(upstreamRef(m), true);
    }, tap.file);
  });

  test('an upstream at maxConnections is skipped; with all full the route answers 503', async () => {
    await withYard(fleetConfig(fleet, [balancer({ maxConnections: 1 })]), async (sy) => {
      for (const m of fleet.members) m.mode = 'hang';
      try {
        const held = fleet.members.map((m) => {
          const arrived = new Promise((resolve) => m.once('hit', resolve));
          return { arrived, member: m };
        });
        const pending = [get(sy.url), get(sy.url), get(sy.url)];
        await Promise.all(held.map((h) => h.arrived));
        const full = await fetch(sy.url);
        assert.equal(full.status, 503);
        assert.match((await full.json() as { error: string }).error, /maxConnections/);
        for (const m of fleet.members) m.release();
        assert.deepEqual((await Promise.all(pending)).map((a) => a.status), [200, 200, 200]);
      } finally {
        for (const m of fleet.members) {
          m.mode = 'ok';
          m.release();
        }
      }
    });
  });
});

describe('WebSocket upgrades', { timeout: 60000 }, () => {
  test('a WebSocket counts as in flight until it closes, and uses the streaming algorithm', async () => {
    const servers = await Promise.all(['w1', 'w2'].map(async (name) => {
      const upstream = await startUpstream((_req, res) => res.end(JSON.stringify({ upstream: name })));
      const wss = new WebSocketServer({ server: upstream.server });
      wss.on('connection', (ws) => ws.send(name));
      return { upstream, wss };
    }));
    const config = {
      server: { store: 'memory://', accessLog: false },
      routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: servers.map((s, i) => ({ url: s.upstream.url, name: `w${i + 1}` })), plugins: [balancer({ algorithm: 'round-robin', streamingAlgorithm: 'header-hash', hashKey: 'x-user' })] }],
    };
    const inFlight = async (sy: RunningSwitchyard) => (await upstreamsOf(sy)).reduce((n, u) => n + u.inFlight, 0);
    try {
      await withYard(config, async (sy) => {
        const open = (user: string) => new Promise<{ ws: WebSocket; greeting: string }>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${sy.yard.port}/chat`, { headers: { 'x-user': user } });
          ws.once('message', (data) => resolve({ ws, greeting: String(data) }));
          ws.once('error', reject);
        });
        const sockets = [await open('u1'), await open('u1'), await open('u1')];
        assert.equal(new Set(sockets.map((s) => s.greeting)).size, 1, 'one user sticks to one upstream');
        assert.equal(await inFlight(sy), 3);
        for (const { ws } of sockets) ws.close();
        let polls = 0;
        while ((await inFlight(sy)) > 0 && polls++ < 500) await get(`${sy.url}/upstream`);
        assert.equal(await inFlight(sy), 0, 'closed sockets are given back');
      });
    } finally {
      for (const s of servers) {
        for (const client of s.wss.clients) client.terminate();
        s.wss.close();
        await s.upstream.close();
      }
    }
  });
});

interface UpstreamView { name: string; source: string; draining: boolean; active: boolean; slowStart: number | null; weights: { configured: number; effective: number }; inFlight: number }

async function upstreamsOf(sy: RunningSwitchyard): Promise<UpstreamView[]> {
  const view = await (await fetch(`${sy.url}/upstream`)).json() as { routes: { name: string; upstreams: UpstreamView[] }[] };
  return view.routes.find((r) => r.name === 'main')!.upstreams;
}

describe('slow start', { timeout: 60000 }, () => {
  test('a runtime-added upstream ramps up its share instead of taking a full share at once', async () => {
    const extra = await startFleet(['d']);
    const [a] = fleet.members;
    const config = {
      ...fleetConfig(fleet, [balancer({ algorithm: 'weighted', slowStart: { duration: 2000, minWeightPercent: 5 } })]),
    };
    (config.routes as { upstreams: unknown[] }[])[0]!.upstreams = [{ url: a!.url, name: 'a' }];
    try {
      await withYard(config, async (sy) => {
        assert.equal((await admin(sy.url, 'POST', '/upstream/main', { url: extra.urls[0], name: 'd' })).status, 201);
        const shares: number[] = [];
        let factor: number | null = 0;
        // Batches of requests until the ramp is over (bounded by a count, not a clock).
        for (let batch = 0; batch < 2000 && factor !== null; batch++) {
          const counts = tally(await many(sy.url, 20));
          shares.push(share(counts, 'd', 20));
          factor = (await upstreamsOf(sy)).find((u) => u.name === 'd')!.slowStart;
        }
        assert.equal(factor, null, 'the ramp ended');
        assert.ok(shares[0]! <= 0.25, `first batch share ${shares[0]}`);
        const tail = await many(sy.url, 100);
        assert.deepEqual(tally(tail), { a: 50, d: 50 }, 'after the ramp d takes its full share');
      });
    } finally {
      await extra.close();
    }
  });
});

describe('runtime upstream changes', { timeout: 60000 }, () => {
  test('bad admin input is rejected with a clear message and changes nothing', async () => {
    await withYard(fleetConfig(fleet, [balancer({})]), async (sy) => {
      const before = await upstreamsOf(sy);
      const cases: [string, string, unknown, number, RegExp][] = [
        ['PATCH', '/upstream/main/a', { weight: 0 }, 400, /weight must be a number > 0/],
        ['PATCH', '/upstream/main/a', { colour: 'red' }, 400, /unknown key "colour"/],
        ['PATCH', '/upstream/main/nope', { weight: 2 }, 404, /no upstream "nope"/],
        ['POST', '/upstream/elsewhere', { url: 'http://127.0.0.1:1' }, 404, /no balanced route "elsewhere"/],
        ['POST', '/upstream/main', { url: 'ftp://x' }, 400, /url must be an http\(s\) URL/],
        ['POST', '/upstream/main', { url: fleet.members[0]!.url }, 400, /already has upstream/],
      ];
      for (const [method, path, body, status, message] of cases) {
        const res = await admin(sy.url, method, path, body);
        assert.equal(res.status, status, `${method} ${path}`);
        assert.match((await res.json() as { error: string }).error, message);
      }
      assert.equal((await fetch(`${sy.url}/upstream/main/a`, { method: 'DELETE' })).status, 401, 'protected: no key, no change');
      assert.deepEqual(await upstreamsOf(sy), before);
    });
  });

  test('add, drain and remove apply at once and survive a reload and a restart', async () => {
    const extra = await startFleet(['d']);
    const config = fleetConfig(fleet, [balancer({})], { server: { store: 'sqlite://./state.sqlite' } });
    const sy = await startSwitchyard(config);
    try {
      assert.equal((await admin(sy.url, 'POST', '/upstream/main', { url: extra.urls[0], name: 'd', weight: 2 })).status, 201);
      assert.deepEqual(tally(await many(sy.url, 40)), { a: 10, b: 10, c: 10, d: 10 });
      assert.equal((await admin(sy.url, 'POST', '/upstream/main/b/drain')).status, 200);
      assert.equal((await admin(sy.url, 'DELETE', `/upstream/main/${encodeURIComponent(fleet.byName('c').url)}`)).status, 200);
      assert.deepEqual(tally(await many(sy.url, 20)), { a: 10, d: 10 });

      // A reload with an unchanged upstream list keeps the runtime changes…
      sy.writeConfig({ ...config, routes: [{ ...(config.routes as object[])[0], stripPrefix: false }] });
      assert.equal((await sy.yard.reload('test')).ok, true);
      assert.deepEqual(tally(await many(sy.url, 20)), { a: 10, d: 10 });
      const view = await upstreamsOf(sy);
      assert.deepEqual(view.map((u) => [u.name, u.source, u.draining]), [['a', 'config', false], ['b', 'config', true], ['d', 'runtime', false]]);
    } finally {
      await sy.stop();
    }
    // …and so does a restart on the same store.
    const again = await Switchyard.start({ source: { file: sy.configFile, port: 0, host: '127.0.0.1' }, catalogs, env: {}, logger: pino({ level: 'silent' }), watch: false });
    try {
      const url = `http://127.0.0.1:${again.port}`;
      assert.deepEqual(tally(await many(url, 20)), { a: 10, d: 10 });
      assert.equal((await admin(url, 'PATCH', '/upstream/main/b', { draining: false })).status, 200);
      assert.deepEqual(tally(await many(url, 30)), { a: 10, b: 10, d: 10 });
    } finally {
      await again.stop();
      await extra.close();
    }
  });

  test('instances sharing a store follow each other\'s runtime changes', async () => {
    const extra = await startFleet(['d']);
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const store = `sqlite://${mkdtempSync(`${tmpdir()}/switchyard-shared-`)}/shared.sqlite`;
    const config = fleetConfig(fleet, [balancer({ refreshInterval: 50 })], { server: { store } });
    const one = await startSwitchyard(config);
    const two = await startSwitchyard(config);
    try {
      // The second instance has loaded its table before the change is made.
      assert.deepEqual((await upstreamsOf(two)).map((u) => u.name), ['a', 'b', 'c']);
      assert.equal((await admin(one.url, 'POST', '/upstream/main', { url: extra.urls[0], name: 'd' })).status, 201);
      // The other instance reads it back from the store (bounded by a count of checks, not a time).
      let names: string[] = [];
      for (let i = 0; i < 400 && !names.includes('d'); i++) names = (await upstreamsOf(two)).map((u) => u.name);
      assert.ok(names.includes('d'), 'the second instance sees the upstream added on the first');
      assert.deepEqual(tally(await many(two.url, 40)), { a: 10, b: 10, c: 10, d: 10 });
    } finally {
      await one.stop();
      await two.stop();
      await extra.close();
    }
  });

  test('the config file wins for what it names: editing an upstream drops its runtime change', async () => {
    const config = fleetConfig(fleet, [balancer({ algorithm: 'weighted' })]);
    await withYard(config, async (sy) => {
      assert.equal((await admin(sy.url, 'PATCH', '/upstream/main/a', { weight: 3 })).status, 200);
      assert.deepEqual(tally(await many(sy.url, 50)), { a: 30, b: 10, c: 10 });
      const route = (config.routes as { upstreams: Record<string, unknown>[] }[])[0]!;
      sy.writeConfig({ ...config, routes: [{ ...route, upstreams: route.upstreams.map((u) => (u.name === 'b' ? { ...u, weight: 2 } : u)) }] });
      assert.equal((await sy.yard.reload('test')).ok, true);
      // b's entry changed, a's did not: a keeps its runtime weight, b takes the file's.
      assert.deepEqual(tally(await many(sy.url, 60)), { a: 30, b: 20, c: 10 });
      const weights = (await upstreamsOf(sy)).map((u) => [u.name, u.weights.configured]);
      assert.deepEqual(weights, [['a', 3], ['b', 2], ['c', 1]]);
    });
  });

  test('GET /stats/upstream counts requests and errors with latency percentiles', async () => {
    await withYard(fleetConfig(fleet, [balancer({})]), async (sy) => {
      await many(sy.url, 30);
      const res = await fetch(`${sy.url}/stats/upstream?route=main&id=b`);
      assert.equal(res.status, 200);
      const { upstreams } = await res.json() as { upstreams: { name: string; requests: number; failures: number; latencyMs: { p50: number; p99: number } }[] };
      assert.equal(upstreams.length, 1);
      assert.equal(upstreams[0]!.name, 'b');
      assert.equal(upstreams[0]!.requests, 10);
      assert.equal(upstreams[0]!.failures, 0);
      assert.ok(upstreams[0]!.latencyMs.p50 <= upstreams[0]!.latencyMs.p99);
      assert.equal((await fetch(`${sy.url}/stats/upstream?route=main&id=zzz`)).status, 404);
    });
  });
});

describe('disconnect', () => {
  for (const engine of ['undici', 'http-proxy']) {
    test(`disconnect stops traffic to an upstream and closes its pooled connections (${engine} engine)`, { timeout: 20_000 }, async () => {
      const open = new Set<import('node:net').Socket>();
      let allClosed!: () => void;
      const closed = new Promise<void>((resolve) => { allClosed = resolve; });
      let disconnecting = false;
      const a = await startUpstream((_req, res) => res.end('a'));
      // Longer than the test: only the proxy can be the one closing these connections.
      a.server.keepAliveTimeout = 60_000;
      a.server.on('connection', (socket) => {
        open.add(socket);
        socket.on('close', () => {
          open.delete(socket);
          if (disconnecting && open.size === 0) allClosed();
        });
      });
      const b = await startUpstream((_req, res) => res.end('b'));
      const sy = await startSwitchyard({
        server: { store: 'memory://', accessLog: false, engine, admin: { key: 'disconnect-admin-key' } },
        routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }], plugins: [{ name: 'balancer', options: { algorithm: 'round-robin' } }] }],
      });
      try {
        const before = await Promise.all(Array.from({ length: 6 }, async () => (await fetch(`${sy.url}/x`)).text()));
        assert.ok(before.includes('a') && open.size > 0, 'a holds pooled connections');
        disconnecting = true;
        const res = await fetch(`${sy.url}/upstream/main/a/disconnect`, { method: 'POST', headers: { 'x-api-key': 'disconnect-admin-key' } });
        assert.equal(res.status, 200);
        await res.arrayBuffer();
        if (open.size === 0) allClosed();
        await closed; // every connection the proxy held to a is gone
        const after = await Promise.all(Array.from({ length: 6 }, async () => (await fetch(`${sy.url}/y`)).text()));
        assert.deepEqual([...new Set(after)], ['b']);
        assert.equal(open.size, 0, 'no new connection to a');
      } finally {
        await sy.stop();
        await a.close();
        await b.close();
      }
    });
  }
});
