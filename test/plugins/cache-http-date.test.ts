// The cache reads HTTP dates (Expires, Date, Last-Modified, If-Modified-Since) in the three forms
// RFC 9110 §5.6.7 allows and no other: whatever else Date.parse would accept is invalid.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseHttpDate } from '../../plugins/cache/http-date.js';

const NOW = Date.UTC(2026, 11, 5);

describe('HTTP dates', () => {
  test('the three forms RFC 9110 allows all read as the same instant', () => {
    const expected = Date.UTC(1994, 10, 6, 8, 49, 37);
    assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT', NOW), expected);
    assert.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', NOW), expected);
    assert.equal(parseHttpDate('Sun Nov  6 08:49:37 1994', NOW), expected);
  });

  test('a two-digit rfc850 year is the closest one not more than 50 years ahead: -50 is 2050, -94 is 1994', () => {
    assert.equal(parseHttpDate('Saturday, 01-Jan-50 00:00:00 GMT', NOW), Date.UTC(2050, 0, 1));
    assert.equal(parseHttpDate('Wednesday, 01-Jan-76 00:00:00 GMT', NOW), Date.UTC(2076, 0, 1));
    assert.equal(parseHttpDate('Thursday, 01-Jan-77 00:00:00 GMT', NOW), Date.UTC(1977, 0, 1));
  });

  for (const invalid of [
    'Sun, 06 Nov 2094 08:49:37 UTC',
    'Sun 06 Nov 2094 08:49:37 GMT',
    'Sun, 06-Nov-2094 08:49:37 GMT',
    'Sun, 06 Nov 2094 8:49:37 GMT',
    'Sun, 6 Nov 2094 08:49:37 GMT',
    'sun, 06 nov 2094 08:49:37 gmt',
    'Sun, 31 Feb 2094 08:49:37 GMT',
    'Sun, 06 Nov 2094 24:00:00 GMT',
    '2094-11-06T08:49:37Z',
    '0',
    '',
    ' Sun, 06 Nov 2094 08:49:37 GMT',
  ]) {
    test(`"${invalid}" is not an HTTP date`, () => {
      assert.equal(parseHttpDate(invalid, NOW), undefined);
    });
  }
});
