// The circuit-breaker plugin: options checking, opening on a failure ratio over a minimum volume,
// the balancer skipping an open upstream, half-open trials closing or re-opening it, and living
// alongside health-check (neither lets an upstream back while the other holds it down).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { UpstreamHealth } from '../../core/index.js';
import { checksArrive, fleetConfig, get, healthBecomes, healthTap, many, startFleet, tally, upstreamRef, type Fleet, type Member } from '../helpers/fleet.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

let fleet: Fleet;

before(async () => {
  fleet = await startFleet(['a', 'b']);
});
after(() => fleet.close());

function reset(): void {
  for (const m of fleet.members) {
    m.mode = 'ok';
    m.checkMode = undefined;
    m.release();
  }
}

interface BreakerView { name: string; state: string; reason: string | null; timesOpened: number }

async function breakers(sy: RunningSwitchyard): Promise<BreakerView[]> {
  return ((await (await fetch(`${sy.url}/circuit-breakers`)).json()) as { breakers: BreakerView[] }).breakers;
}

async function yardWith(breakerOptions: Record<string, unknown>, extra: unknown[] = []): Promise<{ sy: RunningSwitchyard; health: UpstreamHealth }> {
  const tap = healthTap();
  const config = fleetConfig(fleet, [{ name: 'balancer' }, { name: 'circuit-breaker', options: breakerOptions }, ...extra], { globalPlugins: [tap.plugin] });
  const sy = await startSwitchyard(config, { files: tap.file });
  return { sy, health: tap.health() };
}

/** Sends requests one by one until `member` is (un)healthy; returns how many it took (bounded). */
async function requestsUntil(sy: RunningSwitchyard, health: UpstreamHealth, member: Member, healthy: boolean, limit = 200): Promise<number> {
  for (let sent = 0; sent < limit; sent++) {
    if (health.isHealthy(upstreamRef(member)) === healthy) return sent;
    await get(sy.url);
  }
  throw new Error(`${member.name} did not become ${healthy ? 'healthy' : 'unhealthy'} within ${limit} requests`);
}

describe('circuit-breaker options (sanity)', { timeout: 60000 }, () => {
  test('a ratio of 0 or above 1, zero trials and unknown keys are rejected naming the option', async () => {
    const start = (options: Record<string, unknown>) => startSwitchyard(fleetConfig(fleet, [{ name: 'circuit-breaker', options }]));
    await assert.rejects(start({ failureRatio: 0 }), /options\.failureRatio: must be > 0/);
    await assert.rejects(start({ failureRatio: 1.5 }), /options\.failureRatio: must be <= 1/);
    await assert.rejects(start({ halfOpenRequests: 0 }), /options\.halfOpenRequests: must be >= 1/);
    await assert.rejects(start({ cooldown: 5 }), /options: unknown key "cooldown"/);
  });
});

describe('breaking and mending', { timeout: 60000 }, () => {
  test('opens after the failure ratio over the minimum volume; the balancer skips it; trials close it', async () => {
    const { sy, health } = await yardWith({ minimumRequests: 6, failureRatio: 0.5, window: 60000, coolDown: 1000, halfOpenRequests: 2 });
    const a = fleet.byName('a');
    try {
      a.mode = 'fail';
      const before = a.hits;
      await requestsUntil(sy, health, a, false);
      assert.equal(a.hits - before, 6, 'it opened at the minimum volume, not before');
      const [viewA] = await breakers(sy);
      assert.equal(viewA!.state, 'open');
      assert.match(viewA!.reason!, /6 of 6 requests failed/);
      assert.match(health.get(upstreamRef(a)).reason!, /^circuit-breaker: circuit open/);
      assert.deepEqual(tally(await many(sy.url, 10)), { b: 10 });

      // After the cool-down one failing trial opens it again.
      await healthBecomes(health, a, true);
      assert.equal((await breakers(sy))[0]!.state, 'half-open');
      await requestsUntil(sy, health, a, false);
      assert.equal((await breakers(sy))[0]!.timesOpened, 2);

      // Mended: two passing trials close it and a takes its share again.
      a.mode = 'ok';
      await healthBecomes(health, a, true);
      for (let i = 0; i < 20 && (await breakers(sy))[0]!.state !== 'closed'; i++) await get(sy.url);
      assert.equal((await breakers(sy))[0]!.state, 'closed');
      assert.deepEqual(tally(await many(sy.url, 10)), { a: 5, b: 5 });
      const transitions = sy.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('circuit')).map((l) => l.msg);
      assert.deepEqual(transitions, ['circuit opened', 'circuit half-open: sending trial requests', 'circuit opened', 'circuit half-open: sending trial requests', 'circuit closed']);
    } finally {
      await sy.stop();
      reset();
    }
  });

  test('below the minimum volume, or under the ratio, it stays closed', async () => {
    const a = fleet.byName('a');
    const options = { minimumRequests: 10, failureRatio: 0.6, window: 60000 };
    const first = await yardWith(options);
    try {
      a.mode = 'fail';
      await many(first.sy.url, 18); // a: 9 failures, under the minimum volume
      assert.equal(first.health.isHealthy(upstreamRef(a)), true);
    } finally {
      await first.sy.stop();
      reset();
    }
    const second = await yardWith(options);
    try {
      await many(second.sy.url, 20); // a: 10 successes…
      a.mode = 'fail';
      await many(second.sy.url, 18); // …then 9 failures: 9 of 19, under the ratio
      assert.equal(second.health.isHealthy(upstreamRef(a)), true);
      assert.equal((await breakers(second.sy))[0]!.state, 'closed');
      await many(second.sy.url, 12); // 15 of 25 reaches it
      assert.equal(second.health.isHealthy(upstreamRef(a)), false);
    } finally {
      await second.sy.stop();
      reset();
    }
  });

  // Active checks only: passive marking would take a down before the breaker opens.
  const healthCheck = { name: 'health-check', options: { active: { interval: 30, timeout: 500, path: '/healthz', healthyThreshold: 1, unhealthyThreshold: 1 }, passive: { enabled: false } } };
  /** Waits, check by check, for health-check's own verdict on a (bounded by a count of checks). */
  const verdict = async (sy: RunningSwitchyard, healthy: boolean) => {
    for (let i = 0; i < 200; i++) {
      const { upstreams } = (await (await fetch(`${sy.url}/health-checks`)).json()) as { upstreams: { name: string; healthy: boolean }[] };
      if (upstreams.find((u) => u.name === 'a')!.healthy === healthy) return;
      await checksArrive(fleet.byName('a'), 1);
    }
    throw new Error('health-check never reached its verdict');
  };

  test('a passing health check does not bring back an upstream whose breaker is open', async () => {
    const { sy, health } = await yardWith({ minimumRequests: 4, failureRatio: 0.5, window: 60000, coolDown: 600000 }, [healthCheck]);
    const a = fleet.byName('a');
    try {
      a.checkMode = 'ok';
      a.mode = 'fail';
      await requestsUntil(sy, health, a, false);
      assert.equal((await breakers(sy))[0]!.state, 'open');
      // health-check holds it down too, then lets go: the breaker still holds it.
      a.checkMode = 'fail';
      await verdict(sy, false);
      a.checkMode = 'ok';
      await verdict(sy, true);
      assert.equal(health.isHealthy(upstreamRef(a)), false);
      assert.match(health.get(upstreamRef(a)).reason!, /^circuit-breaker: /);
      assert.deepEqual(tally(await many(sy.url, 6)), { b: 6 });
    } finally {
      await sy.stop();
      reset();
    }
  });

  test('a breaker going half-open does not bring back an upstream health-check holds down', async () => {
    const { sy, health } = await yardWith({ minimumRequests: 4, failureRatio: 0.5, window: 60000, coolDown: 1000 }, [healthCheck]);
    const a = fleet.byName('a');
    try {
      a.checkMode = 'ok';
      a.mode = 'fail';
      await requestsUntil(sy, health, a, false);
      assert.equal((await breakers(sy))[0]!.state, 'open');
      a.checkMode = 'fail';
      await verdict(sy, false);
      // After its cool-down the breaker lets go; health-check's own mark keeps the upstream down.
      for (let i = 0; i < 400 && (await breakers(sy))[0]!.state !== 'half-open'; i++) await checksArrive(a, 1);
      assert.equal((await breakers(sy))[0]!.state, 'half-open');
      assert.equal(health.isHealthy(upstreamRef(a)), false);
      assert.match(health.get(upstreamRef(a)).reason!, /^health-check: /);
      assert.deepEqual(tally(await many(sy.url, 6)), { b: 6 });
    } finally {
      await sy.stop();
      reset();
    }
  });
});
