// The published package, as a user gets it: `npm pack`, the tarball installed into an empty folder
// outside this repository, then `npx --no switchyard --version`, `presets`, and `start --preset tmdb`
// against a fake TMDB on 127.0.0.1 with one request through it; then a plugin author's test run
// there with `switchyard-proxy/testing`. The preset's default store is SQLite in the folder, so the
// installed sqlite3 binding is loaded too.
// By default (CI) the run is bounded: the tarball is packed from the dist/ that `npm test` built,
// installed with `npm ci --offline --ignore-scripts` from the npm cache that `npm ci` filled (see
// appLockfile), and sqlite3's compiled binding is copied from this repository's install instead of
// compiled again (~20 s). SWITCHYARD_PACK_TEST=1 (`npm run test:pack`) runs it as a user would: a
// clean build by `prepack`, the dependencies from the registry, sqlite3 compiled (a couple of
// minutes).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { runTestingDocExample } from '../examples/testing-doc.js';
import { startFakeTmdb, V3_KEY } from '../helpers/fake-tmdb.js';
import { request } from './support.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; bin: Record<string, string> };
const FULL = process.env.SWITCHYARD_PACK_TEST === '1';
/** What the test itself uses from the environment: npm finds its cache under HOME. */
const ENV = { PATH: process.env.PATH, HOME: process.env.HOME };

interface Installed {
  /** What the tarball holds, one path a line. */
  listing: string;
  /** An empty project outside this repository with the tarball installed. */
  app: string;
}

let installing: Promise<Installed> | undefined;

/** Packs this repository and installs the tarball into a new project, once for every test here. */
function installed(): Promise<Installed> {
  installing ??= (async () => {
    const packDir = mkdtempSync(join(tmpdir(), 'switchyard-pack-'));
    // The full run lets `npm pack` run `prepack` (a clean tsc build); the bounded one packs dist/ as built.
    await run('npm', ['pack', ...FULL ? [] : ['--ignore-scripts'], '--pack-destination', packDir], { cwd: ROOT, env: process.env, timeout: 300_000 });
    const tarball = join(packDir, readdirSync(packDir).find((name) => name.endsWith('.tgz'))!);
    const { stdout: listing } = await run('tar', ['-tzf', tarball], { maxBuffer: 16 * 1024 * 1024 });
    const app = mkdtempSync(join(tmpdir(), 'switchyard-app-'));
    const options = { cwd: app, env: ENV, timeout: FULL ? 600_000 : 120_000, maxBuffer: 64 * 1024 * 1024 };
    if (FULL) {
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
      await run('npm', ['install', '--no-audit', '--no-fund', tarball], options);
    } else {
      const spec = `file:${relative(app, tarball)}`;
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, dependencies: { [PACKAGE.name]: spec } }));
      writeFileSync(join(app, 'package-lock.json'), JSON.stringify(appLockfile(spec)));
      await run('npm', ['ci', '--no-audit', '--no-fund', '--offline', '--ignore-scripts'], options);
      copySqliteBinding(app);
    }
    return { listing, app };
  })();
  return installing;
}

/**
 * The bounded run's lockfile: the tarball, and under it the tree this repository's lockfile pins
 * for its production dependencies, at the same places. With it `npm ci --offline` takes each
 * package from the tarballs this repository's `npm ci` cached, by integrity. Without one, npm 11
 * resolves the tarball's version ranges from the registry's full documents, which `npm ci` does
 * not cache (it fetched the abbreviated ones): offline, ENOTCACHED.
 */
function appLockfile(spec: string): object {
  const repository = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; link?: boolean } & Record<string, unknown>> };
  const own = repository.packages['']!;
  const packages: Record<string, unknown> = {
    '': { name: 'app', dependencies: { [PACKAGE.name]: spec } },
    [`node_modules/${PACKAGE.name}`]: { version: PACKAGE.version, resolved: spec, license: own.license, dependencies: own.dependencies, bin: own.bin, engines: own.engines },
  };
  for (const [path, entry] of Object.entries(repository.packages)) {
    if (path.startsWith('node_modules/') && entry.dev !== true && entry.link !== true) packages[path] = entry;
  }
  return { name: 'app', lockfileVersion: 3, requires: true, packages };
}

/** sqlite3's compiled binding from this repository's install, where `--ignore-scripts` left none. */
function copySqliteBinding(app: string): void {
  const binding = join('build', 'Release', 'node_sqlite3.node');
  const from = join(dirname(createRequire(join(ROOT, 'package.json')).resolve('sqlite3/package.json')), binding);
  const to = join(app, 'node_modules', 'sqlite3', binding);
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
}

/** `npx --no -- …`: without the `--`, npm takes `--version` for itself and prints npm's version. */
function npx(app: string, args: string[]) {
  return run('npx', ['--no', '--', ...args], { cwd: app, env: ENV, timeout: 60_000 });
}

test('the package has a name of its own and the `switchyard` command', () => {
  assert.notEqual(PACKAGE.name, 'switchyard', 'the name "switchyard" on the npm registry is an unrelated package');
  assert.deepEqual(Object.keys(PACKAGE.bin), ['switchyard']);
});

test('the installed package answers `npx --no -- switchyard --version`, `switchyard version` and `presets` in an empty folder', { timeout: 900_000 }, async () => {
  const { app } = await installed();
  assert.ok(!app.startsWith(ROOT), 'the project is outside the repository');
  const version = await npx(app, ['switchyard', '--version']);
  assert.equal(version.stdout.trim(), PACKAGE.version);
  assert.equal((await npx(app, ['switchyard', 'version'])).stdout.trim(), PACKAGE.version);
  const listed = await npx(app, ['switchyard', 'presets']);
  assert.match(listed.stdout, /^tmdb\s/m);
  assert.match(listed.stdout, /^balancer\s/m);
});

test('the packed tarball installs into an empty folder and `npx --no switchyard start --preset tmdb` proxies a request with the key injected', { timeout: 900_000 }, async () => {
  const { listing, app } = await installed();
  assert.match(listing, /package\/dist\/bin\/switchyard\.js/);
  assert.match(listing, /package\/dist\/presets\/tmdb\.js/);
  assert.doesNotMatch(listing, /package\/dist\/test\//, 'tests are not shipped');

  const tmdb = await startFakeTmdb();
  // Its own process group, so that stopping it reaches node under npx as well. Both routes (/3 and
  // /t/p) and their health checks go to the fake; the store is the preset's default, ./cache in the app.
  const child = spawn('npx', ['--no', 'switchyard', 'start', '--preset', 'tmdb'], {
    cwd: app, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH, HOME: process.env.HOME, PORT: '0', HOST: '127.0.0.1',
      TMDB_API_KEY: V3_KEY, TMDB_API_SERVERS: tmdb.url, TMDB_IMAGE_SERVERS: tmdb.url,
    },
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
  // 'close', not 'exit': npx can exit before the node it started has written its last lines to the
  // pipe they share; 'close' waits until every process holding it is done.
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        stdout += `${line}\n`;
        if (!line.startsWith('{')) return;
        const parsed = JSON.parse(line) as { msg?: string; port?: number };
        if (parsed.msg === 'listening') resolve(parsed.port!);
      });
      void exited.then((code) => reject(new Error(`switchyard exited with ${code}: ${stderr}`)));
    });
    const answer = await request(port, '/3/movie/550?language=de-DE');
    assert.equal(answer.status, 200, answer.body);
    assert.equal(answer.headers['x-tmdb-proxy'], 'switchyard');
    assert.deepEqual(JSON.parse(answer.body), { id: 550, title: 'Movie 550', original_language: 'en', language: 'de-DE', overview: 'Ünïcödé ✓' });
    // The fake answers 200 only with the right key, so the 200 already proves it arrived; check where.
    const seen = new URL(tmdb.hits.at(-1)!.url, 'http://tmdb');
    assert.equal(seen.pathname, '/3/movie/550');
    assert.equal(seen.searchParams.get('api_key'), V3_KEY, 'tmdb-key added the v3 key');
    assert.equal(seen.searchParams.get('language'), 'de-DE', 'the client\'s query went through');
  } finally {
    process.kill(-child.pid!, 'SIGTERM');
    await exited;
    await tmdb.close();
  }
  assert.ok(stdout.includes('"msg":"listening"'), 'the log was read');
  assert.match(stdout, /"msg":"shutting down/, 'SIGTERM stopped it the orderly way');
  assert.ok(!stdout.includes(V3_KEY) && !stderr.includes(V3_KEY), 'the key never reaches the log');
});

test('a plugin test in a project outside this repository passes with switchyard-proxy/testing from the installed package', { timeout: 900_000 }, async () => {
  const { listing, app } = await installed();
  assert.match(listing, /package\/dist\/testing\/index\.js/);
  assert.match(listing, /package\/dist\/testing\/index\.d\.ts/);
  assert.ok(!app.startsWith(ROOT), 'the project is outside the repository');
  // The example of docs/testing-plugins.md: 'switchyard-proxy' and 'switchyard-proxy/testing' resolve only
  // through the app's node_modules here.
  const result = await runTestingDocExample(app, ENV);
  assert.equal(result.code, 0, result.output);
  assert.match(result.output, /^# pass 3$/m, result.output);
  assert.match(result.output, /^# fail 0$/m, result.output);
});
