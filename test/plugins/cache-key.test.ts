// Cache key ids: a hash of route, readable key and Vary part, the same whether or not the memo of
// recent ids still holds it; and the keys a cache remembers per URL, the same as made afresh.
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { test } from 'node:test';
import { cacheKey, hashKey, keyMaker } from '../../plugins/cache/cache-key.js';

const expected = (route: string, readable: string, vary: string) => hash('sha256', `${route}\u0000${readable}\u0000${vary}`, 'base64url').slice(0, 32);

test('an id is the hash of route, readable key and Vary part, remembered or not', () => {
  const first = hashKey('api', 'GET /3/movie/550', '');
  assert.equal(first, expected('api', 'GET /3/movie/550', ''));
  assert.equal(hashKey('api', 'GET /3/movie/550', ''), first, 'asked again: from the memo');
  // More distinct keys than the memo holds: it starts afresh, and every id stays right.
  for (let i = 0; i < 5000; i++) assert.equal(hashKey('api', `GET /3/movie/${i}`, ''), expected('api', `GET /3/movie/${i}`, ''));
  assert.equal(hashKey('api', 'GET /3/movie/550', ''), first);
  assert.notEqual(hashKey('images', 'GET /3/movie/550', ''), first, 'another route');
  assert.notEqual(hashKey('api', 'GET /3/movie/550', '\naccept-language: de'), first, 'another Vary value');
});

test('an excluded parameter changes neither the readable key nor the id', () => {
  const exclude = new Set(['api_key']);
  const withKey = cacheKey('api', '/3/movie/550?language=de&api_key=secret', {}, exclude, []);
  const without = cacheKey('api', '/3/movie/550?language=de', {}, exclude, []);
  assert.equal(withKey.readable, 'GET /3/movie/550?language=de');
  assert.equal(withKey.id, without.id);
  assert.doesNotMatch(JSON.stringify(withKey), /secret/);
});

test('a remembered key is the one cacheKey() makes, per route, past the memo\'s bound too', () => {
  const exclude = new Set(['api_key']);
  const keyOf = keyMaker(exclude, []);
  const url = '/3/movie/550?language=de&api_key=secret';
  const first = keyOf('api', url, {});
  assert.deepEqual(first, cacheKey('api', url, {}, exclude, []));
  assert.equal(keyOf('api', url, {}), first, 'asked again: the same key');
  const other = keyOf('images', url, {});
  assert.equal(other.route, 'images');
  assert.notEqual(other.id, first.id, 'the same URL on another route is another entry');
  for (let i = 0; i < 5000; i++) assert.deepEqual(keyOf('api', `/3/movie/${i}`, {}), cacheKey('api', `/3/movie/${i}`, {}, exclude, []));
  assert.deepEqual(keyOf('api', url, {}), first);
});

test('with Vary, keys are made per request: the header values take part', () => {
  const keyOf = keyMaker(new Set(), ['accept-language']);
  const de = keyOf('api', '/3/movie/550', { 'accept-language': 'de' });
  const fr = keyOf('api', '/3/movie/550', { 'accept-language': 'fr' });
  assert.notEqual(de.id, fr.id);
  assert.equal(de.vary, '\nhost: \naccept-language: de');
});
