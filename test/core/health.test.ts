// The core's health registry: several plugins' marks combine, and the fast answer it gives while
// nothing is down must never hide an upstream that is.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamHealth } from '../../core/state.js';
import type { Upstream } from '../../core/types.js';

const upstream = (id: string): Upstream => {
  const url = `http://127.0.0.1:1/${id}`;
  return { id, name: id, url, target: new URL(url), weight: 1, priority: 0, meta: {} };
};

test('an upstream is down while any plugin holds it down, and only then', () => {
  const health = new UpstreamHealth();
  const [a, b, c] = [upstream('r/a'), upstream('r/b'), upstream('r/c')];
  const changes: string[] = [];
  health.on('change', (u, status) => changes.push(`${u.id}:${status.healthy ? 'up' : 'down'}`));
  assert.deepEqual([a, b, c].map((u) => health.isHealthy(u)), [true, true, true]);

  health.set(a, false, 'checks failing', 'health-check');
  health.set(b, false, 'breaker open', 'circuit-breaker');
  health.set(a, false, 'breaker open', 'circuit-breaker'); // a second hold on a: no new transition
  assert.deepEqual([a, b, c].map((u) => health.isHealthy(u)), [false, false, true]);

  health.set(b, true, undefined, 'circuit-breaker');
  assert.deepEqual([a, b, c].map((u) => health.isHealthy(u)), [false, true, true], 'b back; a still down');
  health.set(b, true, undefined, 'circuit-breaker'); // taking back a mark it no longer holds changes nothing
  health.set(a, true, undefined, 'health-check');
  assert.equal(health.isHealthy(a), false, 'the breaker still holds a down');
  assert.match(health.get(a).reason ?? '', /circuit-breaker: breaker open/);
  health.set(a, true, undefined, 'circuit-breaker');
  assert.deepEqual([a, b, c].map((u) => health.isHealthy(u)), [true, true, true]);

  health.set(c, false, 'checks failing', 'health-check');
  assert.deepEqual([a, b, c].map((u) => health.isHealthy(u)), [true, true, false], 'after a full recovery, a new failure is seen');
  assert.deepEqual(changes, ['r/a:down', 'r/b:down', 'r/b:up', 'r/a:up', 'r/c:down']);
});
