// The complete example of docs/testing-plugins.md, as files: each ```js block whose first line is
// `// <name>.mjs` is that file. The docs test runs them inside this repository, the pack test in a
// project that installed the packed tarball, so the page's example is known to run as written.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const PAGE = new URL('../../../docs/testing-plugins.md', import.meta.url);

/** The example's files by name, from the page. */
export function testingDocFiles(): Record<string, string> {
  const page = readFileSync(PAGE, 'utf8');
  const blocks = [...page.matchAll(/```js\n\/\/ ([\w.-]+\.mjs)\n([\s\S]*?)```/g)];
  return Object.fromEntries(blocks.map(([, name, body]) => [name!, `// ${name}\n${body}`]));
}

export interface NodeTestRun {
  code: number;
  output: string;
}

/** Writes the example into `dir` and runs `node --test` on its test file there. */
export async function runTestingDocExample(dir: string, env: NodeJS.ProcessEnv): Promise<NodeTestRun> {
  const files = testingDocFiles();
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const tests = Object.keys(files).filter((name) => name.endsWith('.test.mjs'));
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--test', '--test-reporter=tap', ...tests], { cwd: dir, env, timeout: 120_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? 1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}
