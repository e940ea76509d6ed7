// Reads token usage out of provider responses as they stream past, without holding them up: a
// pass-through transform hands every chunk on first and only then looks at a copy.
// OpenAI `usage`, Anthropic `usage` (message_start / message_delta events), Gemini `usageMetadata`;
// streamed (SSE) or whole JSON, compressed or not.
import { Transform } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import zlib from 'node:zlib';

export interface TokenUsage {
  input?: number;
  output?: number;
  /** The model that answered, as the response names it (`model`, Gemini's `modelVersion`). */
  model?: string;
}

/** Reads one provider usage object; fields it does not have stay undefined. */
export function readUsage(usage: unknown): TokenUsage {
  if (typeof usage !== 'object' || usage === null) return {};
  const u = usage as Record<string, unknown>;
  const num = (key: string) => (typeof u[key] === 'number' ? (u[key] as number) : undefined);
  const sum = (...values: (number | undefined)[]) => (values.every((v) => v === undefined) ? undefined : values.reduce<number>((a, v) => a + (v ?? 0), 0));
  // Gemini: thoughts are billed as output.
  if (u.promptTokenCount !== undefined || u.candidatesTokenCount !== undefined) {
    return { input: num('promptTokenCount'), output: sum(num('candidatesTokenCount'), num('thoughtsTokenCount')) };
  }
  // OpenAI chat completions.
  if (u.prompt_tokens !== undefined || u.completion_tokens !== undefined) {
    return { input: num('prompt_tokens'), output: num('completion_tokens') };
  }
  // Anthropic (cache reads and writes are input too) and OpenAI's Responses API.
  return {
    input: sum(num('input_tokens'), num('cache_creation_input_tokens'), num('cache_read_input_tokens')),
    output: num('output_tokens'),
  };
}

/** The usage object an event or body carries, if any. */
function usageOf(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (v.usageMetadata !== undefined) return v.usageMetadata; // Gemini
  if (v.usage !== undefined && v.usage !== null) return v.usage; // OpenAI, Anthropic message_delta / whole message
  const nested = (v.message ?? v.response) as Record<string, unknown> | undefined; // Anthropic message_start, OpenAI response.completed
  return nested && typeof nested === 'object' ? nested.usage ?? undefined : undefined;
}

/** Every provider reports cumulative numbers, so the latest value of each field wins. */
function merge(into: TokenUsage, next: TokenUsage): void {
  if (next.input !== undefined) into.input = next.input;
  if (next.output !== undefined) into.output = next.output;
}

/** The answering model an event or body names: top level (OpenAI, Gemini) or in Anthropic's message_start. */
function modelOf(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const model = v.model ?? v.modelVersion ?? (v.message as Record<string, unknown> | undefined)?.model;
  return typeof model === 'string' ? model : undefined;
}

/** A whole JSON body's model, found by its key: the body may be too long to keep and parse whole. */
const MODEL_KEY = /"(?:model|modelVersion)"\s*:\s*"([^"\\]{1,200})"/;

/** How much of a whole (non-SSE) JSON body's end is kept: every provider puts usage last. */
const TAIL_BYTES = 64 * 1024;
/** How much of its start is kept, for the model's name. */
const HEAD_BYTES = 1024;

/**
 * A pass-through transform that reports token usage once, when the body ended or was cut off.
 * `encoding` is the response's Content-Encoding; the copy is decompressed on the side.
 */
export function usageTee(kind: 'sse' | 'json', encoding: string | undefined, report: (usage: TokenUsage) => void, onFirstChunk?: () => void): Transform {
  const usage: TokenUsage = {};
  let reported = false;
  let flushed = false;
  let head = '';
  const finish = () => {
    if (reported) return;
    reported = true;
    if (kind === 'json') {
      merge(usage, readUsage(usageOf(lastObjectAfterKey(tail))));
      const model = MODEL_KEY.exec(head)?.[1] ?? MODEL_KEY.exec(tail)?.[1];
      if (model !== undefined) usage.model = model;
    }
    report(usage);
  };

  const decoder = new StringDecoder('utf8');
  let partial = '';
  let tail = '';
  const sniff = (text: string) => {
    if (kind === 'json') {
      // OpenAI and Anthropic name the model near the start, Gemini near the end.
      if (head.length < HEAD_BYTES) head += text.slice(0, HEAD_BYTES - head.length);
      tail = (tail + text).slice(-TAIL_BYTES);
      return;
    }
    // SSE: lines end with \n, \r\n or \r (Gemini uses \r\n); a \r at a chunk's end may be half of \r\n.
    partial += text;
    const lines = partial.split(/\r\n|\n|\r(?!$)/);
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('data:')) continue;
      const wanted = line.includes('sage');
      // Every OpenAI chunk names the model: one is parsed for it, then only usage lines.
      if (!wanted && (usage.model !== undefined || !line.includes('"model'))) continue;
      try {
        const event: unknown = JSON.parse(line.slice(5));
        if (usage.model === undefined) {
          const model = modelOf(event);
          if (model !== undefined) usage.model = model;
        }
        if (wanted) merge(usage, readUsage(usageOf(event)));
      } catch {
        // not JSON ([DONE], or an event split over several data lines): nothing to count
      }
    }
    if (partial.length > TAIL_BYTES) partial = '';
  };

  const inflater = decompressorFor(encoding);
  inflater?.on('data', (chunk: Buffer) => sniff(decoder.write(chunk)));
  inflater?.on('error', finish);
  inflater?.on('end', finish);

  let first = onFirstChunk;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      this.push(chunk);
      if (first !== undefined) {
        first();
        first = undefined;
      }
      try {
        if (inflater) inflater.write(chunk);
        else sniff(decoder.write(chunk));
      } catch {
        // the copy is ours to lose, never the client's bytes
      }
      callback();
    },
    flush(callback) {
      flushed = true;
      if (inflater) inflater.end(); // its 'end' reports, once the last bytes are inflated
      else {
        sniff(decoder.end() + '\n');
        finish();
      }
      callback();
    },
    destroy(err, callback) {
      // Cut off (client abort, upstream gone): count what was seen.
      if (!flushed) {
        inflater?.destroy();
        finish();
      }
      callback(err);
    },
  });
}

function decompressorFor(encoding: string | undefined): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined {
  switch (encoding?.trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      return undefined;
  }
}

/**
 * The JSON object after the last `"usage":` or `"usageMetadata":` in `text`, parsed; undefined
 * when there is none or it is cut. Scans strings properly so braces inside them do not count.
 */
export function lastObjectAfterKey(text: string): unknown {
  const match = /"(usage|usageMetadata)"\s*:\s*\{/g;
  let start = -1;
  let key = '';
  for (let m = match.exec(text); m; m = match.exec(text)) {
    start = m.index + m[0].length - 1;
    key = m[1]!;
  }
  if (start === -1) return undefined;
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) {
      try {
        return { [key]: JSON.parse(text.slice(start, i + 1)) };
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}
