// What a person at a terminal sees from `switchyard start`: readable log lines and a start banner,
// one sentence for a port in use or a directory it cannot write, the plugin named when it fails to
// load or set up, /status and the log telling the truth after reloads, and the admin key's hint
// naming the variable the running preset reads.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import YAML from 'yaml';
import { echoUpstream, startProxy, stopAll } from '../../testing/index.js';
import { pluginSource } from '../helpers/servers.js';

const CLI = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));
/** An unprivileged user: this suite runs as root, which may write anywhere. */
const NOBODY = 65534;

after(stopAll);
const upstream = await echoUpstream('terminal');

function tempDir(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-terminal-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  return dir;
}

const routeConfig = (extra: Record<string, unknown> = {}) => YAML.stringify({
  server: { store: 'memory://', host: '127.0.0.1', port: 0 },
  routes: [{ name: 'api', match: { pathPrefix: '/api' }, stripPrefix: true, upstreams: [{ url: upstream.url }], plugins: [{ name: 'cors' }] }],
  ...extra,
});

function run(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; uid?: number } = {}) {
  return spawnSync(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? tmpdir(), env: { PATH: process.env.PATH, ...options.env }, uid: options.uid, gid: options.uid, encoding: 'utf8', timeout: 30_000,
  });
}

/** Starts the CLI and resolves once a stdout line satisfies `ready`, with every line so far. */
async function startUntil(args: string[], ready: (line: string) => boolean, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; lines: string[]; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: tmpdir(), env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
  const exited = once(child, 'exit');
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      if (ready(line)) resolve();
    });
    void exited.then(([code]) => reject(new Error(`switchyard exited with ${code}: ${stderr}`)));
  });
  return { child, lines, exited };
}

test('--pretty prints a start banner with the URL, routes, admin paths, store and config file, and human log lines', async () => {
  const dir = tempDir({ 'switchyard.yaml': routeConfig() });
  const { child, lines, exited } = await startUntil(['start', '--config', join(dir, 'switchyard.yaml'), '--pretty'], (line) => line.startsWith('  config '));
  try {
    const text = lines.join('\n');
    const url = /switchyard listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(text)?.[1];
    assert.ok(url, text);
    assert.match(text, new RegExp(`route api\\s+pathPrefix /api\\s+→\\s+${upstream.url.replace(/\./g, '\\.')}`));
    assert.match(text, /plugins: cors/);
    assert.match(text, /admin http:\/\/127\.0\.0\.1:\d+: \/health, \/status, \/console \(public\)/);
    assert.match(text, /\/config, \/workers\/roll, \/console\/api\/\* refuse: no admin key is set \(set ADMIN_KEY\)/, 'a page\'s files are left out, a folder of data routes is one entry');
    assert.match(text, /store {2}memory:\/\//);
    assert.match(text, new RegExp(`config ${join(dir, 'switchyard.yaml')} \\(watched`));
    const listening = lines.find((line) => line.includes('listening') && !line.startsWith('switchyard'));
    assert.ok(listening, text);
    assert.throws(() => JSON.parse(listening!), 'a human line, not JSON');
    assert.match(listening!, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO.*: listening/);
    const res = await fetch(`${url}/api/x`);
    assert.equal(res.status, 200);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
});

test('without a terminal or --pretty the log stays JSON lines and there is no banner', async () => {
  const dir = tempDir({ 'switchyard.yaml': routeConfig() });
  const { child, lines, exited } = await startUntil(['start', '--config', join(dir, 'switchyard.yaml')], (line) => line.includes('"msg":"listening"'));
  child.kill('SIGTERM');
  await exited;
  for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), line);
});

test('a port in use is one sentence naming the port and what to do, exit 1', async () => {
  const taken = net.createServer();
  taken.listen(0, '127.0.0.1');
  await once(taken, 'listening');
  const port = (taken.address() as net.AddressInfo).port;
  try {
    const dir = tempDir({ 'switchyard.yaml': routeConfig() });
    const result = run(['start', '--config', join(dir, 'switchyard.yaml'), '--port', String(port)]);
    assert.equal(result.status, 1);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`^switchyard: port ${port} on 127\\.0\\.0\\.1 is already in use .*--port N or PORT=N`));
  } finally {
    taken.close();
  }
});

test('a store directory the user cannot create is one sentence naming the path and the preset\'s variable, exit 1', async () => {
  // Owned by root, mode 755: the unprivileged user cannot create the cache directory inside it.
  const locked = tempDir();
  const cacheDir = join(locked, 'cache');
  const result = run(['start', '--preset', 'tmdb'], {
    uid: NOBODY,
    env: { PORT: '0', HOST: '127.0.0.1', TMDB_API_KEY: '0123456789abcdef0123456789abcdef', TMDB_API_SERVERS: upstream.url, TMDB_IMAGE_SERVERS: upstream.url, CACHE_DIR: cacheDir },
  });
  assert.equal(result.status, 1, result.stderr);
  assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  assert.match(result.stderr, new RegExp(`cannot create the store's directory ${cacheDir} \\(EACCES\\).*set CACHE_DIR or STORE_URL \\(or server\\.store\\)`));
});

test('a custom plugin with a syntax error is named with its file, line and column', () => {
  const dir = tempDir({
    'switchyard.yaml': routeConfig({ plugins: [{ path: './broken.mjs' }] }),
    'broken.mjs': "import { definePlugin } from 'switchyard-proxy';\nexport default definePlugin({\n  name: 'broken',,\n});\n",
  });
  const result = run(['validate', join(dir, 'switchyard.yaml')]);
  assert.equal(result.status, 2);
  assert.match(result.stderr, new RegExp(`plugins\\[0\\]\\.path: plugin file ${join(dir, 'broken.mjs')}:3:18 failed to load: Unexpected token ','`));
});

test('a plugin whose setup() throws is named, with its file, when start fails', () => {
  const dir = tempDir({
    'switchyard.yaml': routeConfig({ plugins: [{ path: './refuses.mjs' }] }),
    'refuses.mjs': pluginSource('refuses', `throw new Error('setup refuses v1');`),
  });
  const result = run(['start', '--config', join(dir, 'switchyard.yaml')]);
  assert.equal(result.status, 1);
  assert.match(result.stderr, new RegExp(`plugin "refuses" \\(${join(dir, 'refuses.mjs')}\\) failed in setup: setup refuses v1`));
});

test('SIGHUP with the file unchanged says in the log that nothing changed', async () => {
  const dir = tempDir({ 'switchyard.yaml': routeConfig() });
  const { child, lines, exited } = await startUntil(['start', '--config', join(dir, 'switchyard.yaml')], (line) => line.includes('"msg":"listening"'));
  try {
    const answered = new Promise<Record<string, unknown>>((resolve) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (parsed.trigger === 'SIGHUP') resolve(parsed);
      });
    });
    child.kill('SIGHUP');
    const line = await answered;
    assert.equal(line.msg, 'config unchanged: nothing to reload');
    assert.ok(!lines.some((l) => l.includes('config reloaded')));
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
});

const ADMIN = 'admin-key-for-status-0123456789';
const statusConfig = (store: string, routeName = 'api') => ({
  server: { store, admin: { key: ADMIN } },
  routes: [{ name: routeName, match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }] }],
});

async function lastReload(url: string): Promise<{ ok: boolean; error?: string; needsRestart?: string[] }> {
  const res = await fetch(`${url}/status`, { headers: { 'x-api-key': ADMIN } });
  return ((await res.json()) as { lastReload: { ok: boolean; error?: string; needsRestart?: string[] } }).lastReload;
}

test('/status drops a reload error once the file is back to the running version', async () => {
  const proxy = await startProxy(statusConfig('memory://'));
  proxy.writeConfig('routes: [ this is not valid');
  assert.equal((await proxy.yard.reload('edit')).ok, false);
  assert.equal((await lastReload(proxy.url)).ok, false);
  proxy.writeConfig(statusConfig('memory://'));
  assert.deepEqual(await proxy.yard.reload('revert'), { ok: true, unchanged: true });
  const status = await lastReload(proxy.url);
  assert.equal(status.ok, true);
  assert.equal(status.error, undefined);
  await proxy.waitForLog((line) => line.msg === 'config is back to the running version: the rejected reload no longer applies');
});

test('a restart-only setting changed and changed back no longer says a restart is needed', async () => {
  const proxy = await startProxy(statusConfig('memory://'));
  proxy.writeConfig(statusConfig('sqlite://./state.sqlite'));
  assert.equal((await proxy.yard.reload('edit')).ok, true);
  assert.deepEqual((await lastReload(proxy.url)).needsRestart, ['server.store']);
  // Back to what it runs on, with another change so that the reload applies.
  proxy.writeConfig(statusConfig('memory://', 'renamed'));
  assert.equal((await proxy.yard.reload('edit back')).ok, true);
  assert.equal((await lastReload(proxy.url)).needsRestart, undefined);
  const warnings = proxy.logs.filter((line) => line.msg === 'these settings changed but only apply after a restart');
  assert.equal(warnings.length, 1, 'warned once, for the change away, not for the change back');
});

for (const [preset, variable, env] of [
  ['tmdb', 'API_KEY', { TMDB_API_KEY: '0123456789abcdef0123456789abcdef', TMDB_API_SERVERS: 'http://127.0.0.1:9', TMDB_IMAGE_SERVERS: 'http://127.0.0.1:9', STORE_URL: 'memory://' }],
  ['ai-gateway', 'ADMIN_TOKEN', { STORE_URL: 'memory://' }],
  ['balancer', 'ADMIN_KEY', { BACKEND_SERVERS: 'http://127.0.0.1:9' }],
] as const) {
  test(`the 403 of a protected admin route without a key names ${variable}, the variable the ${preset} preset reads`, async () => {
    const proxy = await startProxy({ preset, env: { ...env } }, { env: { ...env } });
    const res = await fetch(`${proxy.url}/config`);
    assert.equal(res.status, 403);
    const body = (await res.json()) as { code: string; error: string };
    assert.equal(body.code, 'SY_ERR_ADMIN_KEY_NOT_SET');
    assert.ok(body.error.includes(`\${${variable}}`), body.error);
  });
}

test('a store directory the user cannot create names server.store when no preset reads it', () => {
  const locked = tempDir();
  mkdirSync(join(locked, 'inner'));
  const dir = tempDir({ 'switchyard.yaml': YAML.stringify({ ...YAML.parse(routeConfig()), server: { host: '127.0.0.1', port: 0, store: `sqlite://${join(locked, 'inner', 'state', 'x.sqlite')}` }, plugins: [{ name: 'cache' }] }) });
  chmodSync(dir, 0o755);
  const result = run(['start', '--config', join(dir, 'switchyard.yaml')], { uid: NOBODY });
  assert.equal(result.status, 1, result.stderr);
  assert.match(result.stderr, /cannot create the store's directory .*\(EACCES\).*set server\.store to a directory it can write/);
});
