// `switchyard probe` against local upstreams with different delays and one down: the table, the
// ranking and weights, and --write picked up live by a running Switchyard watching its file.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import YAML from 'yaml';
import { Switchyard } from '../../core/index.js';
import type { UpstreamReport } from '../../bin/probe.js';
import { guard, startFleet, type Fleet } from '../helpers/fleet.js';
import { catalogs } from '../helpers/servers.js';

const BIN = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));
const run = promisify(execFile);
// Short and bounded: at most 6 requests per upstream, over at most 400 ms.
const QUICK = ['--path', '/ping', '--duration', '400ms', '--rate', '40', '--concurrency', '2', '--max-requests', '6', '--timeout', '2s'];

let fleet: Fleet;
let down: string;

before(async () => {
  fleet = await startFleet(['fast', 'medium', 'slow', 'down']);
  fleet.byName('medium').delay = 40;
  fleet.byName('slow').delay = 120;
  down = fleet.byName('down').url;
  await fleet.byName('down').kill();
});
after(async () => {
  await fleet?.close();
});

describe('switchyard probe', () => {
  test('--json reports requests, availability, errors by kind and latency, ranked with weights', async () => {
    const urls = fleet.members.map((m) => m.url);
    const { stdout } = await run(process.execPath, [BIN, 'probe', ...urls, ...QUICK, '--json']);
    const { upstreams } = JSON.parse(stdout) as { upstreams: UpstreamReport[] };
    const byUrl = (url: string) => upstreams.find((u) => u.url === url)!;
    const [fast, medium, slow] = ['fast', 'medium', 'slow'].map((name) => byUrl(fleet.byName(name).url));
    for (const up of [fast!, medium!, slow!]) {
      assert.ok(up.requests >= 1 && up.requests <= 6, `${up.url}: ${up.requests} requests`);
      assert.equal(up.availability, 100);
      assert.deepEqual(up.errors, {});
      const l = up.latencyMs!;
      assert.ok(l.min <= l.p50 && l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max && l.min <= l.avg && l.avg <= l.max);
    }
    assert.ok(slow!.latencyMs!.min >= 120);
    const dead = byUrl(down);
    assert.equal(dead.availability, 0);
    assert.deepEqual(dead.errors, { refused: dead.requests });
    assert.equal(dead.latencyMs, null);
    assert.deepEqual(upstreams.map((u) => u.url), [fast!.url, medium!.url, slow!.url, down]);
    assert.deepEqual(upstreams.map((u) => u.rank), [1, 2, 3, 4]);
    assert.equal(fast!.weight, 10);
    assert.ok(fast!.weight > medium!.weight && medium!.weight >= slow!.weight && slow!.weight >= 1);
    assert.equal(dead.weight, 0);
    // Only what the members counted as proxied requests: the probe stayed within its bound.
    assert.ok(fleet.byName('fast').hits <= 6);
  });

  test('the table names every upstream with its figures and the recommended order', async () => {
    const { stdout } = await run(process.execPath, [BIN, 'probe', fleet.byName('fast').url, down, ...QUICK]);
    const lines = stdout.split('\n');
    assert.match(lines[1]!, /#\s+upstream\s+requests\s+avail %\s+errors\s+min\s+avg\s+p50\s+p95\s+p99\s+max\s+weight/);
    assert.match(lines[2]!, new RegExp(`^\\s*1\\s+${fleet.byName('fast').url}\\s+\\d+\\s+100\\.0\\s+-\\s+`));
    assert.match(lines[3]!, new RegExp(`^\\s*2\\s+${down}\\s+\\d+\\s+0\\.0\\s+refused:\\d+\\s+(-\\s+){6}out$`));
    assert.match(stdout, new RegExp(`recommended order: ${fleet.byName('fast').url} \\(weight 10\\)$`, 'm'));
    // No TTY here: no progress line on stderr.
  });

  test('bad usage exits 2 and says why', async () => {
    await assert.rejects(run(process.execPath, [BIN, 'probe', '--duration', 'soon', fleet.urls[0]!]), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr, /--duration soon is not a duration/);
      return true;
    });
    await assert.rejects(run(process.execPath, [BIN, 'probe']), (err: { code: number; stderr: string }) => err.code === 2 && /nothing to probe/.test(err.stderr));
  });

  test('--write puts the weights into the config file in place (with a backup) and a running Switchyard picks them up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-probe-'));
    const file = join(dir, 'switchyard.yaml');
    const original = [
      '# balancer config, edited by probe',
      'server: { store: "memory://", accessLog: false }',
      'routes:',
      '  - name: main',
      '    match: { pathPrefix: / }',
      '    upstreams:',
      ...fleet.members.map((m) => `      - { url: "${m.url}", name: ${m.name} }`),
      '    plugins:',
      '      - name: balancer',
      '        options: { algorithm: weighted }',
      '',
    ].join('\n');
    writeFileSync(file, original);
    const yard = await Switchyard.start({ source: { file, port: 0, host: '127.0.0.1' }, catalogs, env: {}, logger: pino({ level: 'silent' }), watch: true });
    try {
      const reloaded = once(yard, 'reload');
      const { stdout } = await run(process.execPath, [BIN, 'probe', '--config', file, ...QUICK, '--json', '--write', file]);
      const { upstreams } = JSON.parse(stdout) as { upstreams: UpstreamReport[] };
      const [result] = await guard(reloaded, 'the watcher reloads the written file') as [{ ok: boolean }];
      assert.equal(result.ok, true);
      assert.equal(readFileSync(`${file}.bak`, 'utf8'), original);
      const written = readFileSync(file, 'utf8');
      assert.match(written, /^# balancer config, edited by probe/);
      const doc = YAML.parse(written) as { routes: { upstreams: { url: string; weight?: number }[] }[] };
      const res = await fetch(`http://127.0.0.1:${yard.port}/upstream`);
      const live = (await res.json() as { routes: { upstreams: { id: string; weights: { configured: number } }[] }[] }).routes[0]!.upstreams;
      for (const report of upstreams) {
        const entry = doc.routes[0]!.upstreams.find((u) => u.url === report.url)!;
        const running = live.find((u) => u.id === `main/${report.url}`)!;
        if (report.weight === 0) {
          assert.equal(entry.weight, undefined, 'an upstream nothing answered keeps its weight');
          assert.equal(running.weights.configured, 1);
        } else {
          assert.equal(entry.weight, report.weight);
          assert.equal(running.weights.configured, report.weight);
        }
      }
      assert.ok(upstreams.some((u) => u.weight > 1), 'at least one weight changed from the default');
    } finally {
      await yard.stop();
    }
  });
});
