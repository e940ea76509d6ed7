// `switchyard status [URL]` against a running proxy: the overview and upstream table once, the
// key from --key or the environment, a refused or missing key and an unreachable proxy explained,
// and --watch redrawing until interrupted.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { many, startFleet, type Fleet } from '../helpers/fleet.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

const CLI = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));
const KEY = 'status-cli-key-0123456789';

/** Runs the CLI (asynchronously: the proxy answering it lives in this process). */
async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const [code] = await once(child, 'exit') as [number | null];
  return { code, stdout, stderr };
}

describe('switchyard status', { timeout: 240_000 }, () => {
  let fleet: Fleet;
  let sy: RunningSwitchyard;
  let base: string;

  before(async () => {
    fleet = await startFleet(['alpha', 'beta']);
    sy = await startSwitchyard({
      server: { store: 'memory://', admin: { key: KEY, prefix: '/_sy' } },
      routes: [{ name: 'api', match: { pathPrefix: '/' }, upstreams: fleet.members.map((m) => ({ url: m.url, name: m.name })), plugins: [{ name: 'balancer' }] }],
    });
    base = `${sy.url}/_sy`;
    await many(sy.url, 4);
    await (await fetch(`${base}/upstream/api/beta/drain`, { method: 'POST', headers: { 'x-api-key': KEY } })).text();
  });
  after(async () => {
    await sy?.stop();
    await fleet?.close();
  });

  test('prints the overview and one row per upstream with its state and counts', async () => {
    const { code, stdout, stderr } = await run(['status', base, '--key', KEY]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^switchyard 0\.1\.0 · preset none · up \d+s · generation 1/);
    assert.ok(stdout.includes(`config ${sy.configFile}`));
    assert.match(stdout, /last reload \S+ start: ok/);
    const row = (name: string) => stdout.split('\n').find((l) => l.startsWith('api') && l.includes(` ${name} `))!;
    assert.match(row('alpha'), /^api\s+alpha\s+healthy\s+active\s+1\s+0\s+2\s+0\s/);
    assert.match(row('beta'), /^api\s+beta\s+healthy\s+draining\s+1\s+0\s+2\s+0\s/);
    assert.ok(!stdout.includes(KEY));
  });

  test('the key comes from SWITCHYARD_ADMIN_KEY or ADMIN_KEY; --json prints the data', async () => {
    const fromEnv = await run(['status', base], { SWITCHYARD_ADMIN_KEY: KEY });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    const json = await run(['status', base, '--json'], { ADMIN_KEY: KEY });
    assert.equal(json.code, 0, json.stderr);
    const data = JSON.parse(json.stdout) as { overview: { version: string }; routes: { route: string; upstreams: { name: string }[] }[] };
    assert.equal(data.overview.version, '0.1.0');
    assert.deepEqual(data.routes[0]!.upstreams.map((u) => u.name), ['alpha', 'beta']);
  });

  test('a missing or wrong key, a URL without the admin prefix and a dead proxy each say what is wrong', async () => {
    const missingKey = await run(['status', base]);
    assert.equal(missingKey.code, 1);
    assert.match(missingKey.stderr, /needs the key: give --key or set SWITCHYARD_ADMIN_KEY/);
    const wrong = await run(['status', base, '--key', 'nope']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /the admin key was refused/);
    const noPrefix = await run(['status', sy.url, '--key', KEY]);
    assert.equal(noPrefix.code, 1);
    assert.match(noPrefix.stderr, /did not answer like a Switchyard console \(is the URL its admin surface, with server\.admin\.prefix\?\)/);
    const notSwitchyard = await run(['status', fleet.byName('alpha').url, '--key', KEY]);
    assert.equal(notSwitchyard.code, 1);
    assert.match(notSwitchyard.stderr, /did not answer like a Switchyard console/);
    const closed = net.createServer().listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const dead = await run(['status', `http://127.0.0.1:${port}`, '--key', KEY]);
    assert.equal(dead.code, 1);
    assert.match(dead.stderr, /cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
    const usage = await run(['status', 'not a url']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /is not a URL/);
  });

  test('--watch redraws until interrupted, then exits 0', async () => {
    const child = spawn(process.execPath, [CLI, 'status', base, '--watch', '--interval', '0.5'], { env: { PATH: process.env.PATH, ADMIN_KEY: KEY }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let frames = 0;
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        frames = stdout.split('\nswitchyard 0.1.0').length;
        if (frames >= 2 && stdout.endsWith('\n\n')) resolve();
      });
    });
    child.kill('SIGINT');
    const [code] = await once(child, 'exit') as [number | null];
    assert.equal(code, 0);
    assert.ok(frames >= 2, `two frames or more (${frames})`);
  });
});
