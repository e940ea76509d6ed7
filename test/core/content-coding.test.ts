// Accept-Encoding as the compression and cache plugins read it (core/content-coding.ts): the
// headers browsers and tools really send, and the odd ones.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { acceptedCodings, acceptsCoding } from '../../core/index.js';

test('a browser\'s Accept-Encoding accepts each coding it names at q 1', () => {
  assert.deepEqual([...acceptedCodings('gzip, deflate, br, zstd')], [['gzip', 1], ['deflate', 1], ['br', 1], ['zstd', 1]]);
});

test('q-values are read; x-gzip is gzip; q=0 and a malformed q refuse; * covers the codings not named', () => {
  const header = 'X-GZIP;q=0.5, br;q=0, deflate;q=oops, identity, *;q=0.1';
  assert.deepEqual([...acceptedCodings(header)], [['gzip', 0.5], ['br', 0], ['deflate', 0], ['identity', 1], ['*', 0.1]]);
  assert.equal(acceptsCoding(header, 'gzip'), true);
  assert.equal(acceptsCoding(header, 'br'), false);
  assert.equal(acceptsCoding(header, 'deflate'), false);
  assert.equal(acceptsCoding(header, 'zstd'), true);
});

test('no Accept-Encoding accepts no coding', () => {
  assert.equal(acceptsCoding(undefined, 'gzip'), false);
  assert.equal(acceptedCodings(undefined).size, 0);
});
