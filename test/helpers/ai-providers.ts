// A fake AI provider on 127.0.0.1 that speaks OpenAI (chat completions, plain and SSE ending in
// `data: [DONE]`), Anthropic (messages, SSE with `ping` events) and Gemini (generateContent,
// streamGenerateContent?alt=sse with \r\n\r\n delimiters, and the OpenAI-compatible endpoint).
// It checks the client's key, records what it received, and can hold a stream open so a test can
// abort it and watch the connection close.
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { startUpstream, type RunningUpstream } from './servers.js';

export const KEYS = { openai: 'sk-test-openai', anthropic: 'sk-ant-test', gemini: 'g-test-key' } as const;

export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The body parsed as JSON, when it is. */
  json: unknown;
}

export interface FakeProvider extends RunningUpstream {
  readonly received: Received[];
  /** Emits `request` (Received) and `closed` (Received) when a held stream's connection closes early. */
  readonly events: EventEmitter;
  last(pathPart: string): Received | undefined;
}

/**
 * A model name decides the behaviour: `hold-before` answers nothing until the client goes away;
 * `hold-after-1` sends one event (or chunk) and then holds the stream open.
 */
export async function startFakeProvider(): Promise<FakeProvider> {
  const received: Received[] = [];
  const events = new EventEmitter();
  const upstream = await startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      const record: Received = { method: req.method!, url: req.url!, headers: req.headers, body, json };
      received.push(record);
      events.emit('request', record);
      res.on('close', () => {
        if (!res.writableFinished) events.emit('closed', record);
      });
      route(req, res, record);
    });
  });
  return {
    ...upstream,
    received,
    events,
    last: (pathPart) => [...received].reverse().find((r) => r.url.includes(pathPart)),
  };
}

function route(req: IncomingMessage, res: ServerResponse, r: Received): void {
  const url = new URL(r.url, 'http://x');
  const body = (r.json ?? {}) as Record<string, unknown>;
  if (url.pathname === '/v1/chat/completions') return openai(req, res, body, KEYS.openai);
  if (url.pathname === '/v1/messages') return anthropic(req, res, body);
  if (url.pathname === '/v1beta/openai/chat/completions') return openai(req, res, body, KEYS.gemini);
  const gemini = /^\/v1beta\/models\/([^:]+):(generateContent|streamGenerateContent)$/.exec(url.pathname);
  if (gemini) return geminiNative(req, res, gemini[1]!, gemini[2] === 'streamGenerateContent', url.searchParams.get('alt') === 'sse');
  json(res, 404, { error: { message: `fake provider: no ${r.method} ${url.pathname}` } });
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sse(res: ServerResponse, events: string[], hold: 'hold-before' | 'hold-after-1' | undefined): void {
  if (hold === 'hold-before') return; // nothing at all until the client leaves
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  if (hold === 'hold-after-1') {
    res.write(events[0]);
    return; // held open: the test aborts
  }
  for (const event of events) res.write(event);
  res.end();
}

function holdOf(model: unknown): 'hold-before' | 'hold-after-1' | undefined {
  return model === 'hold-before' || model === 'hold-after-1' ? model : undefined;
}

function openai(req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>, key: string): void {
  if (req.headers.authorization !== `Bearer ${key}`) {
    return json(res, 401, { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } });
  }
  const model = String(body.model ?? 'gpt-test');
  const words = ['Hello', ' from', ' the', ' fake'];
  const usage = { prompt_tokens: 11, completion_tokens: words.length, total_tokens: 11 + words.length };
  if (body.stream !== true) {
    return json(res, 200, {
      id: 'chatcmpl-1', object: 'chat.completion', created: 1, model,
      choices: [{ index: 0, message: { role: 'assistant', content: words.join('') }, finish_reason: 'stop' }], usage,
    });
  }
  const chunk = (delta: object, finish: string | null, extra: object = {}) =>
    `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;
  const events = [
    chunk({ role: 'assistant', content: '' }, null),
    ...words.map((w) => chunk({ content: w }, null)),
    chunk({}, 'stop'),
    `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model, choices: [], usage })}\n\n`,
    'data: [DONE]\n\n',
  ];
  sse(res, events, holdOf(body.model));
}

function anthropic(req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>): void {
  // Anthropic takes its key as x-api-key; newer SDKs send it as a Bearer token.
  if (req.headers['x-api-key'] !== KEYS.anthropic && req.headers.authorization !== `Bearer ${KEYS.anthropic}`) {
    return json(res, 401, { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
  }
  if (!req.headers['anthropic-version']) {
    return json(res, 400, { type: 'error', error: { type: 'invalid_request_error', message: 'anthropic-version header is required' } });
  }
  const model = String(body.model ?? 'claude-test');
  const words = ['Hi', ' there'];
  if (body.stream !== true) {
    return json(res, 200, {
      id: 'msg_1', type: 'message', role: 'assistant', model, content: [{ type: 'text', text: words.join('') }],
      stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 21, output_tokens: 2 },
    });
  }
  const event = (name: string, data: object) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
  const events = [
    event('message_start', { message: { id: 'msg_1', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 21, output_tokens: 1 } } }),
    event('ping', {}),
    event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
    ...words.map((w) => event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } })),
    event('ping', {}),
    event('content_block_stop', { index: 0 }),
    event('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 7 } }),
    event('message_stop', {}),
  ];
  sse(res, events, holdOf(body.model));
}

function geminiNative(req: IncomingMessage, res: ServerResponse, model: string, stream: boolean, alt: boolean): void {
  if (req.headers['x-goog-api-key'] !== KEYS.gemini) {
    return json(res, 400, { error: { code: 400, message: 'API key not valid. Please pass a valid API key.', status: 'INVALID_ARGUMENT' } });
  }
  const candidate = (text: string, finish?: string) => ({ content: { role: 'model', parts: [{ text }] }, index: 0, ...(finish ? { finishReason: finish } : {}) });
  if (!stream) {
    return json(res, 200, {
      candidates: [candidate('Gemini says hi', 'STOP')],
      usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 4, totalTokenCount: 9 },
      modelVersion: model,
    });
  }
  if (!alt) return json(res, 400, { error: { code: 400, message: 'fake provider only streams with alt=sse' } });
  const parts = ['Gemini', ' says', ' hi'];
  const events = parts.map((text, i) => `data: ${JSON.stringify({
    candidates: [candidate(text, i === parts.length - 1 ? 'STOP' : undefined)],
    usageMetadata: { promptTokenCount: 5, candidatesTokenCount: i + 1, totalTokenCount: 6 + i },
    modelVersion: model,
  })}\r\n\r\n`);
  sse(res, events, holdOf(model));
}
