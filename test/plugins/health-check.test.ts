// The health-check plugin: options checking, active checks finding a down and a recovered upstream
// (status, content type, body), one check in flight at a time, checks stopping on dispose, and
// passive marking from real traffic with a half-open probe before recovery.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { checksArrive, fleetConfig, guard, get, healthBecomes, healthTap, many, startFleet, tally, upstreamRef, type Fleet } from '../helpers/fleet.js';
import { startSwitchyard, until } from '../helpers/servers.js';

let fleet: Fleet;

before(async () => {
  fleet = await startFleet(['a', 'b']);
});
after(() => fleet.close());

function reset(): void {
  for (const m of fleet.members) {
    m.mode = 'ok';
    m.checkMode = undefined;
    m.checkContentType = 'application/json';
    m.failStatus = 503;
    m.release();
  }
}

const active = (options: Record<string, unknown> = {}) => ({ interval: 50, timeout: 500, path: '/healthz', healthyThreshold: 2, unhealthyThreshold: 2, ...options });

async function yardWith(healthOptions: Record<string, unknown>, extraPlugins: unknown[] = []) {
  const tap = healthTap();
  const config = fleetConfig(fleet, [{ name: 'balancer' }, { name: 'health-check', options: healthOptions }, ...extraPlugins], { globalPlugins: [tap.plugin] });
  const sy = await startSwitchyard(config, { files: tap.file });
  return { sy, health: tap.health() };
}

describe('health-check options (sanity)', { timeout: 60000 }, () => {
  test('thresholds below 1, unknown keys and a broken bodyMatch are rejected naming the option', async () => {
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [{ name: 'health-check', options: { active: { healthyThreshold: 0 } } }])), /options\.active\.healthyThreshold: must be >= 1/);
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [{ name: 'health-check', options: { passive: { failures: 0 } } }])), /options\.passive\.failures: must be >= 1/);
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [{ name: 'health-check', options: { active: { intervall: 5 } } }])), /options\.active: unknown key "intervall"/);
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [{ name: 'health-check', options: { active: { expectedStatuses: ['2yy'] } } }])), /options\.active\.expectedStatuses\[0\]: must match pattern/);
    await assert.rejects(startSwitchyard(fleetConfig(fleet, [{ name: 'health-check', options: { active: { bodyMatch: '(' } } }])), /options\.active\.bodyMatch is not a valid regular expression/);
  });
});

describe('active checks', { timeout: 60000 }, () => {
  test('a failing check marks the upstream down, traffic avoids it, and a passing one brings it back', async () => {
    const { sy, health } = await yardWith({ active: active() });
    const a = fleet.byName('a');
    try {
      await checksArrive(a, 2);
      assert.equal(a.checkPaths.at(-1), '/healthz');
      a.checkMode = 'fail';
      await healthBecomes(health, a, false);
      assert.deepEqual(tally(await many(sy.url, 10)), { b: 10 });
      a.checkMode = 'ok';
      await healthBecomes(health, a, true);
      assert.deepEqual(tally(await many(sy.url, 10)), { a: 5, b: 5 });
      // One log line per transition, however many checks failed.
      const lines = sy.logs.filter((l) => l.msg === 'upstream marked unhealthy' || l.msg === 'upstream healthy again');
      assert.deepEqual(lines.map((l) => [l.msg, l.upstream]), [['upstream marked unhealthy', 'a'], ['upstream healthy again', 'a']]);
    } finally {
      await sy.stop();
      reset();
    }
  });

  test('a killed upstream is found down and found again once it is back', async () => {
    const { sy, health } = await yardWith({ active: active() });
    const b = fleet.byName('b');
    try {
      await b.kill();
      await healthBecomes(health, b, false);
      const status = await (await fetch(`${sy.url}/health-checks`)).json() as { upstreams: { name: string; healthy: boolean; lastCheck: { ok: boolean; detail: string } }[] };
      const seen = status.upstreams.find((u) => u.name === 'b')!;
      assert.equal(seen.healthy, false);
      assert.equal(seen.lastCheck.ok, false);
      assert.match(seen.lastCheck.detail, /ECONNREFUSED/);
      await b.revive();
      await healthBecomes(health, b, true);
    } finally {
      await sy.stop();
      reset();
    }
  });

  test('content type and body match: an image check wants image/*, a body check its pattern', async () => {
    const { sy, health } = await yardWith({ active: active({ contentType: 'image/*' }) });
    const a = fleet.byName('a');
    try {
      await healthBecomes(health, a, false);
      const status = await (await fetch(`${sy.url}/health-checks`)).json() as { upstreams: { name: string; lastCheck: { detail: string } }[] };
      assert.match(status.upstreams.find((u) => u.name === 'a')!.lastCheck.detail, /content type application\/json, expected image\/\*/);
      a.checkContentType = 'image/png';
      await healthBecomes(health, a, true);
    } finally {
      await sy.stop();
      reset();
    }
    const second = await yardWith({ active: active({ bodyMatch: '"upstream":"b"' }) });
    try {
      // a answers {"upstream":"a"}: the pattern does not match, b's does.
      await healthBecomes(second.health, a, false);
      assert.equal(second.health.isHealthy(upstreamRef(fleet.byName('b'))), true);
    } finally {
      await second.sy.stop();
      reset();
    }
  });

  test('never more than one check in flight per upstream, even when checks hang past the interval', async () => {
    const { sy, health } = await yardWith({ active: active({ timeout: 120 }) });
    const a = fleet.byName('a');
    try {
      a.checkMode = 'hang';
      a.maxChecksInFlight = 0;
      await checksArrive(a, 4);
      await healthBecomes(health, a, false);
      assert.equal(a.maxChecksInFlight, 1);
    } finally {
      await sy.stop();
      reset();
    }
  });

  test('checks stop when the plugin instance is disposed (a reload that changes the check path)', async () => {
    const tap = healthTap();
    const config = (path: string) => fleetConfig(fleet, [{ name: 'health-check', options: { active: active({ path }) } }], { globalPlugins: [tap.plugin] });
    const sy = await startSwitchyard(config('/v1'), { files: tap.file });
    const a = fleet.byName('a');
    try {
      await checksArrive(a, 2);
      sy.writeConfig(config('/v2'));
      assert.equal((await sy.yard.reload('test')).ok, true);
      const v2 = () => a.checkPaths.filter((p) => p === '/v2').length;
      await guard(until(() => v2() >= 2, a, 'check'), 'checks of /v2');
      const mark = a.checkPaths.length;
      await guard(until(() => v2() >= 8, a, 'check'), 'more checks of /v2');
      assert.deepEqual(a.checkPaths.slice(mark).filter((p) => p !== '/v2'), [], 'the old instance checks no more');
    } finally {
      await sy.stop();
      reset();
    }
  });
});

describe('passive checks', { timeout: 60000 }, () => {
  test('consecutive failures mark an upstream down; after unhealthyTimeout a probe brings it back', async () => {
    const { sy, health } = await yardWith({ passive: { failures: 3, window: 60000, unhealthyTimeout: 100 } });
    const a = fleet.byName('a');
    try {
      a.mode = 'fail';
      a.failStatus = 502;
      a.checkMode = 'fail';
      const marked = healthBecomes(health, a, false);
      const answers = await many(sy.url, 6);
      assert.deepEqual(answers.map((x) => x.status), [502, 200, 502, 200, 502, 200]);
      await marked;
      assert.match(health.get(upstreamRef(a)).reason ?? '', /health-check: 3 consecutive failures/);
      assert.deepEqual(tally(await many(sy.url, 6)), { b: 6 });
      // The half-open probe fails while a still fails; it comes back only once the probe passes.
      await checksArrive(a, 2);
      assert.equal(health.isHealthy(upstreamRef(a)), false);
      a.mode = 'ok';
      a.checkMode = 'ok';
      await healthBecomes(health, a, true);
      assert.deepEqual(tally(await many(sy.url, 4)), { a: 2, b: 2 });
      assert.equal(sy.logs.filter((l) => l.msg === 'upstream marked unhealthy').length, 1, 'logged once per transition');
    } finally {
      await sy.stop();
      reset();
    }
  });

  test('4xx answers and failures spread beyond the window never mark an upstream down', async () => {
    const { sy, health } = await yardWith({ passive: { failures: 2, window: 60000, unhealthyTimeout: 60000 } });
    const a = fleet.byName('a');
    try {
      a.mode = 'fail';
      a.failStatus = 404;
      const answers = await many(sy.url, 20);
      assert.equal(answers.filter((x) => x.status === 404).length, 10);
      // A 502 between successes: the count restarts each time.
      a.failStatus = 502;
      for (let i = 0; i < 3; i++) {
        a.mode = 'fail';
        await many(sy.url, 2);
        a.mode = 'ok';
        await many(sy.url, 2);
      }
      assert.equal(health.isHealthy(upstreamRef(a)), true);
    } finally {
      await sy.stop();
      reset();
    }
  });

  test('connection failures count: a killed upstream is marked down by traffic alone', async () => {
    const { sy, health } = await yardWith({ passive: { failures: 2, window: 60000, unhealthyTimeout: 60000 } });
    const b = fleet.byName('b');
    try {
      await b.kill();
      const marked = healthBecomes(health, b, false);
      const answers = await many(sy.url, 4);
      assert.deepEqual(answers.map((x) => x.status), [200, 502, 200, 502]);
      await marked;
      assert.deepEqual(tally(await many(sy.url, 4)), { a: 4 });
      assert.equal((await get(sy.url)).status, 200);
    } finally {
      await sy.stop();
      await b.revive();
      reset();
    }
  });
});
