// The ai-gateway preset end to end: the official SDKs (openai, @anthropic-ai/sdk, @google/genai)
// pointed at the gateway, talking to a fake provider on 127.0.0.1; mappings edited live; NoThink;
// usage stats and the dashboard.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import { KEYS, startFakeProvider, type FakeProvider } from '../helpers/ai-providers.js';
import { startSwitchyard, type RunningSwitchyard } from '../helpers/servers.js';

const TOKEN = 'admin-token-for-tests-0123456789';
let fake: FakeProvider;
let other: FakeProvider;
let gw: RunningSwitchyard;

/** Calls the admin API with the token. */
async function api(method: string, path: string, body?: unknown, token = TOKEN): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() as Record<string, unknown> };
}

before(async () => {
  fake = await startFakeProvider();
  other = await startFakeProvider();
  gw = await startSwitchyard({ preset: 'ai-gateway', server: { store: 'memory://' } }, { env: { ADMIN_TOKEN: TOKEN } });
  // Every default points at a real provider; tests only ever talk to 127.0.0.1.
  const { json } = await api('GET', '/api/mappings');
  for (const mapping of json.mappings as { name: string }[]) {
    const changed = await api('PUT', `/api/mappings/${mapping.name}`, { target: fake.url });
    assert.equal(changed.status, 200);
  }
});
after(async () => {
  await gw?.stop();
  await fake?.close();
  await other?.close();
});

describe('ai-gateway preset: mappings', () => {
  test('a fresh store gets the default providers, listed only with the admin token', async () => {
    const { status, json } = await api('GET', '/api/mappings');
    assert.equal(status, 200);
    const prefixes = (json.mappings as { prefix: string }[]).map((m) => m.prefix).sort();
    assert.deepEqual(prefixes, ['/claude', '/deepseek', '/gemini', '/gnothink', '/groq', '/mistral', '/openai', '/openrouter', '/xai']);
    const gnothink = (json.mappings as { prefix: string; nothink?: boolean }[]).find((m) => m.prefix === '/gnothink');
    assert.equal(gnothink?.nothink, true);
    assert.equal((await api('GET', '/api/mappings', undefined, 'wrong')).status, 401);
    const anonymous = await fetch(`${gw.url}/api/mappings`);
    assert.equal(anonymous.status, 401);
    await anonymous.arrayBuffer();
  });

  test('mappings are created, changed and deleted through the API and apply on the next request', async () => {
    const created = await api('POST', '/api/mappings', { prefix: '/mine', target: fake.url });
    assert.equal(created.status, 201);
    const first = await fetch(`${gw.url}/mine/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${KEYS.openai}`, 'content-type': 'application/json' }, body: '{"model":"m"}',
    });
    assert.equal(first.status, 200);
    await first.arrayBuffer();
    assert.equal(fake.last('/v1/chat/completions')?.body, '{"model":"m"}');

    assert.equal((await api('POST', '/api/mappings', { prefix: '/mine', target: fake.url })).status, 409);
    const changed = await api('PUT', '/api/mappings/mine', { target: `${other.url}/` });
    assert.equal(changed.status, 200);
    assert.equal((changed.json.mapping as { target: string }).target, other.url);
    const before = other.received.length;
    const second = await fetch(`${gw.url}/mine/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${KEYS.openai}`, 'content-type': 'application/json' }, body: '{"model":"m"}',
    });
    assert.equal(second.status, 200);
    await second.arrayBuffer();
    assert.equal(other.received.length, before + 1, 'the changed target served the next request');

    assert.equal((await api('DELETE', '/api/mappings/mine')).status, 200);
    const gone = await fetch(`${gw.url}/mine/v1/chat/completions`, { method: 'POST', body: '{}' });
    assert.equal(gone.status, 404);
    assert.equal((await gone.json() as { code: string }).code, 'SY_ERR_NO_ROUTE');
    assert.equal((await api('DELETE', '/api/mappings/mine')).status, 404);

    const audit = gw.logs.filter((line) => line.audit === true && (line.mapping as { name?: string } | undefined)?.name === 'mine');
    assert.deepEqual(audit.map((line) => line.action), ['create', 'update', 'delete']);
    assert.ok(!JSON.stringify(gw.logs).includes(TOKEN), 'the admin token never appears in the logs');
  });

  test('bad mappings are refused with clear 400, 404 and 409 answers', async () => {
    const cases: [unknown, number, string][] = [
      [{ prefix: '/admin', target: fake.url }, 400, 'AI_MAPPING_RESERVED'],
      [{ prefix: '/API', target: fake.url }, 400, 'AI_MAPPING_RESERVED'],
      [{ prefix: '/stats', target: fake.url }, 400, 'AI_MAPPING_RESERVED'],
      [{ prefix: '/a/b', target: fake.url }, 400, 'AI_MAPPING_INVALID'],
      [{ prefix: 'nothing', target: fake.url }, 400, 'AI_MAPPING_INVALID'],
      [{ prefix: '/x', target: 'ftp://example.com' }, 400, 'AI_MAPPING_INVALID'],
      [{ prefix: '/x', target: '/relative' }, 400, 'AI_MAPPING_INVALID'],
      [{ prefix: '/x', target: 'https://user:pw@example.com' }, 400, 'AI_MAPPING_INVALID'],
      [{ prefix: '/openai', target: fake.url }, 409, 'AI_MAPPING_EXISTS'],
      [[1, 2], 400, 'AI_MAPPING_INVALID'],
    ];
    for (const [body, status, code] of cases) {
      const res = await api('POST', '/api/mappings', body);
      assert.equal(res.status, status, JSON.stringify(body));
      assert.equal(res.json.code, code, JSON.stringify(body));
      assert.equal(typeof res.json.error, 'string');
    }
    const malformed = await api('POST', '/api/mappings', '{not json');
    assert.equal(malformed.status, 400);
    assert.equal((await api('PUT', '/api/mappings/nope', { target: fake.url })).status, 404);
    assert.equal((await api('PUT', '/api/mappings/openai', { target: 'nope' })).status, 400);
  });
});

describe('ai-gateway preset: forwarding with the official SDKs', () => {
  test('openai SDK, not streaming: the client key reaches the provider, gateway headers do not', async () => {
    const client = new OpenAI({ apiKey: KEYS.openai, baseURL: `${gw.url}/openai/v1`, maxRetries: 0, defaultHeaders: { cookie: 'gw_session=1', 'x-admin-token': TOKEN } });
    const completion = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(completion.choices[0]?.message.content, 'Hello from the fake');
    const got = fake.last('/v1/chat/completions')!;
    assert.equal(got.headers.authorization, `Bearer ${KEYS.openai}`);
    assert.equal(got.headers.cookie, undefined);
    assert.equal(got.headers['x-admin-token'], undefined);
  });

  test('the admin token sent as a provider key is never passed on', async () => {
    const res = await fetch(`${gw.url}/openai/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: '{"model":"m"}',
    });
    assert.equal(res.status, 401, 'the provider saw no key');
    await res.arrayBuffer();
    assert.equal(fake.last('/v1/chat/completions')!.headers.authorization, undefined);
  });

  test('openai SDK, streaming: every chunk arrives and the stream ends with [DONE]', async () => {
    const client = new OpenAI({ apiKey: KEYS.openai, baseURL: `${gw.url}/openai/v1`, maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: unknown;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, 'Hello from the fake');
    assert.deepEqual(usage, { prompt_tokens: 11, completion_tokens: 4, total_tokens: 15 });

    const raw = await fetch(`${gw.url}/openai/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${KEYS.openai}`, 'content-type': 'application/json' }, body: '{"model":"m","stream":true}',
    });
    assert.equal(raw.headers.get('content-type'), 'text/event-stream');
    assert.equal(raw.headers.get('x-accel-buffering'), 'no');
    assert.equal(raw.headers.get('cache-control'), 'no-cache');
    assert.equal(raw.headers.get('content-length'), null);
    assert.equal(raw.headers.get('content-encoding'), null);
    assert.match(await raw.text(), /data: \[DONE\]\n\n$/);
  });

  test('upstream errors reach the client as they are', async () => {
    const client = new OpenAI({ apiKey: 'sk-wrong', baseURL: `${gw.url}/openai/v1`, maxRetries: 0 });
    await assert.rejects(client.chat.completions.create({ model: 'gpt-test', messages: [] }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.APIError);
      assert.equal(err.status, 401);
      assert.equal((err.error as { code?: string }).code, 'invalid_api_key');
      return true;
    });
  });

  test('@anthropic-ai/sdk streaming: events (with pings) pass byte for byte', async () => {
    const client = new Anthropic({ apiKey: KEYS.anthropic, baseURL: `${gw.url}/claude`, maxRetries: 0 });
    const stream = client.messages.stream({ model: 'claude-test', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
    const message = await stream.finalMessage();
    const block = message.content[0];
    assert.equal(block?.type === 'text' ? block.text : undefined, 'Hi there');
    assert.equal(message.usage.output_tokens, 7);
    const got = fake.last('/v1/messages')!;
    assert.ok(got.headers['x-api-key'] === KEYS.anthropic || got.headers.authorization === `Bearer ${KEYS.anthropic}`, 'the client key went through');
    assert.ok(got.headers['anthropic-version']);

    const raw = await fetch(`${gw.url}/claude/v1/messages`, {
      method: 'POST', headers: { 'x-api-key': KEYS.anthropic, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-test', stream: true }),
    });
    const text = await raw.text();
    assert.equal(fake.last('/v1/messages')!.headers['x-api-key'], KEYS.anthropic);
    assert.equal((text.match(/event: ping\ndata: \{"type":"ping"\}\n\n/g) ?? []).length, 2);
    assert.match(text, /^event: message_start\n/);
    assert.match(text, /event: message_stop\ndata: \{"type":"message_stop"\}\n\n$/);
  });

  test('@google/genai: generateContent and the ?alt=sse stream with \\r\\n\\r\\n delimiters', async () => {
    const ai = new GoogleGenAI({ apiKey: KEYS.gemini, httpOptions: { baseUrl: `${gw.url}/gemini` } });
    const whole = await ai.models.generateContent({ model: 'gemini-2.0-flash', contents: 'hi' });
    assert.equal(whole.text, 'Gemini says hi');
    assert.equal(fake.last(':generateContent')!.headers['x-goog-api-key'], KEYS.gemini);

    let text = '';
    for await (const chunk of await ai.models.generateContentStream({ model: 'gemini-2.0-flash', contents: 'hi' })) text += chunk.text ?? '';
    assert.equal(text, 'Gemini says hi');
    assert.match(fake.last(':streamGenerateContent')!.url, /alt=sse/);
  });
});

describe('ai-gateway preset: client aborts reach the provider', () => {
  test('an abort before the first token closes the provider connection', async () => {
    const client = new OpenAI({ apiKey: KEYS.openai, baseURL: `${gw.url}/openai/v1`, maxRetries: 0 });
    const controller = new AbortController();
    const arrived = once(fake.events, 'request');
    const closed = once(fake.events, 'closed');
    const call = client.chat.completions.create({ model: 'hold-before', messages: [], stream: true }, { signal: controller.signal });
    await arrived;
    controller.abort();
    await assert.rejects(call);
    const [record] = await closed as [{ json: { model: string } }];
    assert.equal(record.json.model, 'hold-before');
  });

  test('an abort mid-stream closes the provider connection', async () => {
    const client = new OpenAI({ apiKey: KEYS.openai, baseURL: `${gw.url}/openai/v1`, maxRetries: 0 });
    const controller = new AbortController();
    const closed = once(fake.events, 'closed');
    const stream = await client.chat.completions.create({ model: 'hold-after-1', messages: [], stream: true }, { signal: controller.signal });
    let first: string | undefined;
    for await (const chunk of stream) {
      first = chunk.choices[0]?.delta.role;
      controller.abort();
      break;
    }
    assert.equal(first, 'assistant', 'the first event arrived while the provider held the stream open');
    const [record] = await closed as [{ json: { model: string } }];
    assert.equal(record.json.model, 'hold-after-1');
  });

  test('an Anthropic stream aborted mid-way closes the provider connection', async () => {
    const client = new Anthropic({ apiKey: KEYS.anthropic, baseURL: `${gw.url}/claude`, maxRetries: 0 });
    const closed = once(fake.events, 'closed');
    const stream = client.messages.stream({ model: 'hold-after-1', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
    await new Promise<void>((resolve) => stream.on('streamEvent', () => resolve()));
    stream.abort();
    await assert.rejects(stream.done());
    await closed;
  });
});

describe('ai-gateway preset: Gemini NoThink', () => {
  const native = (prefix: string, model: string, body: unknown, headers: Record<string, string> = {}) => fetch(`${gw.url}${prefix}/v1beta/models/${model}:generateContent`, {
    method: 'POST', headers: { 'x-goog-api-key': KEYS.gemini, 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body),
  });

  test('/gnothink always turns thinking off, per model', async () => {
    const ai = new GoogleGenAI({ apiKey: KEYS.gemini, httpOptions: { baseUrl: `${gw.url}/gnothink` } });
    await ai.models.generateContent({ model: 'gemini-2.5-flash', contents: 'hi', config: { temperature: 0.5 } });
    const sent = fake.last('gemini-2.5-flash:generateContent')!.json as { generationConfig: Record<string, unknown> };
    assert.deepEqual(sent.generationConfig, { temperature: 0.5, thinkingConfig: { thinkingBudget: 0 } });

    for await (const chunk of await ai.models.generateContentStream({ model: 'gemini-3-flash-preview', contents: 'hi' })) void chunk;
    const streamed = fake.last('gemini-3-flash-preview:streamGenerateContent')!.json as { generationConfig: Record<string, unknown> };
    assert.deepEqual(streamed.generationConfig, { thinkingConfig: { thinkingLevel: 'minimal' } });

    await (await native('/gnothink', 'gemini-2.5-pro', { contents: [] })).arrayBuffer();
    assert.equal(fake.last('gemini-2.5-pro:generateContent')!.body, '{"contents":[]}', 'Pro cannot stop thinking: left alone');
  });

  test('a thinking setting the client chose is kept; other keys stay', async () => {
    const own = { contents: [], generationConfig: { thinkingConfig: { thinkingBudget: -1, includeThoughts: true } } };
    await (await native('/gnothink', 'gemini-2.5-flash', own)).arrayBuffer();
    assert.equal(fake.last('gemini-2.5-flash:generateContent')!.body, JSON.stringify(own));
    await (await native('/gnothink', 'gemini-2.5-flash', { generationConfig: { thinkingConfig: { includeThoughts: true } } })).arrayBuffer();
    assert.deepEqual((fake.last('gemini-2.5-flash:generateContent')!.json as Record<string, unknown>).generationConfig, { thinkingConfig: { includeThoughts: true, thinkingBudget: 0 } });
  });

  test('on /gemini NoThink is off unless the request header asks for it', async () => {
    const body = JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] });
    await (await native('/gemini', 'gemini-2.5-flash', body)).arrayBuffer();
    assert.equal(fake.last('gemini-2.5-flash:generateContent')!.body, body);
    await (await native('/gemini', 'gemini-2.5-flash', body, { 'x-gemini-nothink': 'on' })).arrayBuffer();
    const got = fake.last('gemini-2.5-flash:generateContent')!;
    assert.deepEqual((got.json as Record<string, unknown>).generationConfig, { thinkingConfig: { thinkingBudget: 0 } });
    assert.equal(got.headers['x-gemini-nothink'], undefined, 'the switch is not sent upstream');
    assert.equal(got.headers['content-length'], String(Buffer.byteLength(got.body)));
  });

  test('OpenAI-compatible endpoint: reasoning_effort "none" for 2.5 Flash unless the client set thinking', async () => {
    const client = new OpenAI({ apiKey: KEYS.gemini, baseURL: `${gw.url}/gnothink/v1beta/openai`, maxRetries: 0 });
    await client.chat.completions.create({ model: 'gemini-2.5-flash', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal((fake.last('/openai/chat/completions')!.json as Record<string, unknown>).reasoning_effort, 'none');
    await client.chat.completions.create({ model: 'gemini-2.5-flash', messages: [], reasoning_effort: 'low' });
    assert.equal((fake.last('/openai/chat/completions')!.json as Record<string, unknown>).reasoning_effort, 'low');
    await client.chat.completions.create({ model: 'gemini-2.5-flash', messages: [], extra_body: { google: { thinking_config: { thinking_budget: 100 } } } } as never);
    assert.equal((fake.last('/openai/chat/completions')!.json as Record<string, unknown>).reasoning_effort, undefined);
    await client.chat.completions.create({ model: 'gemini-2.5-pro', messages: [] });
    assert.equal((fake.last('/openai/chat/completions')!.json as Record<string, unknown>).reasoning_effort, undefined);

    const off = new OpenAI({ apiKey: KEYS.gemini, baseURL: `${gw.url}/gemini/v1beta/openai`, maxRetries: 0 });
    await off.chat.completions.create({ model: 'gemini-2.5-flash', messages: [] });
    assert.equal((fake.last('/openai/chat/completions')!.json as Record<string, unknown>).reasoning_effort, undefined);
  });

  test('a malformed body passes byte for byte and is logged, never a 500', async () => {
    const res = await native('/gnothink', 'gemini-2.5-flash', '{"contents": [');
    assert.equal(res.status, 200, 'the fake answers; the gateway did not fail');
    await res.arrayBuffer();
    assert.equal(fake.last('gemini-2.5-flash:generateContent')!.body, '{"contents": [');
    assert.ok(gw.logs.some((line) => line.plugin === 'gemini-nothink' && /not valid JSON/.test(String(line.msg))));
  });
});

describe('ai-gateway preset: usage statistics and the dashboard', () => {
  test('/stats counts calls, status classes and tokens per mapping and endpoint', async () => {
    const client = new OpenAI({ apiKey: KEYS.openai, baseURL: `${gw.url}/deepseek/v1`, maxRetries: 0 });
    await client.chat.completions.create({ model: 'x', messages: [] });
    const stream = await client.chat.completions.create({ model: 'x', messages: [], stream: true, stream_options: { include_usage: true } });
    for await (const chunk of stream) void chunk;
    await assert.rejects(new OpenAI({ apiKey: 'bad', baseURL: `${gw.url}/deepseek/v1`, maxRetries: 0 }).chat.completions.create({ model: 'x', messages: [] }));

    const anthropic = new Anthropic({ apiKey: KEYS.anthropic, baseURL: `${gw.url}/mistral`, maxRetries: 0 });
    await anthropic.messages.stream({ model: 'c', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }).finalMessage();
    const ai = new GoogleGenAI({ apiKey: KEYS.gemini, httpOptions: { baseUrl: `${gw.url}/xai` } });
    for await (const chunk of await ai.models.generateContentStream({ model: 'gemini-2.0-flash', contents: 'hi' })) void chunk;

    // done runs when the response closed; poll /stats briefly until the last call shows.
    let stats: { windows: Record<string, { mappings: Record<string, { calls: number; s2xx: number; s4xx: number; inputTokens: number; outputTokens: number; endpoints: Record<string, { calls: number }> }> }> } | undefined;
    for (let i = 0; i < 50; i++) {
      stats = await (await fetch(`${gw.url}/stats`)).json() as typeof stats;
      if (stats!.windows['24h']!.mappings.xai?.calls === 1) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    for (const window of ['24h', '7d', '30d', 'total']) {
      const deepseek = stats!.windows[window]!.mappings.deepseek!;
      assert.equal(deepseek.calls, 3, window);
      assert.equal(deepseek.s2xx, 2);
      assert.equal(deepseek.s4xx, 1);
      assert.equal(deepseek.inputTokens, 22);
      assert.equal(deepseek.outputTokens, 8);
      assert.equal(deepseek.endpoints['/v1/chat/completions']!.calls, 3);
    }
    const mistral = stats!.windows.total!.mappings.mistral!;
    assert.deepEqual([mistral.inputTokens, mistral.outputTokens], [21, 7], 'Anthropic: message_start input, message_delta output');
    const xai = stats!.windows.total!.mappings.xai!;
    assert.deepEqual([xai.inputTokens, xai.outputTokens], [5, 3], 'Gemini: the last event\'s usageMetadata');
  });

  test('the dashboard is served at / and /index.html, and lists mapping addresses publicly', async () => {
    for (const path of ['/', '/index.html']) {
      const res = await fetch(`${gw.url}${path}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type')!, /text\/html/);
      assert.match(await res.text(), /\/stats/);
    }
    const list = await (await fetch(`${gw.url}/api/mappings/public`)).json() as { mappings: { prefix: string }[] };
    assert.ok(list.mappings.some((m) => m.prefix === '/openai'));
    const admin = await fetch(`${gw.url}/admin`);
    assert.equal(admin.status, 200);
    assert.match(await admin.text(), /admin\/admin\.js/);
  });
});
