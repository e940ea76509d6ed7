// core's Retry-After reading, shared by the retry plugin and the tracing plugin's export transport.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { retryAfterMs } from '../../core/index.js';

test('Retry-After: whole seconds, an HTTP date, and nothing for what is neither', () => {
  assert.equal(retryAfterMs('120'), 120_000);
  assert.equal(retryAfterMs(' 5 '), 5_000);
  assert.equal(retryAfterMs('0'), 0);
  assert.equal(retryAfterMs(['7', '9']), 7_000, 'the first of repeated headers');
  assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT'), 0, 'a date gone by: now');
  const inAMinute = new Date(Date.now() + 60_000).toUTCString();
  const ms = retryAfterMs(inAMinute)!;
  assert.ok(ms > 58_000 && ms <= 60_000, String(ms));
  for (const unreadable of [undefined, '', '   ', 'soon', '1.5', '-3', '12abc']) assert.equal(retryAfterMs(unreadable), undefined, String(unreadable));
});
