// The docs are the contract: every config key of the schema is in docs/configuration.md, every
// error code in docs/errors.md, and the README's quick-start config is valid.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Errors } from '../../core/index.js';
import { builtinPlugins } from '../../plugins/index.js';
import { configSchema } from '../../core/config/schema.js';
import { loadConfig } from '../../core/index.js';
import { presets } from '../../presets/index.js';

const page = (path: string) => readFileSync(new URL(`../../../${path}`, import.meta.url), 'utf8');
const CONFIGURATION = page('docs/configuration.md');
const ERRORS = page('docs/errors.md');

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

test('every config key in the schema is in docs/configuration.md', () => {
  const paths = leafPaths(configSchema as unknown as SchemaNode);
  assert.ok(paths.length > 30);
  const missing = paths.filter((path) => !CONFIGURATION.includes(`\`${path}\``));
  assert.deepEqual(missing, []);
});

test('every error code is in docs/errors.md, and each key of the table is its own code', () => {
  for (const [key, spec] of Object.entries(Errors)) {
    assert.equal(spec.code, key);
    assert.ok(ERRORS.includes(`\`${key}\``), `${key} is not in docs/errors.md`);
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

test('the README\'s quick-start config file is valid', async () => {
  const yaml = /```yaml\n(# switchyard\.yaml\n[\s\S]*?)```/.exec(page('README.md'))?.[1];
  assert.ok(yaml, 'the README shows a switchyard.yaml');
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-docs-'));
  writeFileSync(join(dir, 'switchyard.yaml'), yaml);
  const loaded = await loadConfig({ file: join(dir, 'switchyard.yaml') }, { plugins: builtinPlugins, presets }, {});
  assert.deepEqual(loaded.routePlugins[0]!.map((plugin) => plugin.definition.name), ['retry', 'cache']);
});

test('every relative link of the README and docs/ points at a file that exists', () => {
  const root = new URL('../../../', import.meta.url);
  const pages = ['README.md', 'CONTRIBUTING.md', 'examples/README.md', ...readdirSync(new URL('docs/', root)).map((name) => `docs/${name}`)];
  const broken: string[] = [];
  for (const name of pages) {
    for (const [, target] of page(name).matchAll(/\]\((?!https?:|#|mailto:)([^)#\s]+)(?:#[^)]*)?\)/g)) {
      if (!existsSync(new URL(target!, new URL(name, root)))) broken.push(`${name} → ${target}`);
    }
  }
  assert.deepEqual(broken, []);
});
