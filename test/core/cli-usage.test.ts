// The `switchyard` command's own words to a person: --version, each subcommand's --help, what
// validate says about a broken file, and a probe stopped with Ctrl-C.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { startUpstream, stopAll } from '../../testing/index.js';

const CLI = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));
const PACKAGE = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

after(stopAll);

function run(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { cwd: tmpdir(), env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 20_000 });
}

function configFile(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'switchyard-usage-')), 'switchyard.yaml');
  writeFileSync(file, text);
  return file;
}

test('--version prints the package version and exits 0', () => {
  const result = run(['--version']);
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stdout.trim(), PACKAGE.version);
});

for (const command of ['start', 'validate', 'probe', 'presets', 'import']) {
  test(`${command} --help prints that command's help on stdout and exits 0`, () => {
    const result = run([command, '--help']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^Usage: switchyard ${command}`));
    assert.equal(result.stderr, '');
  });
}

test('an unknown option names the option, shows that command\'s help, and exits 2', () => {
  const result = run(['validate', '--bogus']);
  assert.equal(result.status, 2);
  assert.match(result.stderr, /^switchyard: unknown option "--bogus"\n\nUsage: switchyard validate/);
});

test('validate names the line and column of a YAML error and quotes the line', () => {
  const file = configFile('server:\n  port: 8080\n routes: []\n');
  const result = run(['validate', file]);
  assert.equal(result.status, 2);
  assert.match(result.stderr, /switchyard\.yaml: line 3, column 1: .*; the line reads " routes: \[\]"/);
});

test('validate reports schema errors and unknown plugin names in one pass, each with the nearest name', () => {
  const file = configFile([
    'server:',
    '  prot: 8080',
    'routes:',
    '  - name: api',
    '    match: { pathPrefix: / }',
    '    upstreams: [{ url: "http://127.0.0.1:1" }]',
    '    plugins: [{ name: cahce }, { name: nothing-like-any-plugin }]',
    '',
  ].join('\n'));
  const result = run(['validate', file]);
  assert.equal(result.status, 2);
  assert.match(result.stderr, /server: unknown key "prot" \(did you mean "port"\?\)/);
  assert.match(result.stderr, /routes\[0\]\.plugins\[0\]\.name: there is no built-in plugin "cahce" \(did you mean "cache"\?\)/);
  assert.match(result.stderr, /routes\[0\]\.plugins\[1\]\.name: there is no built-in plugin "nothing-like-any-plugin" \(built-in:/, 'no suggestion when nothing is near');
});

test('validate suggests the nearest option of a plugin for a misspelt one', () => {
  const file = configFile([
    'routes:',
    '  - name: api',
    '    match: { pathPrefix: / }',
    '    upstreams: [{ url: "http://127.0.0.1:1" }]',
    '    plugins: [{ name: health-check, options: { active: { unhealthyTreshold: 3 } } }]',
    '',
  ].join('\n'));
  const result = run(['validate', file]);
  assert.equal(result.status, 2);
  assert.match(result.stderr, /unknown key "unhealthyTreshold" \(did you mean "unhealthyThreshold"\?\)/);
});

test('validate counts one route and one plugin in the singular', () => {
  const file = configFile('server: { store: "memory://" }\nroutes:\n  - name: api\n    match: { pathPrefix: / }\n    upstreams: [{ url: "http://127.0.0.1:1" }]\n    plugins: [{ name: cors }]\n');
  const result = run(['validate', file]);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /: valid \(1 route, 1 plugin\)$/m);
});

test('probe stopped with Ctrl-C prints what it measured so far and exits 130', async () => {
  let answered = 0;
  let reachedFive!: () => void;
  const fiveAnswered = new Promise<void>((resolve) => { reachedFive = resolve; });
  const upstream = await startUpstream((_req, res) => {
    res.end('ok');
    if (++answered === 5) reachedFive();
  });
  const child = spawn(process.execPath, [CLI, 'probe', upstream.url, '--duration', '5m', '--rate', '50', '--json'], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8'); });
  const exited = once(child, 'exit');
  await fiveAnswered;
  child.kill('SIGINT');
  const [code] = await exited;
  assert.equal(code, 130);
  const report = JSON.parse(stdout) as { interrupted: boolean; settings: { durationMs: number }; upstreams: { url: string; requests: number; ok: number }[] };
  assert.equal(report.interrupted, true);
  assert.ok(report.settings.durationMs < 5 * 60_000, 'the duration is how long it measured');
  assert.equal(report.upstreams[0]!.url, upstream.url);
  assert.ok(report.upstreams[0]!.ok >= 5, `the answers before Ctrl-C are counted (${report.upstreams[0]!.ok})`);
  assert.ok(report.upstreams[0]!.ok <= upstream.requests.length);
  assert.equal(report.upstreams[0]!.requests, report.upstreams[0]!.ok, 'requests cut off by the stop are not counted as failures');
});
