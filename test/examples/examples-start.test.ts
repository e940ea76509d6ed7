// Every example starts with the command examples/README.md gives for it, run from the repository
// root as written there; only the upstreams (fakes on 127.0.0.1), the port (PORT=0) and where
// state goes are set in the environment, which wins over an env file. One request goes through each.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { startUpstream, stopAll } from '../../testing/index.js';
import { API_TOKEN, startFakeConfluence, USER } from '../helpers/fake-confluence.js';
import { startFakeTmdb, V3_KEY } from '../helpers/fake-tmdb.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));

after(stopAll);

interface ReadmeCommand {
  env: Record<string, string>;
  args: string[];
}

/** The README's `npx switchyard …` lines by example folder, leading VAR=value pairs as environment. */
function readmeCommands(): Map<string, ReadmeCommand> {
  const readme = readFileSync(join(ROOT, 'examples', 'README.md'), 'utf8');
  const commands = new Map<string, ReadmeCommand>();
  for (const [, block] of readme.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of block!.split('\n')) {
      const words = line.trim().split(/\s+/);
      const at = words.indexOf('npx');
      if (at === -1 || words[at + 1] !== 'switchyard') continue;
      const env = Object.fromEntries(words.slice(0, at).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
      const args = words.slice(at + 2);
      const example = /examples\/([\w-]+)\//.exec(args.join(' '))![1]!;
      commands.set(example, { env, args });
    }
  }
  return commands;
}

const commands = readmeCommands();

/** Runs the README's command (`npx switchyard` is this package's bin) and resolves with its port. */
async function startAsReadmeSays(example: string, env: Record<string, string>): Promise<{ port: number; stop(): Promise<void> }> {
  const command = commands.get(example);
  assert.ok(command, `examples/README.md has a command for ${example}`);
  const child = spawn(process.execPath, [CLI, ...command.args], { cwd: ROOT, env: { PATH: process.env.PATH, ...command.env, ...env, PORT: '0', HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
  const exited = once(child, 'exit');
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const parsed = JSON.parse(line) as { msg?: string; port?: number };
      if (parsed.msg === 'listening') resolve(parsed.port!);
    });
    void exited.then(([code]) => reject(new Error(`${example} exited with ${code}: ${stderr}`)));
  });
  return { port, stop: async () => { child.kill('SIGTERM'); await exited; } };
}

test('examples/README.md gives a start command for each example folder', () => {
  assert.deepEqual([...commands.keys()].sort(), ['confluence', 'request-signing', 'tmdb']);
});

test('the tmdb example starts with its env file and proxies with the key injected', async () => {
  const tmdb = await startFakeTmdb();
  const running = await startAsReadmeSays('tmdb', { TMDB_API_KEY: V3_KEY, UPSTREAM_SERVERS: tmdb.url, CACHE_DIR: mkdtempSync(join(tmpdir(), 'switchyard-example-')) });
  try {
    const res = await fetch(`http://127.0.0.1:${running.port}/3/movie/550`);
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(new URL(tmdb.hits.at(-1)!.url, 'http://tmdb').searchParams.get('api_key'), V3_KEY);
  } finally {
    await running.stop();
    await tmdb.close();
  }
});

test('the confluence example starts with its env file and serves an attachment to a client with the key', async () => {
  const confluence = await startFakeConfluence();
  const env = { CONFLUENCE_URL: confluence.url, CONFLUENCE_USERNAME: USER, CONFLUENCE_API_TOKEN: API_TOKEN, CACHE_DIR: mkdtempSync(join(tmpdir(), 'switchyard-example-')) };
  const running = await startAsReadmeSays('confluence', env);
  try {
    const key = /^PROXY_API_KEY=(.+)$/m.exec(readFileSync(join(ROOT, 'examples', 'confluence', 'confluence.env'), 'utf8'))![1]!;
    const url = `http://127.0.0.1:${running.port}/proxy/download/attachments/101/diagram.png`;
    assert.equal((await fetch(url)).status, 401, 'no key, no file');
    const res = await fetch(url, { headers: { 'x-api-key': key } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
  } finally {
    await running.stop();
    await confluence.close();
  }
});

test('the request-signing example starts as written and signs what it forwards', async () => {
  const upstream = await startUpstream((req, res) => { res.end(String(req.headers['x-signature'] ?? '')); });
  const running = await startAsReadmeSays('request-signing', { UPSTREAM_URL: upstream.url });
  try {
    const res = await fetch(`http://127.0.0.1:${running.port}/api/hello`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /keyId=2026-11/);
  } finally {
    await running.stop();
  }
});
