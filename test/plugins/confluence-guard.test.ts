// confluence-guard: telling a file from Confluence's login page or an HTML error. The behaviour
// through real routes is in test/presets/confluence.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { refusal } from '../../plugins/confluence-guard/index.js';

test('which answers are Confluence turning the proxy away', () => {
  const markers = ['/login.action'];
  const cases: [number, Record<string, string>, boolean][] = [
    [200, { 'content-type': 'application/pdf' }, false],
    [200, { 'content-type': 'text/html; charset=utf-8' }, true],
    [200, { 'content-type': 'text/html', 'content-disposition': 'attachment; filename=page.html' }, false],
    [302, { location: 'https://c.example/login.action?os_destination=x' }, true],
    [302, { location: 'https://media.example/file/123' }, false],
    [401, {}, true],
    [403, { 'content-type': 'application/json' }, true],
    [404, { 'content-type': 'text/html' }, false],
  ];
  for (const [status, headers, refused] of cases) assert.equal(refusal(status, headers, markers) !== undefined, refused, `${status} ${JSON.stringify(headers)}`);
});
