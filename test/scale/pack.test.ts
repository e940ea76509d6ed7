// The published package, as a user gets it: `npm pack`, `npm install <tarball>` into an empty
// folder, `npx switchyard start --preset tmdb` against a fake TMDB on 127.0.0.1, one request through
// it with the key injected; then a plugin author's test run there with `switchyard/testing`. The preset's default store is SQLite in the folder, so the installed
// sqlite3 binding is loaded too. Opt-in (SWITCHYARD_PACK_TEST=1, or `npm run test:pack`): the
// install needs the npm registry and compiles sqlite3, a couple of minutes that CI does not spend
// on every run.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { runTestingDocExample } from '../examples/testing-doc.js';
import { startFakeTmdb, V3_KEY } from '../helpers/fake-tmdb.js';
import { request } from './support.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const skip = process.env.SWITCHYARD_PACK_TEST === '1' ? false : 'opt-in: set SWITCHYARD_PACK_TEST=1 (needs the npm registry; ~2 min)';

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
    // `npm pack` runs `prepack` (a clean tsc build): the tarball carries dist/, so installing it needs no build.
    await run('npm', ['pack', '--pack-destination', packDir], { cwd: ROOT, timeout: 300_000 });
    const tarball = join(packDir, readdirSync(packDir).find((name) => name.endsWith('.tgz'))!);
    const { stdout: listing } = await run('tar', ['-tzf', tarball], { maxBuffer: 16 * 1024 * 1024 });
    const app = mkdtempSync(join(tmpdir(), 'switchyard-app-'));
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
    await run('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: app, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
    return { listing, app };
  })();
  return installing;
}

test('the packed tarball installs into an empty folder and `npx switchyard start --preset tmdb` proxies a request with the key injected', { skip, timeout: 900_000 }, async () => {
  const { listing, app } = await installed();
  assert.match(listing, /package\/dist\/bin\/switchyard\.js/);
  assert.match(listing, /package\/dist\/presets\/tmdb\.js/);
  assert.doesNotMatch(listing, /package\/dist\/test\//, 'tests are not shipped');

  const tmdb = await startFakeTmdb();
  // Its own process group, so that stopping it reaches node under npx as well. Both routes (/3 and
  // /t/p) and their health checks go to the fake; the store is the preset's default, ./cache in the app.
  const child = spawn('npx', ['switchyard', 'start', '--preset', 'tmdb'], {
    cwd: app, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH, HOME: process.env.HOME, PORT: '0', HOST: '127.0.0.1',
      TMDB_API_KEY: V3_KEY, TMDB_API_SERVERS: tmdb.url, TMDB_IMAGE_SERVERS: tmdb.url,
    },
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
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
  assert.ok(!stdout.includes(V3_KEY) && !stderr.includes(V3_KEY), 'the key never reaches the log');
});

test('a plugin test in a project outside this repository passes with switchyard/testing from the installed package', { skip, timeout: 900_000 }, async () => {
  const { listing, app } = await installed();
  assert.match(listing, /package\/dist\/testing\/index\.js/);
  assert.match(listing, /package\/dist\/testing\/index\.d\.ts/);
  assert.ok(!app.startsWith(ROOT), 'the project is outside the repository');
  // The example of docs/testing-plugins.md: 'switchyard' and 'switchyard/testing' resolve only
  // through the app's node_modules here.
  const result = await runTestingDocExample(app, { PATH: process.env.PATH, HOME: process.env.HOME });
  assert.equal(result.code, 0, result.output);
  assert.match(result.output, /^# pass 3$/m, result.output);
  assert.match(result.output, /^# fail 0$/m, result.output);
});
