// ai-usage: reading token usage from provider bodies and streams, and the windowed counters.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';
import Keyv from 'keyv';
import { UsageStats } from '../../plugins/ai-usage/counters.js';
import { usageTee, type TokenUsage } from '../../plugins/ai-usage/tokens.js';

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
});

describe('ai-usage: counters', () => {
  test('windows sum hourly buckets; a flush merges into what the store already holds', async () => {
    const store = new Keyv();
    const now = Date.UTC(2030, 0, 31, 12);
    const a = new UsageStats();
    await a.load(store, now);
    a.record('openai', '/v1/chat/completions', { calls: 1, s2xx: 1, inputTokens: 3 }, now);
    a.record('openai', '/v1/chat/completions', { calls: 1, s4xx: 1 }, now - 3 * 24 * 3_600_000);
    a.record('openai', '/v1/chat/completions', { calls: 1, s5xx: 1 }, now - 20 * 24 * 3_600_000);
    await a.flush(store);
    const b = new UsageStats();
    await b.load(store, now);
    b.record('openai', '/v1/chat/completions', { calls: 1, s2xx: 1 }, now);
    await b.flush(store);
    const c = new UsageStats();
    await c.load(store, now);
    const snap = c.snapshot(now);
    assert.deepEqual([snap['24h'].calls, snap['7d'].calls, snap['30d'].calls, snap.total.calls], [2, 3, 4, 4]);
    assert.equal(snap.total.mappings.openai!.endpoints['/v1/chat/completions']!.inputTokens, 3);
  });
});
