// The `switchyard` command as a user runs it: exit codes, messages, signals.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import YAML from 'yaml';
import { echoHandler, startUpstream, type RunningUpstream } from '../helpers/servers.js';

const CLI = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));
let upstream: RunningUpstream;
before(async () => { upstream = await startUpstream(echoHandler('cli-upstream')); });
after(() => upstream.close());

function run(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { cwd: options.cwd, env: { PATH: process.env.PATH, ...options.env }, encoding: 'utf8', timeout: 20_000 });
}

function tempDir(files: Record<string, object | string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), typeof content === 'string' ? content : YAML.stringify(content));
  return dir;
}

/** Starts the CLI and resolves with the port from its "listening" log line. */
async function startCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}): Promise<{ child: ChildProcess; port: number; lines: Record<string, unknown>[] }> {
  const child = spawn(process.execPath, [...options.nodeArgs ?? [], CLI, ...args], { cwd: options.cwd, env: { PATH: process.env.PATH, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      lines.push(parsed);
      if (parsed.msg === 'listening') resolve(parsed.port as number);
    });
    child.once('exit', (code) => reject(new Error(`switchyard exited with ${code}: ${stderr}`)));
  });
  return { child, port, lines };
}

const config = () => ({
  server: { store: 'memory://', host: '127.0.0.1' },
  routes: [{ name: 'api', match: { pathPrefix: '/api' }, stripPrefix: true, upstreams: [{ url: upstream.url }] }],
});

describe('switchyard CLI', () => {
  test('start with nothing to start says what to pass and exits 2', () => {
    const result = run(['start'], { cwd: tempDir() });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /nothing to start/);
    assert.match(result.stderr, /--preset/);
    assert.match(result.stderr, /--config/);
  });

  test('an unknown command or flag is bad usage: exit 2', () => {
    assert.equal(run(['launch']).status, 2);
    assert.equal(run(['start', '--bogus']).status, 2);
  });

  test('`npx switchyard` in the repository runs this project\'s command, as the README says', () => {
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    const result = spawnSync('npx', ['--no-install', 'switchyard', 'presets'], { cwd: root, env: process.env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^balancer\s/m);
  });

  test('presets lists the presets', () => {
    const result = run(['presets']);
    assert.equal(result.status, 0);
    assert.match(result.stdout, /^balancer\s+general load-balancing/m);
  });

  test('validate exits 0 on a good file and 2 with one line per problem on a bad one', () => {
    const dir = tempDir({ 'good.yaml': config(), 'bad.yaml': { routes: [{ name: 'x', match: {}, upstreams: [{ url: 'nope' }] }], extra: true } });
    const good = run(['validate', join(dir, 'good.yaml')]);
    assert.equal(good.status, 0, good.stderr);
    assert.match(good.stdout, /good\.yaml: valid \(1 route, 0 plugins\)/);
    const bad = run(['validate', join(dir, 'bad.yaml')]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /SY_ERR_CONFIG_INVALID/);
    assert.match(bad.stderr, /bad\.yaml: \(top level\): unknown key "extra"/);
    assert.match(bad.stderr, /bad\.yaml: routes\[0\]\.upstreams\[0\]\.url: must match pattern/);
  });

  test('start with an invalid config exits 2 before listening', () => {
    const dir = tempDir({ 'switchyard.yaml': { routes: 'not a list' } });
    const result = run(['start'], { cwd: dir });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /switchyard\.yaml: routes: must be array/);
  });

  test('start picks up ./switchyard.yaml, reloads on SIGHUP and drains on SIGTERM with exit 0', async () => {
    const dir = tempDir({ 'switchyard.yaml': config() });
    const { child, port } = await startCli(['start', '--port', '0', '--no-watch'], { cwd: dir });
    try {
      const res = await fetch(`http://127.0.0.1:${port}/api/hello?x=1`);
      assert.equal((await res.json() as { url: string }).url, '/hello?x=1');

      writeFileSync(join(dir, 'switchyard.yaml'), YAML.stringify({ ...config(), routes: [{ ...config().routes[0], stripPrefix: false }] }));
      child.kill('SIGHUP');
      // The status endpoint tells when the new generation is in place.
      let generation = 1;
      for (let i = 0; i < 200 && generation < 2; i++) {
        generation = (await (await fetch(`http://127.0.0.1:${port}/status`)).json() as { generation: number }).generation;
      }
      assert.equal(generation, 2);
      assert.equal((await (await fetch(`http://127.0.0.1:${port}/api/hello`)).json() as { url: string }).url, '/api/hello');

      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      assert.equal(code, 0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('start --preset balancer serves BACKEND_SERVERS on PORT', async () => {
    const { child, port } = await startCli(['start', '--preset', 'balancer', '--host', '127.0.0.1'], { env: { BACKEND_SERVERS: upstream.url, PORT: '0' }, cwd: tempDir() });
    try {
      const res = await fetch(`http://127.0.0.1:${port}/anything`);
      assert.equal((await res.json() as { upstream: string }).upstream, 'cli-upstream');
      child.kill('SIGTERM');
      assert.equal((await once(child, 'exit'))[0], 0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  // Each store adapter and undici's full index cost megabytes of RSS (the 1 GiB stream target in
  // bench/README.md); a process that does not use them must not load them.
  describe('what start loads', () => {
    /** Starts with a module-resolution hook that writes every resolved URL to a file; returns those URLs. */
    async function modulesLoadedBy(store: string): Promise<string[]> {
      const dir = tempDir({ 'switchyard.yaml': { ...config(), server: { store, host: '127.0.0.1' } } });
      const record = join(dir, 'resolved.txt');
      writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(${JSON.stringify(record)}, result.url + '\\n');
  return result;
}
`);
      writeFileSync(join(dir, 'register.mjs'), "import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n");
      writeFileSync(record, '');
      const { child, port } = await startCli(['start', '--port', '0', '--no-watch'], { cwd: dir, nodeArgs: ['--import', join(dir, 'register.mjs')] });
      try {
        assert.equal((await fetch(`http://127.0.0.1:${port}/api/hello`)).status, 200);
        child.kill('SIGTERM');
        await once(child, 'exit');
      } finally {
        child.kill('SIGKILL');
      }
      return readFileSync(record, 'utf8').split('\n').filter(Boolean);
    }
    const loads = (urls: string[], pkg: string) => urls.some((url) => url.includes(`/node_modules/${pkg}/`));

    test('with memory://: neither store adapter, nor undici\'s index (the engine takes its Pool alone)', async () => {
      const urls = await modulesLoadedBy('memory://');
      assert.ok(urls.some((url) => url.endsWith('/core/forward-undici.js')), 'the hook saw the engine being loaded');
      assert.equal(loads(urls, '@keyv/redis'), false);
      assert.equal(loads(urls, '@keyv/sqlite'), false);
      assert.equal(urls.some((url) => url.endsWith('/node_modules/undici/index.js')), false);
    });

    test('with sqlite://: the SQLite adapter, not the Redis one', async () => {
      const urls = await modulesLoadedBy('sqlite://./store.sqlite');
      assert.equal(loads(urls, '@keyv/sqlite'), true);
      assert.equal(loads(urls, '@keyv/redis'), false);
    });

    test('the Pool the engine takes from inside undici is undici\'s exported Pool', () => {
      const require = createRequire(import.meta.url);
      assert.equal(require('undici/lib/dispatcher/pool.js'), require('undici').Pool);
    });
  });
});
