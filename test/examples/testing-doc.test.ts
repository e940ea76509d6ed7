// docs/testing-plugins.md's example, run as its reader would: a plugin file and its node:test file
// that import 'switchyard-proxy' and 'switchyard-proxy/testing'. Written into a folder inside this package, the
// package's own exports resolve those names (the pack test does the same in an installed project).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runTestingDocExample, testingDocFiles } from './testing-doc.js';

const DIST = fileURLToPath(new URL('../../', import.meta.url));

test('the testing docs page holds a plugin file and its test file', () => {
  assert.deepEqual(Object.keys(testingDocFiles()).sort(), ['require-tenant.mjs', 'require-tenant.test.mjs']);
});

test('the testing docs example passes under node --test, importing switchyard-proxy/testing by name', async () => {
  const dir = mkdtempSync(join(DIST, 'testing-doc-'));
  try {
    const run = await runTestingDocExample(dir, { PATH: process.env.PATH });
    assert.equal(run.code, 0, run.output);
    assert.match(run.output, /^# pass 3$/m, run.output);
    assert.match(run.output, /^# fail 0$/m, run.output);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
