// Every option of every built-in plugin's schema is named by a test of that plugin: an option no
// test sets is one whose effect nobody checks (test/plugins/options.test.ts holds the tests for
// options no other file needed).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { builtinPlugins } from '../../plugins/index.js';

interface SchemaNode { type?: string; properties?: Record<string, SchemaNode>; items?: SchemaNode; oneOf?: SchemaNode[]; anyOf?: SchemaNode[] }

/** Dotted paths of a schema's leaves, arrays as `[]`: `latency.ewmaDecay`, `keys[].name`. */
function optionPaths(node: SchemaNode | undefined, prefix = ''): string[] {
  if (!node) return [];
  if (node.properties) {
    return Object.entries(node.properties).flatMap(([key, child]) => {
      const path = prefix ? `${prefix}.${key}` : key;
      const below = optionPaths(child, path);
      return below.length > 0 ? below : [path];
    });
  }
  if (node.type === 'array' && node.items) return optionPaths(node.items, `${prefix}[]`);
  return [...(node.oneOf ?? []), ...(node.anyOf ?? [])].flatMap((choice) => optionPaths(choice, prefix));
}

/** Every TypeScript file under test/ but this one, by path. */
function testSources(): Map<string, string> {
  const root = new URL('../../../test/', import.meta.url).pathname;
  const sources = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (path.endsWith('.ts') && !path.endsWith('options-covered.test.ts')) sources.set(path, readFileSync(path, 'utf8'));
    }
  };
  walk(root);
  return sources;
}

/**
 * Options named by a test of their plugin: a file about the plugin (its name in the file name, or
 * quoted, or as `name: <plugin>` in YAML) that has the option's last key as a word.
 */
async function unnamedOptions(): Promise<{ total: number; unnamed: string[] }> {
  const sources = testSources();
  let total = 0;
  const unnamed: string[] = [];
  for (const [plugin, load] of Object.entries(builtinPlugins)) {
    const schema = (await load()).schema as SchemaNode | undefined;
    const about = [...sources].filter(([path, text]) => path.split('/').pop()!.startsWith(plugin) || text.includes(`'${plugin}'`) || text.includes(`"${plugin}"`) || text.includes(`name: ${plugin}`));
    for (const option of new Set(optionPaths(schema))) {
      total++;
      const key = option.split('.').pop()!.replace('[]', '');
      const word = new RegExp(`\\b${key}\\b`);
      if (!about.some(([, text]) => word.test(text))) unnamed.push(`${plugin}: ${option}`);
    }
  }
  return { total, unnamed };
}

test('every option of every built-in plugin is named by a test of that plugin', async () => {
  const { total, unnamed } = await unnamedOptions();
  assert.ok(total > 150, `the schemas were read (${total} options)`);
  assert.deepEqual(unnamed, [], 'options no test names');
});
