// The published package, as a user gets it: `npm pack`, `npm install <tarball>` into an empty
// folder, `npx switchyard start --preset balancer`, one request through it. Opt-in
// (SWITCHYARD_PACK_TEST=1, or `npm run test:pack`): the install needs the npm registry and compiles
// sqlite3, a couple of minutes that CI does not spend on every run.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { echoHandler, startUpstream } from '../helpers/servers.js';
import { request } from './support.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const skip = process.env.SWITCHYARD_PACK_TEST === '1' ? false : 'opt-in: set SWITCHYARD_PACK_TEST=1 (needs the npm registry; ~2 min)';

test('the packed tarball installs into an empty folder and `npx switchyard start --preset balancer` proxies a request', { skip, timeout: 900_000 }, async () => {
  const packDir = mkdtempSync(join(tmpdir(), 'switchyard-pack-'));
  // `npm pack` runs `prepare` (tsc): the tarball carries dist/, so installing it needs no build.
  await run('npm', ['pack', '--pack-destination', packDir], { cwd: ROOT, timeout: 300_000 });
  const tarball = join(packDir, readdirSync(packDir).find((name) => name.endsWith('.tgz'))!);
  const { stdout: listing } = await run('tar', ['-tzf', tarball]);
  assert.match(listing, /package\/dist\/bin\/switchyard\.js/);
  assert.doesNotMatch(listing, /package\/dist\/test\//, 'tests are not shipped');

  const app = mkdtempSync(join(tmpdir(), 'switchyard-app-'));
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
  await run('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: app, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });

  const upstream = await startUpstream(echoHandler('packed'));
  // Its own process group, so that stopping it reaches node under npx as well.
  const child = spawn('npx', ['switchyard', 'start', '--preset', 'balancer'], {
    cwd: app, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, BACKEND_SERVERS: upstream.url, PORT: '0', HOST: '127.0.0.1' },
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!line.startsWith('{')) return;
        const parsed = JSON.parse(line) as { msg?: string; port?: number };
        if (parsed.msg === 'listening') resolve(parsed.port!);
      });
      void exited.then((code) => reject(new Error(`switchyard exited with ${code}: ${stderr}`)));
    });
    const answer = await request(port, '/hello');
    assert.equal(answer.status, 200);
    assert.equal((JSON.parse(answer.body) as { upstream: string; url: string }).upstream, 'packed');
  } finally {
    process.kill(-child.pid!, 'SIGTERM');
    await exited;
    await upstream.close();
  }
});
