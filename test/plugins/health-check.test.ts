// The health-check plugin: options checking, active checks finding a down and a recovered upstream
// (status, content type, body), one check in flight at a time, checks stopping on dispose, active
// checks following upstreams added and removed at run time, and passive marking from real traffic
// with a half-open probe before recovery.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { admin, checksArrive, fleetConfig, guard, get, healthBecomes, healthTap, many, startFleet, tally, upstreamRef, type Fleet } from '../helpers/fleet.js';
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

// ---- active checks follow the live upstream set (upstreams added and removed at run time) ------

interface UpstreamRow { name: string; healthy: boolean; healthReason: string | null }
interface CheckRow { name: string; healthy: boolean; consecutive: { ok: number; failed: number } }

async function upstreamRows(url: string): Promise<UpstreamRow[]> {
  const body = await (await fetch(`${url}/upstream`)).json() as { routes: { upstreams: UpstreamRow[] }[] };
  return body.routes[0]!.upstreams;
}

async function checkRows(url: string): Promise<CheckRow[]> {
  return (await (await fetch(`${url}/health-checks`)).json() as { upstreams: CheckRow[] }).upstreams;
}

/** The balancer on the route, with health-check either after it on the route or global (set up before it, as in the balancer preset). */
function followConfig(own: Fleet, tap: ReturnType<typeof healthTap>, order: 'route' | 'global', balancerOptions: Record<string, unknown> = {}, server: Record<string, unknown> = {}) {
  const health = { name: 'health-check', options: { active: active() } };
  const balancer = { name: 'balancer', options: balancerOptions };
  return order === 'route'
    ? fleetConfig(own, [balancer, health], { globalPlugins: [tap.plugin], server })
    : fleetConfig(own, [balancer], { globalPlugins: [tap.plugin, health], server });
}

describe('active checks follow upstreams added and removed at run time', { timeout: 60000 }, () => {
  for (const order of ['route', 'global'] as const) {
    test(`an upstream added while down is found unhealthy and gets no traffic, then healthy once up (health-check ${order === 'route' ? 'after the balancer on the route' : 'global, set up before the balancer'})`, async () => {
      const own = await startFleet(['a', 'b']);
      const extra = await startFleet(['d']);
      const a = own.byName('a');
      const d = extra.byName('d');
      await d.kill();
      const tap = healthTap();
      const sy = await startSwitchyard(followConfig(own, tap, order), { files: tap.file });
      const health = tap.health();
      try {
        await checksArrive(a, 3);
        assert.equal((await admin(sy.url, 'POST', '/upstream/main', { url: d.url, name: 'd' })).status, 201);
        await healthBecomes(health, d, false);
        const row = (await upstreamRows(sy.url)).find((u) => u.name === 'd');
        assert.equal(row?.healthy, false, 'GET /upstream shows it unhealthy');
        assert.match(row.healthReason ?? '', /^health-check: 2 active checks failed: ECONNREFUSED/);
        // Round robin over a, b and d would send every third request to d and answer 502.
        assert.deepEqual(tally(await many(sy.url, 10)), { a: 5, b: 5 });

        // a's check state went on through the change: its passing streak counts every check it has
        // had (at most one may have arrived and not been judged yet), not only those since d joined.
        const received = a.checks;
        const streak = (await checkRows(sy.url)).find((u) => u.name === 'a')!.consecutive.ok;
        assert.ok(streak >= received - 1 && streak <= a.checks, `a's streak ${streak} after ${received} checks`);

        await d.revive();
        await healthBecomes(health, d, true);
        assert.equal((await upstreamRows(sy.url)).find((u) => u.name === 'd')?.healthy, true);
        assert.deepEqual(tally(await many(sy.url, 9)), { a: 3, b: 3, d: 3 });
        assert.equal(sy.logs.filter((l) => l.msg === 'upstream joined: health checks started' && l.upstream === 'd').length, 1);
      } finally {
        await sy.stop();
        await extra.close();
        await own.close();
      }
    });
  }

  test('an upstream removed at run time (added at run time or named in the file) gets no more checks; added back, its checks resume', async () => {
    const own = await startFleet(['a', 'b']);
    const extra = await startFleet(['e']);
    const [a, b, e] = [own.byName('a'), own.byName('b'), extra.byName('e')];
    const tap = healthTap();
    const sy = await startSwitchyard(followConfig(own, tap, 'global'), { files: tap.file });
    try {
      assert.equal((await admin(sy.url, 'POST', '/upstream/main', { url: e.url, name: 'e' })).status, 201);
      await Promise.all([checksArrive(e, 2), checksArrive(b, 2)]);
      assert.equal((await admin(sy.url, 'DELETE', '/upstream/main/e')).status, 200);
      assert.equal((await admin(sy.url, 'DELETE', '/upstream/main/b')).status, 200);
      // A check already on its way when the removal answered may still land: count from a's next one.
      await checksArrive(a, 1);
      const marks = { b: b.checks, e: e.checks };
      await checksArrive(a, 5);
      assert.deepEqual({ b: b.checks, e: e.checks }, marks, 'no check reaches a removed upstream');
      assert.deepEqual((await checkRows(sy.url)).map((u) => u.name), ['a'], 'GET /health-checks lists only what is checked');
      assert.deepEqual((await upstreamRows(sy.url)).map((u) => u.name), ['a']);
      const left = sy.logs.filter((l) => l.msg === 'upstream left: health checks stopped').map((l) => l.upstream).sort();
      assert.deepEqual(left, ['b', 'e']);

      // Added back: checked again, one check at a time.
      assert.equal((await admin(sy.url, 'POST', '/upstream/main', { url: e.url, name: 'e' })).status, 201);
      e.maxChecksInFlight = 0;
      await checksArrive(e, 3);
      assert.equal(e.maxChecksInFlight, 1);
      assert.deepEqual((await checkRows(sy.url)).map((u) => u.name).sort(), ['a', 'e']);
    } finally {
      await sy.stop();
      await extra.close();
      await own.close();
    }
  });

  test('an upstream another instance adds or removes through the shared store is checked, or no longer, after the refresh', async () => {
    const own = await startFleet(['a', 'b']);
    const extra = await startFleet(['d']);
    const [a, d] = [own.byName('a'), extra.byName('d')];
    d.checkMode = 'fail';
    const store = `sqlite://${mkdtempSync(join(tmpdir(), 'switchyard-follow-'))}/shared.sqlite`;
    const one = await startSwitchyard(fleetConfig(own, [{ name: 'balancer', options: { refreshInterval: 0 } }], { server: { store } }));
    const tap = healthTap();
    const two = await startSwitchyard(followConfig(own, tap, 'route', { refreshInterval: 50 }, { store }), { files: tap.file });
    const health = tap.health();
    try {
      assert.equal((await admin(one.url, 'POST', '/upstream/main', { url: d.url, name: 'd' })).status, 201);
      // Only the second instance checks, and only once it has read the addition back from the store.
      await healthBecomes(health, d, false);
      assert.equal((await upstreamRows(two.url)).find((u) => u.name === 'd')?.healthy, false);

      assert.equal((await admin(one.url, 'DELETE', '/upstream/main/d')).status, 200);
      // Bounded by a count of polls, not a time: the second instance drops d within a few refreshes.
      let names = ['d'];
      for (let i = 0; i < 400 && names.includes('d'); i++) names = (await upstreamRows(two.url)).map((u) => u.name);
      assert.deepEqual(names, ['a', 'b']);
      await checksArrive(a, 1);
      const mark = d.checks;
      await checksArrive(a, 5);
      assert.equal(d.checks, mark, 'no check reaches the upstream removed on the other instance');
    } finally {
      await one.stop();
      await two.stop();
      await extra.close();
      await own.close();
    }
  });
});
