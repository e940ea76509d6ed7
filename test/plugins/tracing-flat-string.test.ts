// flatString() (plugins/tracing/flat-string.ts) hands the SDK the same text, only as another kind
// of V8 string: what a span records must not change.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flatString } from '../../plugins/tracing/flat-string.js';

test('an ASCII string comes back equal, whether sliced, concatenated or long', () => {
  const url = 'http://127.0.0.1:8080/3/movie/550?api_key=x';
  const sliced = url.slice(7, url.indexOf('?'));
  const joined = `${'http://upstream.internal'}${sliced}`;
  for (const text of ['', 'GET', sliced, joined, 'a'.repeat(1024)]) assert.equal(flatString(text), text);
});

test('text beyond ASCII and strings longer than the scratch buffer are left exactly as they are', () => {
  for (const text of ['/café', 'Mozilla/5.0 (ü)', '\u{1F600}', 'b'.repeat(1025), 'ÿ']) assert.equal(flatString(text), text);
});
