// concurrency-limit: at most `max` in flight, a bounded queue, 503 when full, slots given back in
// `done` whatever ended the request.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { withPlugins } from '../helpers/clients.js';
import { startSwitchyard, startUpstream, until, type RunningUpstream } from '../helpers/servers.js';

/** An upstream that holds every request until the test lets it go, counting how many it holds at once. */
let upstream: RunningUpstream;
const held: ServerResponse[] = [];
const events = new EventEmitter();
let peak = 0;
let received = 0;
before(async () => {
  upstream = await startUpstream((_req, res) => {
    received++;
    held.push(res);
    peak = Math.max(peak, held.filter((r) => !r.writableEnded && !r.destroyed).length);
    res.on('close', () => events.emit('change'));
    events.emit('change');
  });
});
after(() => upstream.close());

function releaseAll(): void {
  for (const res of held.splice(0)) if (!res.destroyed) res.end('done');
}

const waitingAtUpstream = (n: number) => until(() => held.filter((r) => !r.destroyed && !r.writableEnded).length === n, events, 'change');

describe('concurrency-limit options', () => {
  test('bad limits are rejected at start with the path of the problem', async () => {
    const start = (options: object) => startSwitchyard(withPlugins(upstream.url, [{ name: 'concurrency-limit', options }]));
    await assert.rejects(start({ max: 0 }), /routes\[0\]\.plugins\[0\]\.options\.max: must be >= 1/);
    await assert.rejects(start({ max: 2, queue: -1 }), /options\.queue: must be >= 0/);
    await assert.rejects(start({ queue: 1 }), /options: must have required property 'max'/);
  });
});

describe('concurrency-limit on a route', { timeout: 20_000 }, () => {
  test('past max in flight with no queue: 503 with a JSON error; the slot comes back when a request ends', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'concurrency-limit', options: { max: 1 } }]));
    try {
      peak = 0;
      const first = fetch(`${sy.url}/a`);
      await waitingAtUpstream(1);
      const refused = await fetch(`${sy.url}/b`);
      assert.equal(refused.status, 503);
      assert.equal((await refused.json() as { code: string }).code, 'SY_ERR_CONCURRENCY_LIMIT');
      releaseAll();
      assert.equal((await first).status, 200);
      const next = fetch(`${sy.url}/c`);
      await waitingAtUpstream(1);
      releaseAll();
      assert.equal((await next).status, 200);
      assert.equal(peak, 1);
    } finally {
      releaseAll();
      await sy.stop();
    }
  });

  test('a bounded queue: one waits and goes on when a slot frees, the one past the queue gets 503', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'concurrency-limit', options: { max: 1, queue: 1 } }]));
    try {
      peak = 0;
      const before = received;
      const first = fetch(`${sy.url}/a`);
      await waitingAtUpstream(1);
      // Which of the two arrives first is up to the sockets; exactly one must be queued, one refused.
      const second = fetch(`${sy.url}/b`);
      const third = fetch(`${sy.url}/c`);
      const refused = await Promise.race([second, third].map((p) => p.then((res) => (res.status === 503 ? res : new Promise<Response>(() => {})))));
      assert.equal((await refused.json() as { code: string }).code, 'SY_ERR_CONCURRENCY_LIMIT');
      assert.equal(received, before + 1, 'the queued one has not reached the upstream yet');
      releaseAll();
      await until(() => received === before + 2, events, 'change');
      releaseAll();
      const statuses = (await Promise.all([first, second, third])).map((res) => res.status).sort();
      assert.deepEqual(statuses, [200, 200, 503]);
      assert.equal(peak, 1);
    } finally {
      releaseAll();
      await sy.stop();
    }
  });

  test('a client that gives up frees its slot (done runs on aborts too)', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'concurrency-limit', options: { max: 1 } }]));
    try {
      const abort = new AbortController();
      const first = fetch(`${sy.url}/a`, { signal: abort.signal }).catch(() => 'aborted');
      await waitingAtUpstream(1);
      abort.abort();
      assert.equal(await first, 'aborted');
      await waitingAtUpstream(0);
      // Switchyard runs `done` on the client's close, in the same turn in which it aborts the upstream
      // request; the upstream has seen that abort, so the slot is back: the next request gets through.
      const second = fetch(`${sy.url}/b`);
      const outcome = await Promise.race([second.then((res) => res.status), waitingAtUpstream(1).then(() => 'at upstream')]);
      assert.equal(outcome, 'at upstream');
      releaseAll();
      assert.equal((await second).status, 200);
    } finally {
      releaseAll();
      await sy.stop();
    }
  });

  test('a request waits at most queueTimeout, then gets the 503', async () => {
    const sy = await startSwitchyard(withPlugins(upstream.url, [{ name: 'concurrency-limit', options: { max: 1, queue: 5, queueTimeout: 1, rejectedCode: 429, rejectedMsg: 'busy' } }]));
    try {
      const first = fetch(`${sy.url}/a`);
      await waitingAtUpstream(1);
      const waited = await fetch(`${sy.url}/b`);
      assert.equal(waited.status, 429);
      assert.equal((await waited.json() as { error: string }).error, 'busy');
      releaseAll();
      assert.equal((await first).status, 200);
    } finally {
      releaseAll();
      await sy.stop();
    }
  });
});
