// What may be cached and for how long: the request side (method, bypass switches, client
// Cache-Control), the response side (status, content type, Cache-Control, Set-Cookie, Vary, size)
// and conditional requests a cached entry can answer with 304.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { acceptsCoding, canonicalCoding } from '../../core/index.js';
import type { CachedEntry } from './entry.js';
import { headerDate, parseHttpDate } from './http-date.js';
import type { CacheOptions } from './index.js';

export type CacheControl = Map<string, string | true>;

export function parseCacheControl(value: string | string[] | number | undefined): CacheControl {
  const out: CacheControl = new Map();
  if (value === undefined) return out;
  for (const part of directives(String(value))) {
    const eq = part.indexOf('=');
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (name) out.set(name, eq === -1 ? true : part.slice(eq + 1).trim().replace(/^"|"$/g, ''));
  }
  return out;
}

/** The comma-separated directives of a field value; a comma inside a quoted string (`no-cache="a, b"`) is no separator. */
function directives(value: string): string[] {
  if (!value.includes('"')) return value.split(',');
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '"') quoted = !quoted;
    else if (value[i] === ',' && !quoted) {
      parts.push(value.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(value.slice(start));
  return parts;
}

/**
 * The fields a qualified `no-cache="a, b"` names (RFC 9111 §5.2.2.4): the response may be stored
 * and reused without them. Undefined for a plain no-cache, or none.
 */
export function noCacheFields(cc: CacheControl): string[] | undefined {
  const value = cc.get('no-cache');
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  return value.split(',').map((name) => name.trim().toLowerCase()).filter(Boolean);
}

/** How the cache treats one request. */
export interface RequestPolicy {
  /** Why the cache stays out of it entirely (X-Cache: BYPASS), if it does. */
  bypass?: string;
  /** Look the key up (false: the client asked for a fresh answer, which is still stored). */
  lookup: boolean;
  /** `only-if-cached`: a miss answers 504 instead of asking the upstream. */
  onlyIfCached: boolean;
}

// Every request asks for its policy: no closure is made per call.
export function requestPolicy(method: string, pathname: string, url: string, headers: IncomingHttpHeaders, options: CacheOptions): RequestPolicy {
  if (method !== 'GET' && method !== 'HEAD') return none('method');
  if (startsWithAny(pathname, options.bypassPaths)) return none('path');
  if (options.bypassHeader && isOn(headers[options.bypassHeader])) return none('header');
  if (options.bypassQuery && hasQuerySwitch(url, options.bypassQuery)) return none('query');
  // A shared cache must not hand one user's authorised answer to another (RFC 9111 §3.5).
  if (headers.authorization !== undefined) return none('authorization');
  if (!options.honourClientCacheControl) return { lookup: true, onlyIfCached: false };
  const cc = parseCacheControl(headers['cache-control']);
  if (cc.has('no-store')) return none('no-store');
  const revalidate = cc.has('no-cache') || cc.get('max-age') === '0' || (headers.pragma === 'no-cache' && !headers['cache-control']);
  return { lookup: !revalidate, onlyIfCached: cc.has('only-if-cached') };
}

function none(bypass: string): RequestPolicy {
  return { bypass, lookup: false, onlyIfCached: false };
}

function startsWithAny(pathname: string, prefixes: readonly string[]): boolean {
  for (let i = 0; i < prefixes.length; i++) if (pathname.startsWith(prefixes[i]!)) return true;
  return false;
}

function isOn(value: string | string[] | undefined): boolean {
  if (value === undefined) return false;
  const v = String(value).trim().toLowerCase();
  return v !== '' && v !== '0' && v !== 'false' && v !== 'no';
}

function hasQuerySwitch(url: string, name: string): boolean {
  const q = url.indexOf('?');
  if (q === -1) return false;
  for (const part of url.slice(q + 1).split('&')) {
    const eq = part.indexOf('=');
    if ((eq === -1 ? part : part.slice(0, eq)) === name) return isOn(eq === -1 ? '1' : part.slice(eq + 1));
  }
  return false;
}

/**
 * The decision about one upstream response: how long it stays fresh from now (`ttl`, seconds) and
 * the age it arrived with (`initialAge`, whole seconds, for the Age header), or why it is not stored.
 */
export type ResponsePolicy =
  | { store: true; ttl: number; initialAge: number }
  | { store: false; reason: string; validationFailure?: boolean };

/**
 * `delaySeconds` is how long the exchange took (the request's time so far): the upstream's Age was
 * true when it sent the response, and the response is at least that much older on arrival.
 */
export function responsePolicy(status: number, headers: OutgoingHttpHeaders, options: CacheOptions, now: number, pathname = '', delaySeconds = 0): ResponsePolicy {
  const refuse = (reason: string, validationFailure = false): ResponsePolicy => ({ store: false, reason, validationFailure });
  // A part is never the whole: storing it would answer later requests with a fragment.
  if (status === 206 || status === 304 || status < 200) return refuse(`status ${status}`);
  if (headers['set-cookie'] !== undefined) return refuse('set-cookie');
  const { cc, targeted } = responseCacheControl(headers, options.targetedCacheControl);
  // must-understand (RFC 9111 §5.2.2.3): a status this cache knows the rules for is stored as
  // the other directives say, no-store aside; any other status is not stored at all.
  const mustUnderstand = cc.has('must-understand');
  if (mustUnderstand && !UNDERSTOOD_STATUSES.has(status)) return refuse('must-understand');
  if (cc.has('private') || (cc.has('no-store') && !mustUnderstand)) return refuse('cache-control');
  const vary = headers.vary === undefined ? [] : String(headers.vary).split(',').map((v) => v.trim().toLowerCase()).filter(Boolean);
  // Any other Vary makes variants (variants.ts); `*` matches no request.
  if (vary.includes('*')) return refuse('vary *');
  const negative = status === 404 && options.negativeTtl > 0;
  const lifetime = negative ? undefined : originLifetime(headers, cc, targeted, options, now);
  // `statuses` lists what may be stored on the plugin's TTLs; a status the origin gave a
  // lifetime of its own is stored whatever it is (RFC 9111 §3: explicit freshness makes it so).
  if (!negative && lifetime === undefined && !options.statuses.includes(status)) return refuse(`status ${status}`);
  const type = contentTypeOf(headers['content-type']);
  if (status !== 204 && status !== 301 && !contentTypeAllowed(type, options.contentTypes)) {
    return refuse(`content type ${type || '(none)'} is not allowed`, true);
  }
  const length = headers['content-length'];
  if (length !== undefined && Number(length) > options.maxBodyBytes) return refuse('body too large');
  // No-cache, a lifetime of 0, or one used up on arrival: the response may still be stored, but
  // only to be revalidated before each use — worth it when it has a validator to do that with.
  const revalidateOnly = (reason: string): ResponsePolicy =>
    options.revalidate && hasValidatorFields(status, headers) ? { store: true, ttl: 0, initialAge: 0 } : refuse(reason);
  // A qualified no-cache only keeps its fields out of the stored response (tee drops them).
  if (cc.has('no-cache') && noCacheFields(cc) === undefined) return revalidateOnly('cache-control');
  const age = reportedAge(headers);
  if (lifetime === undefined) {
    // A configured TTL counts from now: the upstream's Age is shown, not held against it.
    const ttl = negative ? options.negativeTtl : configuredTtl(type, options, pathname);
    if (ttl > 0) return { store: true, ttl, initialAge: Math.floor(age ?? 0) };
    return options.honourUpstreamCacheControl ? revalidateOnly('ttl 0') : refuse('ttl 0');
  }
  // An Age that is not one non-negative integer cannot be trusted to be small (RFC 9111 §5.1).
  if (age === undefined) return revalidateOnly('invalid age');
  // RFC 9111 §4.2.3: the age on arrival is the larger of what the Age header says (plus the time
  // the exchange took) and how long ago the origin dated the response.
  const date = headerDate(headers.date, now);
  // Date counts whole seconds: the fraction since the origin's last second is no age.
  const apparent = date === undefined ? 0 : Math.max(0, Math.floor((now - date) / 1000));
  const ageOnArrival = Math.max(apparent, age > 0 ? age + delaySeconds : 0);
  if (lifetime <= 0) return revalidateOnly('ttl 0');
  const ttl = lifetime - ageOnArrival;
  return ttl > 0 ? { store: true, ttl, initialAge: Math.floor(ageOnArrival) } : revalidateOnly('stale on arrival');
}

/** Statuses whose caching rules this cache knows (for must-understand): RFC 9110's final ones. */
const UNDERSTOOD_STATUSES: ReadonlySet<number> = new Set([
  200, 201, 202, 203, 204, 300, 301, 302, 303, 307, 308,
  400, 401, 403, 404, 405, 406, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426,
  500, 501, 502, 503, 504, 505,
]);

/** A 2xx with an ETag or Last-Modified: a conditional request can check it (servers ignore conditionals on anything else). */
export function hasValidatorFields(status: number, headers: Readonly<OutgoingHttpHeaders>): boolean {
  if (status < 200 || status > 299) return false;
  return typeof headers.etag === 'string' || typeof headers['last-modified'] === 'string';
}

/**
 * The upstream's Age header in seconds: 0 when absent, undefined when it cannot be trusted. One
 * field holding a list counts by its first member (RFC 9111 §5.1: `0,7200` is 0). Two Age fields
 * (two lines, or two joined with ", " on the way, as RFC 9110 §5.3 combines them) mean a cache on
 * the way added its own without removing the other's: no telling which is true. A value that is
 * not a non-negative integer (`abc`, `-7200`, `7200.0`, `7200;foo=bar`) is no age either.
 */
function reportedAge(headers: OutgoingHttpHeaders): number | undefined {
  const value = headers.age;
  if (value === undefined) return 0;
  if (Array.isArray(value)) return undefined;
  const text = String(value);
  if (text.includes(', ')) return undefined;
  const first = text.split(',')[0]!.trim();
  return /^\d+$/.test(first) ? Number(first) : undefined;
}

export function contentTypeOf(value: OutgoingHttpHeaders[string]): string {
  if (value === undefined) return '';
  return String(value).split(';')[0]!.trim().toLowerCase();
}

/** `image/*` matches `image/png`; `*\/*` matches anything, even a missing type. */
export function contentTypeAllowed(type: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => matchesType(type, pattern));
}

function matchesType(type: string, pattern: string): boolean {
  const p = pattern.toLowerCase();
  if (p === '*/*' || p === '*') return true;
  if (p.endsWith('/*')) return type.startsWith(p.slice(0, -1));
  return type === p;
}

/**
 * The directives this cache follows for a response. A field targeted at it (RFC 9213: the first
 * of `targets`, CDN-Cache-Control by default, present with a value that parses) replaces
 * Cache-Control, and Expires with it; otherwise Cache-Control.
 */
export function responseCacheControl(headers: Readonly<OutgoingHttpHeaders>, targets: readonly string[]): { cc: CacheControl; targeted: boolean } {
  for (const name of targets) {
    const value = headers[name] as string | string[] | undefined;
    if (value === undefined) continue;
    const cc = name === 'surrogate-control' ? parseSurrogateControl(value) : parseCacheControl(value);
    if (cc.size > 0 && validDirectives(cc)) return { cc, targeted: true };
  }
  return { cc: parseCacheControl(headers['cache-control'] as string | string[] | undefined), targeted: false };
}

/** The device token this cache announces in Surrogate-Capability, and answers to in Surrogate-Control. */
export const SURROGATE_TOKEN = 'switchyard';
export const SURROGATE_CAPABILITY = `${SURROGATE_TOKEN}="Surrogate/1.0"`;

/**
 * Surrogate-Control (W3C Edge Architecture 1.0): Cache-Control's syntax, but a directive may end
 * in `;device`, and then applies to that device only. Those for this cache (SURROGATE_TOKEN) and
 * those for every device are kept; a targeted one beats an untargeted one of the same name.
 */
function parseSurrogateControl(value: string | string[]): CacheControl {
  const out: CacheControl = new Map();
  const targeted = new Set<string>();
  for (const part of String(value).split(',')) {
    const semi = part.indexOf(';');
    const device = semi === -1 ? undefined : part.slice(semi + 1).trim();
    if (device !== undefined && device !== SURROGATE_TOKEN) continue;
    const directive = parseCacheControl(semi === -1 ? part : part.slice(0, semi));
    for (const [name, given] of directive) {
      if (device === undefined && targeted.has(name)) continue;
      if (device !== undefined) targeted.add(name);
      out.set(name, given);
    }
  }
  return out;
}

/** A targeted field is a structured dictionary: names are tokens, values integers or tokens. */
function validDirectives(cc: CacheControl): boolean {
  for (const [name, value] of cc) {
    if (!/^[a-z*][a-z0-9_\-.*]*$/.test(name)) return false;
    if (value !== true && !/^[\w\-.:%*/!#$&'+^`|~]*$/.test(value)) return false;
  }
  return true;
}

/** The upstream's freshness lifetime (seconds) when honoured and given; undefined otherwise. */
function originLifetime(headers: OutgoingHttpHeaders, cc: CacheControl, targeted: boolean, options: CacheOptions, now: number): number | undefined {
  if (!options.honourUpstreamCacheControl) return undefined;
  return upstreamTtl(targeted ? NO_EXPIRES : headers, cc, now);
}

const NO_EXPIRES: OutgoingHttpHeaders = Object.freeze({});

/**
 * The longest `ttlByPath` prefix of the path; else the configured TTL for the type (most
 * specific pattern wins); else `ttl`.
 */
function configuredTtl(type: string, options: CacheOptions, pathname: string): number {
  let byPath: { ttl: number; length: number } | undefined;
  for (const [prefix, ttl] of Object.entries(options.ttlByPath)) {
    if (pathname.startsWith(prefix) && (!byPath || prefix.length > byPath.length)) byPath = { ttl, length: prefix.length };
  }
  if (byPath) return byPath.ttl;
  let best: { ttl: number; specificity: number } | undefined;
  for (const [pattern, ttl] of Object.entries(options.ttlByContentType)) {
    if (!matchesType(type, pattern)) continue;
    const specificity = pattern.endsWith('/*') ? 1 : pattern.includes('*') ? 0 : 2;
    if (!best || specificity > best.specificity) best = { ttl, specificity };
  }
  return best?.ttl ?? options.ttl;
}

/** s-maxage (meant for shared caches) over max-age over Expires − Date. */
function upstreamTtl(headers: OutgoingHttpHeaders, cc: CacheControl, now: number): number | undefined {
  for (const directive of ['s-maxage', 'max-age']) {
    const value = cc.get(directive);
    if (typeof value === 'string' && /^\d+$/.test(value)) return Number(value);
  }
  if (headers.expires !== undefined) {
    const expires = headerDate(headers.expires, now);
    // An unparseable Expires means "already expired" (RFC 9111 §5.3).
    if (expires === undefined) return 0;
    return Math.max(0, Math.floor((expires - (headerDate(headers.date, now) ?? now)) / 1000));
  }
  return undefined;
}

/** How long past its freshness a stored response may still answer (seconds). */
export interface StaleAllowance {
  /** While one background refresh runs (stale-while-revalidate, RFC 5861). */
  whileRevalidate: number;
  /** When the upstream fails (stale-if-error, RFC 5861). */
  ifError: number;
}

/**
 * The origin decides first: its own stale-while-revalidate and stale-if-error are what it allows,
 * and must-revalidate, proxy-revalidate, s-maxage (which implies proxy-revalidate for a shared
 * cache, RFC 9111 §5.2.2.10) and no-cache forbid stale answers the plugin's options would give.
 * Only a response that says nothing of it gets the options' defaults. An explicit stale-if-error
 * holds even then (RFC 5861 §4: "regardless of other freshness information").
 */
export function staleAllowance(headers: Readonly<OutgoingHttpHeaders>, options: CacheOptions): StaleAllowance {
  const { cc } = responseCacheControl(headers, options.targetedCacheControl);
  const forbids = cc.has('must-revalidate') || cc.has('proxy-revalidate') || cc.has('s-maxage') || cc.has('no-cache');
  return {
    whileRevalidate: forbids ? 0 : deltaSeconds(cc.get('stale-while-revalidate')) ?? options.staleWhileRevalidate,
    ifError: deltaSeconds(cc.get('stale-if-error')) ?? (forbids ? 0 : options.staleIfError),
  };
}

function deltaSeconds(value: string | true | undefined): number | undefined {
  return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : undefined;
}

/**
 * True when the client already has this entry: If-None-Match matches its ETag (weak comparison),
 * or, without If-None-Match, it has not changed since If-Modified-Since (RFC 9110 §13.1).
 */
export function notModified(headers: IncomingHttpHeaders, entry: CachedEntry): boolean {
  if (entry.status !== 200) return false;
  const inm = headers['if-none-match'];
  if (inm !== undefined) {
    const etag = entry.headers.etag;
    if (typeof etag !== 'string') return false;
    const wanted = inm.split(',').map((t) => t.trim());
    return wanted.includes('*') || wanted.some((t) => weak(t) === weak(etag));
  }
  const ims = headers['if-modified-since'];
  // Without a Last-Modified, the stored Date is when it was last known unchanged (RFC 9111 §4.3.2).
  const lastModified = entry.headers['last-modified'] ?? entry.headers.date;
  if (ims === undefined || typeof lastModified !== 'string') return false;
  // An invalid date is ignored (RFC 9110 §13.1.3): the full response is the answer.
  const since = parseHttpDate(ims);
  const modified = parseHttpDate(lastModified);
  return since !== undefined && modified !== undefined && modified <= since;
}

/**
 * Whether the client accepts the stored body's Content-Encoding (RFC 9110 §12.5.3). Keeping
 * Accept-Encoding out of the key lets browsers, curl and warm-up share entries; an entry in an
 * encoding this client cannot read is treated as a miss.
 */
export function acceptsEncoding(headers: IncomingHttpHeaders, entry: CachedEntry): boolean {
  const coding = entry.headers['content-encoding'];
  if (coding === undefined) return true;
  // Codings applied one after the other (`gzip, br`): the client must read every one.
  for (const applied of String(coding).split(',')) {
    const name = canonicalCoding(applied);
    if (KNOWN_CODINGS.has(name) && !acceptsCoding(headers['accept-encoding'], name)) return false;
  }
  return true;
}

/**
 * The registered content codings a client may or may not read (IANA's registry, identity aside).
 * Any other name is the origin's own business with its clients, as it is for a cache that follows
 * Vary only: the stored answer is served as it is.
 */
const KNOWN_CODINGS: ReadonlySet<string> = new Set(['gzip', 'deflate', 'br', 'compress', 'zstd', 'aes128gcm', 'exi', 'pack200-gzip', 'dcb', 'dcz']);

function weak(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

/** Headers a 304 carries over from the stored response (RFC 9110 §15.4.5). */
export const NOT_MODIFIED_HEADERS = ['cache-control', 'content-location', 'etag', 'expires', 'last-modified', 'vary'];
