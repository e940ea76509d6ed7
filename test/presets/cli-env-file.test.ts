// `.env` as the Go AI proxy's users keep it: the `switchyard` command reads ./.env at start for
// every preset (what the environment already sets wins), and --env-file names another file.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, test } from 'node:test';

const CLI = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));
const children: ChildProcess[] = [];

/** The Go AI proxy README's .env, with a token of our own. */
const DOT_ENV = `# 管理功能配置
ADMIN_TOKEN=token-from-dot-env-0123456789
WEB_PROXY="false"
`;

function tempDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-env-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** Starts the CLI in `cwd` and resolves with the port from its "listening" line. */
async function startCli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<number> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { PATH: process.env.PATH, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  return new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as { msg?: string; port?: number };
      if (parsed.msg === 'listening') resolve(parsed.port!);
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
}

async function mappingsStatus(port: number, token: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/api/mappings`, { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return res.status;
}

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode !== null) continue;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
});

describe('the switchyard command reads .env', { timeout: 60000 }, () => {
  test('./.env is loaded at start: its ADMIN_TOKEN opens the admin API and WEB_PROXY="false" turns the web proxy off', async () => {
    const dir = tempDir({ '.env': DOT_ENV });
    const port = await startCli(['start', '--preset', 'ai-gateway', '--port', '0', '--host', '127.0.0.1'], dir);
    assert.equal(await mappingsStatus(port, 'token-from-dot-env-0123456789'), 200);
    const proxied = await fetch(`http://127.0.0.1:${port}/proxy/http://127.0.0.1:1/`);
    await proxied.arrayBuffer();
    assert.equal(proxied.status, 404, 'no /proxy/ route: WEB_PROXY=false came from .env');
  });

  test('a variable set in the environment wins over .env', async () => {
    const dir = tempDir({ '.env': DOT_ENV });
    const port = await startCli(['start', '--preset', 'ai-gateway', '--port', '0', '--host', '127.0.0.1'], dir, { ADMIN_TOKEN: 'token-from-environment-0123' });
    assert.equal(await mappingsStatus(port, 'token-from-environment-0123'), 200);
    assert.equal(await mappingsStatus(port, 'token-from-dot-env-0123456789'), 401);
  });

  test('--env-file reads another file instead; a missing one stops the start naming it', async () => {
    const dir = tempDir({ '.env': DOT_ENV, 'prod.env': 'ADMIN_TOKEN=token-from-prod-env-0123456\n' });
    const port = await startCli(['start', '--preset', 'ai-gateway', '--port', '0', '--host', '127.0.0.1', '--env-file', 'prod.env'], dir);
    assert.equal(await mappingsStatus(port, 'token-from-prod-env-0123456'), 200);
    assert.equal(await mappingsStatus(port, 'token-from-dot-env-0123456789'), 401);
    const missing = spawnSync(process.execPath, [CLI, 'start', '--preset', 'ai-gateway', '--env-file', 'nope.env'], { cwd: dir, env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 20_000 });
    // Node 20 itself also reads --env-file anywhere on its command line and exits 9 on a missing
    // file before the script runs; newer Node leaves it to us (exit 2). Either way: refused, named.
    assert.ok(missing.status === 2 || missing.status === 9, `exit ${missing.status}`);
    assert.match(missing.stderr, /nope\.env/);
  });
});
