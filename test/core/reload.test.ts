// Live reload: a changed config applies without failing a request, a bad one is rejected while the
// old one keeps serving, in-flight work finishes where it started, and state survives.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import type { ReloadResult } from '../../core/index.js';
import { echoHandler, pluginSource, routeConfig, startSwitchyard, startUpstream, type RunningSwitchyard, type RunningUpstream } from '../helpers/servers.js';

let one: RunningUpstream;
let two: RunningUpstream;

before(async () => {
  one = await startUpstream(echoHandler('one'));
  two = await startUpstream(echoHandler('two'));
});
after(async () => {
  await one.close();
  await two.close();
});

/** Waits for the next reload that applied a change (or for a rejected one when `ok` is false). */
function nextReload(sy: RunningSwitchyard, ok = true): Promise<ReloadResult> {
  return new Promise((resolve) => {
    const listener = (result: ReloadResult) => {
      if (result.unchanged || result.ok !== ok) return;
      sy.yard.off('reload', listener);
      resolve(result);
    };
    sy.yard.on('reload', listener);
  });
}

describe('live reload', () => {
  test('config changes apply live while concurrent requests run, with zero failed requests', async () => {
    const sy = await startSwitchyard(routeConfig([one.url]), { watch: true });
    const seen = { one: 0, two: 0 };
    const failures: string[] = [];
    let running = true;
    let total = 0;
    const deadline = Date.now() + 20_000;
    const worker = async () => {
      while (running && total < 20_000 && Date.now() < deadline) {
        total++;
        try {
          const res = await fetch(`${sy.url}/load?n=${total}`);
          if (res.status !== 200) failures.push(`status ${res.status}: ${await res.text()}`);
          else seen[(await res.json() as { upstream: 'one' | 'two' }).upstream]++;
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    try {
      // Flip the route between the two upstreams several times while the load runs.
      for (let flip = 0; flip < 6; flip++) {
        const reloaded = nextReload(sy);
        sy.writeConfig(routeConfig([flip % 2 === 0 ? two.url : one.url], { timeouts: { idle: 30000 + flip } }));
        await reloaded;
      }
      assert.equal(sy.yard.generation, 7);
    } finally {
      running = false;
      await Promise.all(workers);
      await sy.stop();
    }
    assert.deepEqual(failures, []);
    assert.ok(seen.one > 0 && seen.two > 0, `both configs served requests: ${JSON.stringify(seen)}`);
  });

  test('an invalid config is rejected with file, path and problem; the old config keeps serving', async () => {
    const sy = await startSwitchyard(routeConfig([one.url]), { watch: true });
    try {
      const rejected = nextReload(sy, false);
      sy.writeConfig(routeConfig(['not-a-url']));
      const result = await rejected;
      assert.match(result.error!, /switchyard\.yaml: routes\[0\]\.upstreams\[0\]\.url: must match pattern/);

      const res = await fetch(`${sy.url}/still`);
      assert.equal(res.status, 200);
      assert.equal((await res.json() as { upstream: string }).upstream, 'one');

      const status = await (await fetch(`${sy.url}/status`)).json() as { lastReload: { ok: boolean; error?: string }; generation: number };
      assert.equal(status.lastReload.ok, false);
      assert.equal(status.lastReload.error, undefined, 'the reason (naming the file) is for the admin key only');
      assert.equal(status.generation, 1);
      assert.ok(sy.logs.some((line) => line.msg === 'config reload rejected; the previous config keeps serving'));

      const fixed = nextReload(sy);
      sy.writeConfig(routeConfig([two.url]));
      await fixed;
      assert.equal((await (await fetch(`${sy.url}/again`)).json() as { upstream: string }).upstream, 'two');
    } finally {
      await sy.stop();
    }
  });

  test('a half-written YAML file is rejected and the next complete write applies', async () => {
    const sy = await startSwitchyard(routeConfig([one.url]), { watch: true });
    try {
      const rejected = nextReload(sy, false);
      writeFileSync(sy.configFile, 'server:\n  store: memory://\nroutes:\n  - name: main\n    match: { pathPrefix: /\n');
      assert.match((await rejected).error!, /switchyard\.yaml/);
      assert.equal((await fetch(`${sy.url}/x`)).status, 200);
    } finally {
      await sy.stop();
    }
  });

  test('reloading an unchanged file is a no-op', async () => {
    const sy = await startSwitchyard(routeConfig([one.url]));
    try {
      assert.deepEqual(await sy.yard.reload(), { ok: true, unchanged: true });
      assert.equal(sy.yard.generation, 1);
    } finally {
      await sy.stop();
    }
  });

  test('in-flight requests finish on the pipeline they started on; its plugins are disposed after', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    let arrived!: () => void;
    const heldArrived = new Promise<void>((resolve) => { arrived = resolve; });
    const slow = await startUpstream((req, res) => {
      if (req.url === '/slow') {
        arrived();
        void held.then(() => res.end('slow done'));
      } else res.end('fast');
    });
    const versioned = pluginSource('versioned', `
    api.hooks.postResponse.tap('versioned', (ctx) => { ctx.response.headers['x-version'] = String(options.version); });
    return () => { globalThis.__disposedVersions = [...(globalThis.__disposedVersions ?? []), options.version]; };`);
    const config = (version: number) => routeConfig([slow.url], { plugins: [{ path: './versioned.mjs', options: { version } }] });
    const sy = await startSwitchyard(config(1), { files: { 'versioned.mjs': versioned } });
    const disposed = () => (globalThis as { __disposedVersions?: number[] }).__disposedVersions ?? [];
    try {
      const inFlight = fetch(`${sy.url}/slow`);
      await heldArrived;
      sy.writeConfig(config(2));
      assert.equal((await sy.yard.reload()).ok, true);

      const fresh = await fetch(`${sy.url}/fast`);
      assert.equal(fresh.headers.get('x-version'), '2', 'new requests take the new pipeline');
      await fresh.text();
      assert.deepEqual(disposed(), [], 'the old pipeline is still serving a request');

      release();
      const old = await inFlight;
      assert.equal(old.headers.get('x-version'), '1', 'the in-flight request finished on the old pipeline');
      assert.equal(await old.text(), 'slow done');
    } catch (err) {
      release();
      throw err;
    } finally {
      await sy.stop();
      await slow.close();
    }
    assert.deepEqual(disposed(), [1, 2], 'version 1 disposed once drained, version 2 at stop');
  });

  test('an established WebSocket stays open across a reload', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    wss.on('connection', (socket) => socket.on('message', (data) => socket.send(`echo:${String(data)}`)));
    const wsUrl = `http://127.0.0.1:${(wss.address() as { port: number }).port}`;
    const sy = await startSwitchyard(routeConfig([wsUrl]));
    try {
      const client = new WebSocket(`${sy.url.replace('http', 'ws')}/chat`);
      await once(client, 'open');
      client.send('before');
      assert.equal(String((await once(client, 'message'))[0]), 'echo:before');

      sy.writeConfig(routeConfig([wsUrl], { timeouts: { idle: 1234 } }));
      assert.equal((await sy.yard.reload()).ok, true);
      assert.equal(sy.yard.generation, 2);

      client.send('after');
      assert.equal(String((await once(client, 'message'))[0]), 'echo:after');
      client.close();
      await once(client, 'close');
    } finally {
      await sy.stop();
      wss.close();
    }
  });

  test('a changed custom plugin file is loaded afresh', async () => {
    const stamp = (value: string) => pluginSource('stamp', `
    api.hooks.postResponse.tap('stamp', (ctx) => { ctx.response.headers['x-stamp'] = ${JSON.stringify(value)}; });`);
    const sy = await startSwitchyard(routeConfig([one.url], { plugins: [{ path: './stamp.mjs' }] }), { files: { 'stamp.mjs': stamp('first') }, watch: true });
    try {
      assert.equal((await fetch(`${sy.url}/x`)).headers.get('x-stamp'), 'first');
      const reloaded = nextReload(sy);
      writeFileSync(join(sy.dir, 'stamp.mjs'), stamp('second'));
      await reloaded;
      assert.equal((await fetch(`${sy.url}/x`)).headers.get('x-stamp'), 'second');
    } finally {
      await sy.stop();
    }
  });
});

describe('graceful shutdown', () => {
  test('stop() lets an in-flight request finish and then closes', async () => {
    let release!: () => void;
    let arrived!: () => void;
    const heldArrived = new Promise<void>((resolve) => { arrived = resolve; });
    const slow = await startUpstream((_req, res) => {
      arrived();
      release = () => res.end('finished');
    });
    const sy = await startSwitchyard(routeConfig([slow.url]));
    try {
      const inFlight = fetch(`${sy.url}/slow`);
      await heldArrived;
      const stopped = sy.yard.stop();
      release();
      const res = await inFlight;
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'finished');
      await stopped;
      await assert.rejects(fetch(`${sy.url}/after`), 'the port no longer accepts connections');
    } finally {
      await slow.close();
    }
  });
});
