// The access log line, one per request, in exactly the form pino writes it, but written field by
// field from a fixed record instead of by pino's generic walk over an object (which escapes every
// key and value character by character) or by JSON.stringify (which looks every key up again).
// For the tmdb preset the line cost about 8 % of a proxied request's instructions through pino,
// and still 5 % through JSON.stringify (bench/callgrind).
//
// The parts pino owns stay pino's: the level and time prefix, the logger's bindings, the line end
// and the stream, read through `pino.symbols` (its documented integration hook). A logger that
// could change a line in a way this path would skip (a mixin, a log formatter, hooks, a serializer
// or redaction on one of the line's keys, a nested key, a stream that wants metadata) gets the
// line through its ordinary `logger.info()`.
import { tracingChannel } from 'node:diagnostics_channel';
import pino, { type Logger } from 'pino';

export type AccessLevel = 'info' | 'warn';

/** One request's access log line (core/request.ts logRequest), in the order it is written. */
export interface AccessLine {
  requestId: string;
  /** The trace the request is part of, when a tracing plugin set ctx.traceId. */
  traceId?: string;
  method: string | undefined;
  /** Redacted (redactString) before it gets here. */
  path: string;
  route: string | undefined;
  upstream: string | undefined;
  status: number;
  ms: number;
  bytes: number;
  attempts: number;
  code: string | undefined;
  /** Who asked (ctx.consumer's name, else its id), when an auth plugin established it. */
  consumer?: string;
  /** ctx.clientIp: the peer, or the real IP a trusted proxy gave. */
  clientIp?: string;
  /** The client's User-Agent, cut to 200 characters (core/flow.ts) and redacted. */
  userAgent?: string;
}

// Every key of AccessLine, checked by the compiler: a field added to the line but not here would
// escape the check for a serializer or redaction on it.
const LINE_KEYS: Record<keyof AccessLine, true> = {
  requestId: true, traceId: true, method: true, path: true, route: true, upstream: true, status: true, ms: true, bytes: true, attempts: true, code: true, consumer: true, clientIp: true, userAgent: true,
};

/** The keys of AccessLine; plugins' logField() keys come on top. */
export const ACCESS_LINE_KEYS: readonly string[] = Object.keys(LINE_KEYS);

type WriteLine = (level: AccessLevel, line: AccessLine, extra: Readonly<Record<string, unknown>> | undefined, msg: string) => void;

/** Writes one access log line: `line`'s fields, then `extra`'s (plugins' logField()), then `msg`. */
export interface AccessLogWriter extends WriteLine {
  /** `own`: lines are made here; `pino`: this logger needs pino's own path for them. */
  readonly serializer: 'own' | 'pino';
}

const {
  chindingsSym, endSym, formattersSym, hooksSym, lsCacheSym, messageKeySym, mixinSym,
  needsMetadataGsym, nestedKeySym, serializersSym, streamSym, stringifiersSym, timeSym, wildcardFirstSym,
} = pino.symbols;
// Exported by pino since 8.x; its type declarations do not list it yet.
const { msgPrefixSym } = pino.symbols as unknown as { msgPrefixSym: symbol };

/** pino traces its serialisation on this channel; a subscriber must still see every line. */
const asJsonTrace = tracingChannel('pino_asJson');

interface PinoInternals {
  [key: symbol]: unknown;
}

export function accessLogWriter(logger: Logger): AccessLogWriter {
  const ordinary: WriteLine = (level, line, extra, msg) => logger[level](extra === undefined ? line : { ...line, ...extra }, msg);
  const internals = logger as unknown as PinoInternals;
  const handled = keyHandlers(internals);
  const values = logger.levels.values;
  // Custom levels only (useOnlyCustomLevels): pino knows what to do with `info`, this path would not.
  const knowsLevels = values.info !== undefined && values.warn !== undefined;
  if (!knowsLevels || !isPlain(internals) || ACCESS_LINE_KEYS.some(handled)) return Object.assign(ordinary, { serializer: 'pino' as const });
  const levelPrefix = internals[lsCacheSym] as Record<number, string>;
  const time = internals[timeSym] as () => string;
  const stream = internals[streamSym] as { write(line: string): unknown };
  const end = internals[endSym] as string;
  // pino writes nested objects with safe-stable-stringify (circular references, depth limits) and
  // replaces a field of the line by a later one of the same name; an extra field that would need
  // either takes pino's path.
  const extraIsPlain = (extra: Readonly<Record<string, unknown>>): boolean => {
    for (const key in extra) {
      const value = extra[key];
      if (handled(key) || ACCESS_LINE_KEYS.includes(key) || (typeof value === 'object' && value !== null) || typeof value === 'bigint') return false;
    }
    return true;
  };
  const own: WriteLine = (level, line, extra, msg) => {
    if (asJsonTrace.hasSubscribers || (extra !== undefined && !extraIsPlain(extra))) return ordinary(level, line, extra, msg);
    // Bindings are read per line: a child logger's may change with setBindings().
    const head = levelPrefix[values[level]!]! + time() + (internals[chindingsSym] as string);
    const more = extra === undefined ? '' : JSON.stringify(extra).slice(1, -1);
    stream.write(`${head},${lineFields(line)}${more === '' ? '' : `,${more}`},"msg":${jsonString(msg)}${end}`);
  };
  return Object.assign(own, { serializer: 'own' as const });
}

function isPlain(internals: PinoInternals): boolean {
  const formatters = internals[formattersSym] as { log?: unknown } | undefined;
  const hooks = internals[hooksSym] as { logMethod?: unknown; streamWrite?: unknown } | undefined;
  const stream = internals[streamSym] as Record<symbol, unknown> | undefined;
  return internals[mixinSym] === undefined
    && formatters?.log === undefined
    && hooks?.logMethod === undefined && hooks?.streamWrite === undefined
    && !internals[nestedKeySym]
    && internals[messageKeySym] === 'msg'
    && internals[msgPrefixSym] === undefined
    && typeof internals[lsCacheSym] === 'object' && typeof internals[timeSym] === 'function'
    && typeof internals[chindingsSym] === 'string' && typeof internals[endSym] === 'string'
    && stream !== undefined && stream[needsMetadataGsym] !== true;
}

/** Whether pino would run a key's value through a serializer or a redaction stringifier. */
function keyHandlers(internals: PinoInternals): (key: string) => boolean {
  const serializers = (internals[serializersSym] ?? {}) as Record<string, unknown>;
  const stringifiers = (internals[stringifiersSym] ?? {}) as Record<string | symbol, unknown>;
  // A redaction path starting with `*` applies to every key.
  const wildcard = stringifiers[wildcardFirstSym] !== undefined;
  return (key) => wildcard || serializers[key] !== undefined || stringifiers[key] !== undefined;
}

/** The line's fields as JSON members, undefined ones left out (as JSON.stringify and pino do). */
function lineFields(line: AccessLine): string {
  // Neither needs escaping: a request id is one the core made or one that matched its pattern
  // (core/request-id.ts REQUEST_ID), and Node's parser takes no method but the known tokens.
  let out = `"requestId":"${line.requestId}"`;
  if (line.traceId !== undefined) out += `,"traceId":${jsonString(line.traceId)}`;
  if (line.method !== undefined) out += `,"method":"${line.method}"`;
  out += `,"path":${jsonString(line.path)}`;
  if (line.route !== undefined) out += `,"route":${jsonString(line.route)}`;
  if (line.upstream !== undefined) out += `,"upstream":${jsonString(line.upstream)}`;
  out += `,"status":${jsonNumber(line.status)},"ms":${jsonNumber(line.ms)},"bytes":${jsonNumber(line.bytes)},"attempts":${jsonNumber(line.attempts)}`;
  if (line.code !== undefined) out += `,"code":${jsonString(line.code)}`;
  if (line.consumer !== undefined) out += `,"consumer":${jsonString(line.consumer)}`;
  if (line.clientIp !== undefined) out += `,"clientIp":${jsonString(line.clientIp)}`;
  if (line.userAgent !== undefined) out += `,"userAgent":${jsonString(line.userAgent)}`;
  return out;
}

/** What JSON must escape, and surrogates (JSON.stringify escapes a lone one). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** As JSON.stringify(value): nearly every path, name and code has nothing to escape. */
function jsonString(value: string): string {
  return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`;
}

/** As JSON.stringify(value): a number's shortest form, null when not finite. */
function jsonNumber(value: number): string {
  return Number.isFinite(value) ? `${value}` : 'null';
}
