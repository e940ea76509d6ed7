// ai-usage: reading token usage from provider bodies and streams, and the windowed counters shared
// through the store.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Keyv from 'keyv';
import { StoreFactory } from '../../core/state.js';
import { UsageStats } from '../../plugins/ai-usage/counters.js';
import { usageTee, type TokenUsage } from '../../plugins/ai-usage/tokens.js';
import { noRedis, startRedis } from '../helpers/redis.js';
import { lockSqlite, type SqliteLock } from '../helpers/sqlite-lock.js';

/** Pushes `body` through the tee in the given chunk size; resolves with what passed and what was counted. */
async function tee(kind: 'sse' | 'json', body: Buffer, size: number, encoding?: string): Promise<{ out: Buffer; usage: TokenUsage }> {
  let usage: TokenUsage | undefined;
  const counted = new Promise<void>((resolve) => {
    const t = usageTee(kind, encoding, (u) => { usage = u; resolve(); });
    const out: Buffer[] = [];
    t.on('data', (c: Buffer) => out.push(c));
    t.on('end', () => { result.out = Buffer.concat(out); });
    for (let i = 0; i < body.length; i += size) t.write(body.subarray(i, i + size));
    t.end();
  });
  const result = { out: Buffer.alloc(0) };
  await counted;
  await new Promise((resolve) => setImmediate(resolve));
  return { out: result.out, usage: usage! };
}

const gemini = Buffer.from([1, 2, 3].map((n) => `data: {"candidates":[],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":${n},"thoughtsTokenCount":1}}\r\n\r\n`).join(''));
const anthropic = Buffer.from([
  'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}\n\n',
  'event: ping\ndata: {"type":"ping"}\n\n',
  'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":42}}\n\n',
].join(''));

describe('ai-usage: token usage from responses', () => {
  test('streams pass unchanged and the last usage wins, whatever the chunking', async () => {
    for (const size of [1, 7, 10_000]) {
      const g = await tee('sse', gemini, size);
      assert.deepEqual(g.out, gemini);
      assert.deepEqual(g.usage, { input: 5, output: 4 }, `gemini, chunks of ${size}`);
      const a = await tee('sse', anthropic, size);
      assert.deepEqual(a.usage, { input: 15, output: 42 }, `anthropic, chunks of ${size}`);
    }
  });

  test('whole JSON bodies, compressed or not, are read from their tail', async () => {
    const body = Buffer.from(JSON.stringify({ id: 'x', choices: [{ message: { content: '"usage": {' + 'x'.repeat(100_000) } }], usage: { prompt_tokens: 3, completion_tokens: 9 } }));
    const plain = await tee('json', body, 4096);
    assert.deepEqual(plain.out, body);
    assert.deepEqual(plain.usage, { input: 3, output: 9 });
    const gz = zlib.gzipSync(body);
    const packed = await tee('json', gz, 100, 'gzip');
    assert.deepEqual(packed.out, gz, 'the client gets the compressed bytes untouched');
    assert.deepEqual(packed.usage, { input: 3, output: 9 });
  });

  test('the answering model is read from streams (OpenAI chunks, Anthropic message_start, Gemini modelVersion) and whole bodies', async () => {
    const openai = Buffer.from([
      'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-x","choices":[{"delta":{"content":"hi"}}]}\n\n',
      'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-x","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}\n\n',
      'data: [DONE]\n\n',
    ].join(''));
    assert.deepEqual((await tee('sse', openai, 5)).usage, { input: 2, output: 1, model: 'gpt-x' });
    const claude = Buffer.from('event: message_start\ndata: {"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":3,"output_tokens":1}}}\n\n');
    assert.equal((await tee('sse', claude, 3)).usage.model, 'claude-x');
    const gem = Buffer.from('data: {"candidates":[],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1},"modelVersion":"gemini-x"}\r\n\r\n');
    assert.equal((await tee('sse', gem, 7)).usage.model, 'gemini-x');
    const whole = Buffer.from(JSON.stringify({ id: 'x', model: 'gpt-whole', choices: [{ message: { content: 'y'.repeat(100_000) } }], usage: { prompt_tokens: 3, completion_tokens: 9 } }));
    assert.deepEqual((await tee('json', whole, 4096)).usage, { input: 3, output: 9, model: 'gpt-whole' }, 'named at the start, read though the body is longer than what is kept of its end');
  });
});

const HOUR = 3_600_000;

describe('ai-usage: counters', () => {
  test('windows sum hourly buckets; a sync adds to what the store holds and reads back what others added', async () => {
    const store = new Keyv();
    const now = Date.UTC(2030, 0, 31, 12);
    const a = new UsageStats();
    await a.sync(store, now);
    a.record('openai', '/v1/chat/completions', { calls: 1, s2xx: 1, inputTokens: 3, latencyMsMax: 40 }, now);
    a.record('openai', '/v1/chat/completions', { calls: 1, s4xx: 1 }, now - 3 * 24 * HOUR);
    a.record('openai', '/v1/chat/completions', { calls: 1, s5xx: 1 }, now - 20 * 24 * HOUR);
    await a.sync(store, now);
    const b = new UsageStats();
    await b.sync(store, now);
    b.record('openai', '/v1/chat/completions', { calls: 1, s2xx: 1, latencyMsMax: 25 }, now);
    await b.sync(store, now);
    const c = new UsageStats();
    await c.sync(store, now);
    for (const [who, stats] of [['c', c], ['b', b]] as const) {
      const snap = stats.snapshot(now);
      assert.deepEqual([snap['24h'].calls, snap['7d'].calls, snap['30d'].calls, snap.total.calls], [2, 3, 4, 4], who);
      assert.equal(snap.total.mappings.openai!.endpoints['/v1/chat/completions']!.inputTokens, 3, who);
      assert.equal(snap.total.latencyMsMax, 40, `${who}: the largest latency is kept, not summed`);
    }
    await a.sync(store, now);
    assert.equal(a.snapshot(now).total.calls, 4, 'a reads back what b added after a\'s own write');
  });

  test('a sync that fails (the SQLite file locked by another process) keeps its deltas for the next one, which still runs', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ai-usage-lock-')), 'store.sqlite');
    const factory = await StoreFactory.create(`sqlite://${file}`, tmpdir());
    const lock: { held?: SqliteLock } = {};
    try {
      const store = factory.open('plugin:ai-usage');
      const stats = new UsageStats();
      await stats.sync(store);
      stats.record('m', '/e', { calls: 1 });
      lock.held = await lockSqlite(file);
      await assert.rejects(stats.sync(store), /SQLITE_BUSY/);
      assert.equal(stats.snapshot().total.calls, 1, 'still counted in memory');
      await lock.held.release();
      stats.record('m', '/e', { calls: 1 });
      await stats.sync(store);
      const fresh = new UsageStats();
      await fresh.sync(store);
      assert.equal(fresh.snapshot().total.calls, 2, 'written once each, nothing lost');
    } finally {
      await lock.held?.release();
      await factory.close();
    }
  });

  test('past 200 endpoints in what the store holds, new ones count under (other)', async () => {
    const store = new Keyv();
    const a = new UsageStats();
    await a.sync(store);
    for (let i = 0; i < 200; i++) a.record('m', `/e${i}`, { calls: 1 });
    await a.sync(store);
    const b = new UsageStats();
    await b.sync(store);
    b.record('m', '/new', { calls: 1 });
    b.record('m', '/e7', { calls: 1 });
    await b.sync(store);
    const endpoints = b.snapshot().total.mappings.m!.endpoints;
    assert.equal(Object.keys(endpoints).length, 201);
    assert.equal(endpoints['(other)']!.calls, 1);
    assert.equal(endpoints['/e7']!.calls, 2);
  });

  // Two instances, each with its own connection to one shared store, syncing at the same moments:
  // a read-add-write would lose one side's counts; the stores' own increments must not.
  const shared: [string, string | undefined, () => Promise<{ url: string; stop(): Promise<void> }>][] = [
    ['SQLite (two connections to one file, as with --workers)', undefined,
      async () => ({ url: `sqlite://${join(mkdtempSync(join(tmpdir(), 'ai-usage-')), 'store.sqlite')}`, stop: async () => {} })],
    ['Redis (two clients)', noRedis, startRedis],
  ];
  for (const [name, skip, start] of shared) {
    test(`instances sharing ${name} add up exactly`, { skip }, async () => {
      const backend = await start();
      const factories = await Promise.all([StoreFactory.create(backend.url, tmpdir()), StoreFactory.create(backend.url, tmpdir())]);
      try {
        const stores = factories.map((f) => f.open('plugin:ai-usage'));
        const instances = stores.map(() => new UsageStats());
        await Promise.all(instances.map((stats, i) => stats.sync(stores[i]!)));
        const ROUNDS = 20;
        for (let round = 0; round < ROUNDS; round++) {
          instances.forEach((stats, i) => stats.record('m', `/e${round % 2}`, { calls: 1, inputTokens: 2 + i, latencyMsSum: 1.5, latencyMsMax: round + i }));
          // A busy store may refuse a sync; its deltas then wait for the next one.
          await Promise.allSettled(instances.map((stats, i) => stats.sync(stores[i]!)));
        }
        for (const [i, stats] of instances.entries()) await syncUntilDone(stats, stores[i]!);
        // Each reads back the other's last write only on its next sync.
        for (const [i, stats] of instances.entries()) await syncUntilDone(stats, stores[i]!);
        for (const stats of instances) {
          const total = stats.snapshot().total;
          assert.equal(total.calls, 2 * ROUNDS);
          assert.equal(total.inputTokens, (2 + 3) * ROUNDS);
          assert.equal(total.latencyMsSum, 1.5 * 2 * ROUNDS);
          assert.equal(total.latencyMsMax, ROUNDS);
          assert.deepEqual(Object.keys(total.mappings.m!.endpoints).sort(), ['/e0', '/e1']);
          assert.equal(stats.snapshot()['24h'].calls, 2 * ROUNDS);
        }
      } finally {
        await Promise.all(factories.map((f) => f.close()));
        await backend.stop();
      }
    });
  }
});

/** Syncs until one succeeds; at most 20 tries (a busy SQLite file refuses a write now and then). */
async function syncUntilDone(stats: UsageStats, store: Keyv): Promise<void> {
  let last: unknown;
  for (let i = 0; i < 20; i++) {
    try {
      return await stats.sync(store);
    } catch (err) {
      last = err;
    }
  }
  throw last;
}
