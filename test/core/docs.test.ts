// The README is the contract: every config key of the schema and every error code is documented.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Errors } from '../../core/index.js';
import { builtinPlugins } from '../../plugins/index.js';
import { configSchema } from '../../core/config/schema.js';

const README = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

interface SchemaNode { type?: string; properties?: Record<string, SchemaNode>; items?: SchemaNode }

/** Dotted paths of the schema's leaves, arrays as `[]`: `routes[].match.pathPrefix`. */
function leafPaths(node: SchemaNode, prefix = ''): string[] {
  if (node.type === 'object' && node.properties) {
    return Object.entries(node.properties).flatMap(([key, child]) => {
      const path = prefix ? `${prefix}.${key}` : key;
      const below = leafPaths(child, path);
      return below.length > 0 ? below : [path];
    });
  }
  if (node.type === 'array' && node.items && node.items.type === 'object') return leafPaths(node.items, `${prefix}[]`);
  return [];
}

test('every config key in the schema is in the README reference', () => {
  const paths = leafPaths(configSchema as unknown as SchemaNode);
  assert.ok(paths.length > 30);
  const missing = paths.filter((path) => !README.includes(`\`${path}\``));
  assert.deepEqual(missing, []);
});

test('every error code is in the README, and each key of the table is its own code', () => {
  for (const [key, spec] of Object.entries(Errors)) {
    assert.equal(spec.code, key);
    assert.ok(README.includes(`\`${key}\``), `${key} is not documented`);
  }
});

test('every error code a built-in plugin declares is in that plugin\'s README, and none is the core\'s', async () => {
  let declared = 0;
  for (const [plugin, load] of Object.entries(builtinPlugins)) {
    const errors = (await load()).errors ?? {};
    const readme = readFileSync(new URL(`../../../plugins/${plugin}/README.md`, import.meta.url), 'utf8');
    for (const code of Object.keys(errors)) {
      declared++;
      assert.ok(readme.includes(`\`${code}\``), `${code} is not in plugins/${plugin}/README.md`);
      assert.ok(!Object.hasOwn(Errors, code), `${code} is ${plugin}'s, not the core's`);
    }
  }
  assert.ok(declared >= 8, `the built-in plugins declare their codes (${declared} found)`);
});

test('every error code, the core\'s and each built-in plugin\'s, is asserted by at least one test', async () => {
  const root = new URL('../../../test/', import.meta.url).pathname;
  const sources: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (path.endsWith('.test.ts') && !path.endsWith('docs.test.ts')) sources.push(readFileSync(path, 'utf8'));
    }
  };
  walk(root);
  const codes = new Set(Object.keys(Errors));
  for (const load of Object.values(builtinPlugins)) for (const code of Object.keys((await load()).errors ?? {})) codes.add(code);
  const untested = [...codes].filter((code) => !sources.some((source) => source.includes(`'${code}'`) || source.includes(`"${code}"`)));
  assert.deepEqual(untested, [], 'codes no test names');
});
