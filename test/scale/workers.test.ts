// `switchyard start --workers N`: one primary supervising N workers on one port. Requests reach
// every worker, a crashed worker is replaced, config changes apply to all workers or to none,
// SIGTERM drains them all, and workers sharing the SQLite store enforce one rate limit.
import KeyvSqlite from '@keyv/sqlite';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import YAML from 'yaml';
import { pluginSource, startUpstream, type RunningUpstream } from '../helpers/servers.js';
import { answersFromWorkers, pidsOf, request, startProcess, writeConfig, type RunningProcess } from './support.js';

/** Tags every response with the worker that served it and the config generation it came from. */
const WHOAMI = pluginSource('whoami', `
    api.hooks.postResponse.tap('whoami', (ctx) => {
      ctx.response.headers['x-worker-pid'] = String(process.pid);
      ctx.response.headers['x-config-tag'] = options.tag;
    });`, { type: 'object', properties: { tag: { type: 'string' } }, required: ['tag'], additionalProperties: false });

/** An upstream that answers at once, except /slow, which it holds until `release()`. */
const held: ServerResponse[] = [];
const arrivals = new EventEmitter();
let upstream: RunningUpstream;
before(async () => {
  upstream = await startUpstream((req, res) => {
    if (req.url === '/slow') {
      held.push(res);
      arrivals.emit('slow');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  });
});
after(() => upstream.close());

const config = (tag: string, extra: Record<string, unknown> = {}) => ({
  server: { store: 'memory://', host: '127.0.0.1' },
  routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }], plugins: [{ path: './whoami.mjs', options: { tag } }], ...extra }],
});

describe('--workers 2', () => {
  let cluster: RunningProcess;
  let configFile: string;
  before(async () => {
    configFile = writeConfig(config('v1'), { 'whoami.mjs': WHOAMI });
    cluster = await startProcess(['start', '--config', configFile, '--port', '0', '--workers', '2']);
  });
  after(() => cluster?.stop());

  test('the primary reports two workers and requests are served by both', async () => {
    const ready = cluster.lines.find((line) => line.msg === 'cluster listening')!;
    assert.equal((ready.workers as number[]).length, 2);
    const answers = await answersFromWorkers(cluster.port, '/', 2);
    assert.ok(answers.every((a) => a.status === 200));
    assert.deepEqual([...pidsOf(answers)].map(Number).sort(), [...(ready.workers as number[])].sort());
  });

  test('an invalid config change is rejected once, in the primary, and no worker reloads', async () => {
    const from = cluster.lines.length;
    writeFileSync(configFile, YAML.stringify({ ...config('v2'), routes: [{ name: 'main', match: {}, upstreams: [{ url: 'nope' }] }] }));
    const rejected = await cluster.waitForLine((line) => line.msg?.startsWith('config reload rejected by the primary') === true, from);
    assert.equal(rejected.role, 'primary');
    assert.match(String(rejected.error), /upstreams\[0\]\.url/);
    const answers = await answersFromWorkers(cluster.port, '/', 2);
    assert.equal(pidsOf(answers).size, 2);
    assert.ok(answers.every((a) => a.headers['x-config-tag'] === 'v1'), 'every worker still serves the old config');
    assert.ok(!cluster.lines.slice(from).some((line) => line.role !== 'primary' && /config reload/.test(String(line.msg))), 'no worker attempted a reload');
  });

  test('a valid config change reaches every worker, and SIGHUP reloads them all', async () => {
    let from = cluster.lines.length;
    writeFileSync(configFile, YAML.stringify(config('v2')));
    const done = await cluster.waitForLine((line) => line.msg === 'config reloaded by every worker', from);
    assert.equal(done.workers, 2);
    assert.equal(cluster.lines.slice(from).filter((line) => line.msg === 'config reloaded' && line.role !== 'primary').length, 2);
    const answers = await answersFromWorkers(cluster.port, '/', 2);
    assert.equal(pidsOf(answers).size, 2);
    assert.ok(answers.every((a) => a.headers['x-config-tag'] === 'v2'), 'every worker serves the new config');

    from = cluster.lines.length;
    cluster.child.kill('SIGHUP');
    const again = await cluster.waitForLine((line) => line.msg === 'config reloaded by every worker', from);
    assert.equal(again.trigger, 'SIGHUP');
    assert.equal(again.unchanged, true);
  });

  test('a killed worker is replaced and requests keep succeeding meanwhile', async () => {
    const before = pidsOf(await answersFromWorkers(cluster.port, '/', 2));
    const victim = Number([...before][0]);
    const from = cluster.lines.length;
    process.kill(victim, 'SIGKILL');
    await cluster.waitForLine((line) => line.msg === 'worker exited; restarting it' && line.pid === victim, from);
    // While the replacement starts, the surviving worker takes every request.
    for (let i = 0; i < 5; i++) assert.equal((await request(cluster.port, '/')).status, 200);
    const restarted = await cluster.waitForLine((line) => line.msg === 'worker restarted', from);
    const fresh = restarted.pid as number;
    assert.notEqual(fresh, victim);
    const answers = await answersFromWorkers(cluster.port, '/', 2);
    assert.ok(answers.every((a) => a.status === 200));
    assert.ok(pidsOf(answers).has(String(fresh)), 'the new worker serves');
    assert.ok(!pidsOf(answers).has(String(victim)));
    assert.ok(answers.every((a) => a.headers['x-config-tag'] === 'v2'), 'the new worker runs the current config');
  });
});

describe('--workers shutdown', () => {
  test('SIGTERM lets a request in flight finish, then every worker and the primary exit 0', async () => {
    const configFile = writeConfig(config('v1'), { 'whoami.mjs': WHOAMI });
    const cluster = await startProcess(['start', '--config', configFile, '--port', '0', '--workers', '2', '--no-watch']);
    try {
      const arrived = once(arrivals, 'slow');
      const slow = request(cluster.port, '/slow');
      await arrived;
      const from = cluster.lines.length;
      cluster.child.kill('SIGTERM');
      // Both workers start draining; the one holding /slow cannot finish until it is answered.
      for (let n = 1; n <= 2; n++) {
        await cluster.waitForLine((line) => line.msg === 'shutting down: draining in-flight requests' && cluster.lines.slice(from).filter((l) => l.msg === line.msg).length >= n, from);
      }
      held.shift()!.writeHead(200).end('finally');
      const answer = await slow;
      assert.equal(answer.status, 200);
      assert.equal(answer.body, 'finally');
      assert.equal(await cluster.exited, 0);
      assert.ok(cluster.lines.some((line) => line.msg === 'all workers stopped' && line.clean === true));
    } finally {
      await cluster.stop();
    }
  });
});

describe('--workers on the embedded SQLite store', () => {
  test('two workers writing one SQLite file at once enforce one shared rate limit', async () => {
    const store = `sqlite://${join(mkdtempSync(join(tmpdir(), 'switchyard-workers-sqlite-')), 'store.sqlite')}`;
    const configFile = writeConfig({
      ...config('v1'),
      server: { store, host: '127.0.0.1' },
      routes: [{
        name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }],
        plugins: [{ path: './whoami.mjs', options: { tag: 'v1' } }, { name: 'rate-limit', options: { limits: [{ count: 20, window: '1h' }], store: 'shared' } }],
      }],
    }, { 'whoami.mjs': WHOAMI });
    const cluster = await startProcess(['start', '--config', configFile, '--port', '0', '--workers', '2', '--no-watch']);
    try {
      // First until both workers have answered (each has opened the store), then the rest at once,
      // each on its own connection: both workers write the counters in the file concurrently.
      const first = await answersFromWorkers(cluster.port, '/', 2, 10);
      assert.equal(pidsOf(first).size, 2, 'both workers counted requests');
      const rest = await Promise.all(Array.from({ length: 60 - first.length }, () => request(cluster.port, '/')));
      const statuses = [...first, ...rest].map((a) => a.status);
      assert.equal(statuses.filter((s) => s === 200).length, 20, `statuses: ${statuses.join(',')}`);
      assert.equal(statuses.filter((s) => s === 429).length, 40, `statuses: ${statuses.join(',')}`);
      assert.ok(!cluster.lines.some((line) => /SQLITE_BUSY|database is locked/.test(JSON.stringify(line))), 'no write gave up on a locked file');
    } finally {
      assert.equal(await cluster.stop(), 0);
    }
    // The rollback journal's fsyncs per write let a slow disk's writers outwait the busy timeout.
    const file = new KeyvSqlite({ uri: store });
    assert.deepEqual(await file.query('PRAGMA journal_mode'), [{ journal_mode: 'wal' }]);
    await file.close();
  });
});

describe('--workers drain timeout', () => {
  // Blocks its worker's event loop (bounded at 60 s) on /spin, after saying so on stdout: a
  // worker that cannot drain, whatever shutdownTimeout says. Last in the file: the spinning core
  // would slow the SQLite test's concurrent writes on a small machine.
  const SPIN = pluginSource('spin', `
    api.hooks.access.tap('spin', (ctx) => {
      if (ctx.pathname !== '/spin') return;
      console.log(JSON.stringify({ msg: 'spinning', pid: process.pid }));
      const end = Date.now() + 60000;
      while (Date.now() < end) {}
    });`);
  const SHUTDOWN_TIMEOUT = 300;
  const STOP_GRACE = 5000; // core/cluster.ts: how long past shutdownTimeout the primary waits

  test('a worker that does not drain within shutdownTimeout and the grace is killed, and the primary exits 1', { timeout: 60000 }, async () => {
    const configFile = writeConfig({
      server: { store: 'memory://', host: '127.0.0.1', shutdownTimeout: SHUTDOWN_TIMEOUT },
      routes: [{ name: 'main', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }], plugins: [{ path: './spin.mjs' }] }],
    }, { 'spin.mjs': SPIN });
    const cluster = await startProcess(['start', '--config', configFile, '--port', '0', '--workers', '1', '--no-watch']);
    try {
      const stuck = request(cluster.port, '/spin').catch((err: unknown) => err);
      await cluster.waitForLine((line) => line.msg === 'spinning');
      const from = cluster.lines.length;
      cluster.child.kill('SIGTERM');
      const draining = await cluster.waitForLine((line) => line.msg === 'shutting down: draining every worker', from);
      const killed = await cluster.waitForLine((line) => line.msg === 'worker did not drain in time: killing it', from);
      const waited = Number(killed.time) - Number(draining.time);
      assert.ok(waited >= SHUTDOWN_TIMEOUT + STOP_GRACE - 5, `killed after ${waited} ms, before shutdownTimeout + the grace`);
      assert.equal(await cluster.exited, 1);
      assert.ok(cluster.lines.some((line) => line.msg === 'all workers stopped' && line.clean === false));
      assert.ok(await stuck instanceof Error, 'the stuck request got no answer');
    } finally {
      await cluster.stop();
    }
  });
});
