// The ai-gateway preset and its store: stats and mappings survive a restart (SQLite), and two
// gateway processes sharing one redis-server see each other's mapping changes.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { KEYS, startFakeProvider, type FakeProvider } from '../helpers/ai-providers.js';
import { noRedis } from '../helpers/redis.js';
import { startSwitchyard } from '../helpers/servers.js';
import { closedPort } from '../helpers/wire.js';

const TOKEN = 'store-test-admin-token-0123456789';
const CLI = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));
let fake: FakeProvider;
before(async () => { fake = await startFakeProvider(); });
after(() => fake?.close());

const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const chat = (base: string) => fetch(`${base}/openai/v1/chat/completions`, {
  method: 'POST', headers: { authorization: `Bearer ${KEYS.openai}`, 'content-type': 'application/json' }, body: '{"model":"m"}',
});

describe('ai-gateway with a SQLite store', () => {
  test('usage statistics and mapping changes survive a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ai-gateway-restart-'));
    const config = { preset: 'ai-gateway', server: { store: `sqlite://${join(dir, 'gateway.sqlite')}` } };
    const first = await startSwitchyard(config, { env: { ADMIN_TOKEN: TOKEN } });
    try {
      const put = await fetch(`${first.url}/api/mappings/openai`, { method: 'PUT', headers: auth, body: JSON.stringify({ target: fake.url }) });
      assert.equal(put.status, 200);
      for (let i = 0; i < 2; i++) {
        const res = await chat(first.url);
        assert.equal(res.status, 200);
        await res.arrayBuffer();
      }
    } finally {
      await first.stop(); // dispose flushes the counters
    }
    const second = await startSwitchyard(config, { env: { ADMIN_TOKEN: TOKEN } });
    try {
      const stats = await (await fetch(`${second.url}/stats`)).json() as { windows: Record<string, { mappings: Record<string, { calls: number; inputTokens: number; outputTokens: number }> }> };
      for (const window of ['24h', 'total']) {
        const openai = stats.windows[window]!.mappings.openai!;
        assert.deepEqual([openai.calls, openai.inputTokens, openai.outputTokens], [2, 22, 8], window);
      }
      const listed = await (await fetch(`${second.url}/api/mappings`, { headers: auth })).json() as { mappings: { name: string; target: string }[] };
      assert.equal(listed.mappings.find((m) => m.name === 'openai')?.target, fake.url, 'the changed mapping is still there');
      const receivedBefore = fake.received.length;
      const res = await chat(second.url);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      assert.equal(fake.received.length, receivedBefore + 1, 'the call went to the changed target');
    } finally {
      await second.stop();
    }
  });
});

/** Starts the CLI with the preset; resolves with its port from the "listening" log line. */
async function startGateway(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, 'start', '--preset', 'ai-gateway', '--no-watch'], {
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', ADMIN_TOKEN: TOKEN, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as { msg?: string; port?: number };
      if (parsed.msg === 'listening') resolve(parsed.port!);
    });
    child.once('exit', (code) => reject(new Error(`gateway exited with ${code}: ${stderr}`)));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

describe('ai-gateway with a shared Redis store', { skip: noRedis }, () => {
  let redis: ChildProcess | undefined;
  let redisUrl = '';
  before(async () => {
    const port = await closedPort();
    redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: redis!.stdout! }).on('line', (line) => {
        if (/Ready to accept connections/.test(line)) resolve();
      });
      redis!.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
    });
    redisUrl = `redis://127.0.0.1:${port}`;
  });
  after(() => stopProcess(redis));

  test('two gateway processes see each other\'s mapping changes: one creates, the other routes it; one deletes, the other drops it', async () => {
    const a = await startGateway({ STORE_URL: redisUrl });
    const b = await startGateway({ STORE_URL: redisUrl });
    try {
      const created = await fetch(`${a.url}/api/mappings`, { method: 'POST', headers: auth, body: JSON.stringify({ prefix: '/shared', target: fake.url }) });
      assert.equal(created.status, 201);
      // B re-reads the table from Redis every second; poll it (bounded) until the mapping answers.
      let status = 0;
      for (let i = 0; i < 60 && status !== 200; i++) {
        const res = await fetch(`${b.url}/shared/v1/chat/completions`, {
          method: 'POST', headers: { authorization: `Bearer ${KEYS.openai}`, 'content-type': 'application/json' }, body: '{"model":"m"}',
        });
        status = res.status;
        await res.arrayBuffer();
        if (status !== 200) await delay(50);
      }
      assert.equal(status, 200, 'instance B routes the mapping instance A created');

      const removed = await fetch(`${b.url}/api/mappings/shared`, { method: 'DELETE', headers: auth });
      assert.equal(removed.status, 200);
      for (let i = 0; i < 60 && status !== 404; i++) {
        const res = await fetch(`${a.url}/shared/v1/chat/completions`, { method: 'POST', body: '{}' });
        status = res.status;
        await res.arrayBuffer();
        if (status !== 404) await delay(50);
      }
      assert.equal(status, 404, 'instance A drops the mapping instance B deleted');
    } finally {
      await stopProcess(a.child);
      await stopProcess(b.child);
    }
  });
});

