// A cached response and how it is written to and read back from the persistent store. Whatever
// comes back from the store is checked field by field: a damaged entry is a miss, never an answer.
import type { OutgoingHttpHeaders } from 'node:http';
import { PreparedHead } from '../../core/index.js';
import { hashKey } from './cache-key.js';

export interface CachedEntry {
  /** Storage id (hash of the key). */
  readonly id: string;
  /** Readable key, for admin output. */
  readonly key: string;
  readonly route: string;
  /** What the id is made of beside route and readable key (host, keyed headers, variant values), kept so the id can be checked. */
  readonly vary: string;
  /** Request headers the response varies on beyond the key (variants.ts), lower case and sorted. */
  readonly varyNames: readonly string[];
  /** The storing request's values of `varyNames`: a request with other values is another variant. */
  readonly varyValues: string;
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly body: Buffer;
  /** Epoch ms when the response was stored. */
  readonly storedAt: number;
  /**
   * Seconds the entry stays fresh after `storedAt`: a configured TTL, or the upstream's freshness
   * lifetime less the age the response arrived with (RFC 9111 §4.2.3).
   */
  readonly ttl: number;
  /** The age the response arrived with (seconds), added to the time spent here for the Age header. */
  readonly initialAge: number;
  /** Epoch ms after which the entry is of no use even stale; the sweep removes it then. */
  readonly keepUntil: number;
  /**
   * `headers`, checked and serialised once for every hit to replay, the stored Date included: a
   * hit carries the origin's Date, not the time of the answer (RFC 9111 §4; Age says how old it is).
   */
  readonly head: PreparedHead;
  /** The stored Date as headers of their own, for the answers written without the prepared head (304, 416). */
  readonly dated: Readonly<OutgoingHttpHeaders> | undefined;
  /** The last answer's head with its Age and X-Cache (respond.ts): the next reuses it while they stay the same. */
  lastAnswer: { age: number; xCache: string; head: PreparedHead } | undefined;
  /** Answers served from this entry since it entered memory (the console's top keys by hits). */
  hits: number;
}

/** What an entry is made of; the rest is derived from it. */
export type EntryFields = Omit<CachedEntry, 'head' | 'dated' | 'lastAnswer' | 'hits'>;

/**
 * An entry with its prepared head; undefined when a header could not be written (a name or value
 * Node would refuse): such a response is not one to keep, or to serve from a damaged store.
 */
export function newEntry(f: EntryFields): CachedEntry | undefined {
  let head: PreparedHead;
  try {
    head = PreparedHead.of(f.headers, true);
  } catch {
    return undefined;
  }
  return {
    id: f.id, key: f.key, route: f.route, vary: f.vary, varyNames: f.varyNames, varyValues: f.varyValues, status: f.status, headers: f.headers, body: f.body,
    storedAt: f.storedAt, ttl: f.ttl, initialAge: f.initialAge, keepUntil: f.keepUntil, head,
    dated: typeof f.headers.date === 'string' ? Object.freeze({ date: f.headers.date }) : undefined, lastAnswer: undefined,
    hits: 0,
  };
}

/** Headers that describe one connection or one exchange, never a stored response. */
const NOT_STORED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'content-length', 'set-cookie', 'age', 'x-cache', 'x-request-id',
]);

/** The response headers worth replaying from the cache. */
export function storableHeaders(headers: OutgoingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const named = headers.connection === undefined ? [] : String(headers.connection).split(',').map((t) => t.trim().toLowerCase());
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (value === undefined || NOT_STORED.has(lower) || named.includes(lower)) continue;
    out[lower] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return out;
}

export function freshUntil(entry: CachedEntry): number {
  return entry.storedAt + entry.ttl * 1000;
}

/** The Age header value: what the upstream said plus the time spent in this cache (seconds). */
export function ageOf(entry: CachedEntry, now: number): number {
  return entry.initialAge + Math.max(0, Math.floor((now - entry.storedAt) / 1000));
}

export function entrySize(entry: Pick<CachedEntry, 'body' | 'headers' | 'key' | 'head'>): number {
  // The prepared head holds the headers a second time, as lines.
  let size = entry.body.length + entry.key.length + entry.head.lines.length;
  for (const [name, value] of Object.entries(entry.headers)) size += name.length + String(value).length + 4;
  return size;
}

// 2: entries carry the Vary names and values of their variant.
const FORMAT = 2;

/** What the persistent tier stores: plain JSON, the body as base64. */
export interface StoredEntry {
  v: number;
  id: string;
  key: string;
  route: string;
  vary: string;
  varyNames: string[];
  varyValues: string;
  status: number;
  headers: Record<string, string | string[]>;
  body: string;
  bodyBytes: number;
  storedAt: number;
  ttl: number;
  initialAge: number;
  keepUntil: number;
}

export function encodeEntry(entry: CachedEntry): StoredEntry {
  return {
    v: FORMAT, id: entry.id, key: entry.key, route: entry.route, vary: entry.vary,
    varyNames: [...entry.varyNames], varyValues: entry.varyValues, status: entry.status,
    headers: { ...entry.headers }, body: entry.body.toString('base64'), bodyBytes: entry.body.length,
    storedAt: entry.storedAt, ttl: entry.ttl, initialAge: entry.initialAge, keepUntil: entry.keepUntil,
  };
}

/** The entry, or undefined when what the store returned is not a whole, consistent entry for `id`. */
export function decodeEntry(id: string, raw: unknown): CachedEntry | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const s = raw as Partial<StoredEntry>;
  if (s.v !== FORMAT || s.id !== id || typeof s.key !== 'string' || typeof s.route !== 'string' || typeof s.vary !== 'string') return undefined;
  if (!Array.isArray(s.varyNames) || !s.varyNames.every((n) => typeof n === 'string') || typeof s.varyValues !== 'string') return undefined;
  if (!Number.isInteger(s.status) || s.status! < 100 || s.status! > 599) return undefined;
  if (!isNumber(s.storedAt) || !isNumber(s.ttl) || !isNumber(s.initialAge) || !isNumber(s.keepUntil) || !isNumber(s.bodyBytes)) return undefined;
  if (typeof s.body !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s.body)) return undefined;
  if (!isHeaders(s.headers)) return undefined;
  // The id is a hash of the key: an entry under someone else's id is not ours to serve.
  if (hashKey(s.route, s.key, s.vary) !== id) return undefined;
  const body = Buffer.from(s.body, 'base64');
  if (body.length !== s.bodyBytes) return undefined;
  return newEntry({
    id, key: s.key, route: s.route, vary: s.vary, varyNames: s.varyNames, varyValues: s.varyValues, status: s.status!, headers: s.headers, body,
    storedAt: s.storedAt!, ttl: s.ttl!, initialAge: s.initialAge!, keepUntil: s.keepUntil!,
  });
}

function isNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function isHeaders(value: unknown): value is Record<string, string | string[]> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  return Object.values(value).every((v) => typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string')));
}
