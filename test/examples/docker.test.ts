// The container image without a Docker engine (none runs on this machine): the Dockerfile's runtime
// stage is read, its layout rebuilt in a temp folder (root-owned, as the image's /app is, with the
// directories it hands to its user), and its ENTRYPOINT, CMD and HEALTHCHECK run there with its ENV,
// as an unprivileged user like the image's `node`. What this cannot check: the build stage itself
// and Docker's own handling of VOLUME and HEALTHCHECK timing.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import YAML from 'yaml';
import { loadConfig } from '../../core/index.js';
import { echoUpstream, stopAll } from '../../testing/index.js';
import { startFakeTmdb, V3_KEY } from '../helpers/fake-tmdb.js';
import { catalogs } from '../helpers/servers.js';
import { createTestCa, noOpenssl } from '../helpers/tls.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The image's `node` user is uid 1000; any unprivileged uid stands in for it here. */
const IMAGE_USER = 1000;

after(stopAll);

interface RuntimeStage {
  env: Record<string, string>;
  /** Directories the stage creates and gives to its user. */
  ownedDirs: string[];
  volumes: string[];
  user: string;
  healthcheck: string[];
  entrypoint: string[];
  cmd: string[];
}

/** The last stage of the Dockerfile, instruction by instruction (continuation lines joined). */
function runtimeStage(): RuntimeStage {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n\s*/g, ' ');
  const lines = text.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#'));
  const from = lines.map((line, i) => (line.startsWith('FROM ') ? i : -1)).filter((i) => i !== -1).at(-1)!;
  const stage = lines.slice(from);
  const instruction = (name: string) => stage.filter((line) => line.startsWith(`${name} `)).map((line) => line.slice(name.length + 1).trim());
  const env = Object.fromEntries(instruction('ENV').flatMap((line) => line.split(/\s+/).map((pair) => pair.split('=') as [string, string])));
  const ownedDirs = instruction('RUN').flatMap((line) => /chown node:node ((?:\/\S+\s*)+)/.exec(line)?.[1]?.trim().split(/\s+/) ?? []);
  const healthcheck = JSON.parse(instruction('HEALTHCHECK')[0]!.replace(/^.*?CMD /, '')) as string[];
  return {
    env, ownedDirs, volumes: JSON.parse(instruction('VOLUME')[0]!) as string[], user: instruction('USER')[0]!, healthcheck,
    entrypoint: JSON.parse(instruction('ENTRYPOINT')[0]!) as string[], cmd: JSON.parse(instruction('CMD')[0]!) as string[],
  };
}

const stage = runtimeStage();

/** /app as the image has it: root-owned, readable; the stage's owned directories given to its user. */
function imageLayout(): string {
  const parent = mkdtempSync(join(tmpdir(), 'switchyard-image-'));
  chmodSync(parent, 0o755);
  const app = join(parent, 'app');
  mkdirSync(app, { mode: 0o755 });
  copyFileSync(join(ROOT, 'package.json'), join(app, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'));
  symlinkSync(join(ROOT, 'dist'), join(app, 'dist'));
  for (const dir of stage.ownedDirs) {
    assert.ok(dir.startsWith('/app/'), dir);
    const path = join(app, dir.slice('/app/'.length));
    mkdirSync(path, { recursive: true });
    chownSync(path, IMAGE_USER, IMAGE_USER);
  }
  return app;
}

/** The image's environment, loopback-only (tests talk to 127.0.0.1) and its health file in the layout. */
function imageEnv(app: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  const healthDir = join(app, '..', 'tmp');
  mkdirSync(healthDir, { recursive: true });
  chownSync(healthDir, IMAGE_USER, IMAGE_USER);
  return { PATH: process.env.PATH, ...stage.env, HOST: '127.0.0.1', SWITCHYARD_HEALTH_FILE: join(healthDir, 'switchyard.health'), ...extra };
}

/** `node dist/bin/switchyard.js …` as the image runs its ENTRYPOINT: `node` from PATH, cwd /app. */
function command(args: string[]): [string, string[]] {
  const [program, ...rest] = args;
  return [program === 'node' ? process.execPath : program!, rest];
}

async function startImage(app: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; port: number; stop(): Promise<void> }> {
  const [program, rest] = command([...stage.entrypoint, ...args]);
  const child = spawn(program, rest, { cwd: app, env, uid: IMAGE_USER, gid: IMAGE_USER, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
  const exited = once(child, 'exit');
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as { msg?: string; port?: number };
      if (parsed.msg === 'listening') resolve(parsed.port!);
    });
    void exited.then(([code]) => reject(new Error(`exited with ${code}: ${stderr}`)));
  });
  return { child, port, stop: async () => { child.kill('SIGTERM'); await exited; } };
}

function healthcheck(app: string, env: NodeJS.ProcessEnv) {
  const [program, rest] = command(stage.healthcheck);
  return spawnSync(program, rest, { cwd: app, env, uid: IMAGE_USER, gid: IMAGE_USER, encoding: 'utf8', timeout: 20_000 });
}

test('the image sets no PORT, so each preset listens on its own default port', async () => {
  assert.equal(stage.env.PORT, undefined);
  const cases = [
    ['balancer', 8080, { BACKEND_SERVERS: 'http://127.0.0.1:9' }],
    ['ai-gateway', 8000, {}],
    ['tmdb', 6635, { TMDB_API_KEY: V3_KEY }],
    ['confluence', 8080, { CONFLUENCE_URL: 'http://127.0.0.1:9/wiki', CONFLUENCE_PAT: 'a-personal-access-token' }],
  ] as const;
  for (const [preset, port, env] of cases) {
    const loaded = await loadConfig({ preset }, catalogs, { ...stage.env, ...env });
    assert.equal(loaded.config.server.port, port, preset);
  }
});

test('the image runs as a user that owns /app/data and /app/cache, both volumes', () => {
  assert.equal(stage.user, 'node');
  assert.deepEqual([...stage.ownedDirs].sort(), ['/app/cache', '/app/data']);
  assert.deepEqual([...stage.volumes].sort(), ['/app/cache', '/app/data']);
});

test('the tmdb preset in the image writes its cache to /app/cache and the healthcheck passes', async () => {
  const app = imageLayout();
  const tmdb = await startFakeTmdb();
  const env = imageEnv(app, { PORT: '0', TMDB_API_KEY: V3_KEY, TMDB_API_SERVERS: tmdb.url, TMDB_IMAGE_SERVERS: tmdb.url });
  const running = await startImage(app, ['start', '--preset', 'tmdb'], env);
  try {
    const res = await fetch(`http://127.0.0.1:${running.port}/3/movie/550`);
    assert.equal(res.status, 200);
    assert.ok(existsSync(join(app, 'cache', 'switchyard.sqlite')), 'the store is in /app/cache');
    const check = healthcheck(app, env);
    assert.equal(check.status, 0, check.stderr);
  } finally {
    await running.stop();
    await tmdb.close();
  }
});

test('with a config mounted as /app/switchyard.yaml the default store is in /app/data, and the healthcheck finds an admin port with a prefix behind TLS', { skip: noOpenssl }, async () => {
  const app = imageLayout();
  const ca = createTestCa();
  ca.issue(join(app, 'cert.pem'), join(app, 'key.pem'));
  chmodSync(join(app, 'key.pem'), 0o644);
  const upstream = await echoUpstream('behind-the-image');
  writeFileSync(join(app, 'switchyard.yaml'), YAML.stringify({
    server: { tls: { cert: 'cert.pem', key: 'key.pem' }, admin: { prefix: '/_switchyard' } },
    routes: [{ name: 'api', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }], plugins: [{ name: 'cache' }] }],
  }));
  const env = imageEnv(app, { PORT: '0' });
  const running = await startImage(app, ['start'], env);
  try {
    assert.ok(existsSync(join(app, 'data', 'switchyard.sqlite')), 'the default store is in /app/data');
    assert.match(readFileSync(env.SWITCHYARD_HEALTH_FILE!, 'utf8'), new RegExp(`^https://127\\.0\\.0\\.1:${running.port}/_switchyard/health\\n$`));
    const check = healthcheck(app, env);
    assert.equal(check.status, 0, check.stderr);
  } finally {
    await running.stop();
  }
  const down = healthcheck(app, env);
  assert.equal(down.status, 1, 'a stopped proxy fails the check');
  assert.match(down.stderr, /_switchyard\/health/);
});

test('a separate admin port is where the healthcheck asks', async () => {
  const app = imageLayout();
  const upstream = await echoUpstream('admin-port');
  writeFileSync(join(app, 'switchyard.yaml'), YAML.stringify({
    server: { store: 'memory://', admin: { port: 0 } },
    routes: [{ name: 'api', match: { pathPrefix: '/' }, upstreams: [{ url: upstream.url }] }],
  }));
  const env = imageEnv(app, { PORT: '0' });
  const running = await startImage(app, ['start'], env);
  try {
    const url = new URL(readFileSync(env.SWITCHYARD_HEALTH_FILE!, 'utf8').trim());
    assert.notEqual(Number(url.port), running.port, 'the admin port, not the proxy port');
    assert.equal(url.pathname, '/health');
    assert.equal(healthcheck(app, env).status, 0);
  } finally {
    await running.stop();
  }
});

test('examples/docker-compose.yml health-checks the nginx backend on a path nginx serves', async () => {
  const compose = YAML.parse(readFileSync(join(ROOT, 'examples', 'docker-compose.yml'), 'utf8')) as {
    services: Record<string, { image?: string; command?: string[]; environment?: Record<string, string> }>;
  };
  assert.equal(compose.services.backend!.image, 'nginx:stable');
  const service = compose.services.switchyard!;
  const preset = service.command![service.command!.indexOf('--preset') + 1]!;
  const loaded = await loadConfig({ preset }, catalogs, { ...stage.env, ...service.environment, STORE_URL: 'memory://' });
  const check = [...loaded.globalPlugins, ...loaded.routePlugins.flat()].find((plugin) => plugin.definition.name === 'health-check');
  // nginx's stock configuration answers `/` (its welcome page) and 404 for anything else.
  assert.ok(check, 'the balancer preset health-checks its backends');
  assert.equal((check.options as { active: { path: string } }).active.path, '/');
});
