// Cache keys: method + route + normalised path + sorted query (minus excluded parameters) and,
// optionally, the request headers the response varies on. The readable key is kept for admin
// listings; storage uses a hash of it so keys have a fixed size whatever the URL.
import { hash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export interface CacheKey {
  /** Storage id: a hash of everything below. */
  readonly id: string;
  /** What admins see: `GET /path?a=1&b=2` (never an excluded parameter). */
  readonly readable: string;
  /** The route the entry belongs to. */
  readonly route: string;
  /** The URL part of the readable key: normalised path and sorted query. */
  readonly url: string;
  /** The Vary part: the listed request headers and their values. */
  readonly vary: string;
}

/**
 * Builds the key of a request. HEAD shares GET's entry (a HEAD is answered from a GET's response).
 * `exclude` lists query parameters left out entirely (e.g. an API key), compared case-insensitively.
 */
export function cacheKey(route: string, url: string, headers: IncomingHttpHeaders, exclude: ReadonlySet<string>, vary: readonly string[]): CacheKey {
  const normalised = normaliseUrl(url, exclude);
  const readable = `GET ${normalised}`;
  let varyPart = '';
  for (const name of vary) {
    const value = headers[name];
    varyPart += `\n${name}: ${Array.isArray(value) ? value.join(', ') : value ?? ''}`;
  }
  return { id: hashKey(route, readable, varyPart), readable, route, url: normalised, vary: varyPart };
}

/**
 * cacheKey() for one cache (its excluded parameters and Vary list). Where no request header takes
 * part in keys, the keys of recent URLs are remembered: a hit then finds its key with one lookup
 * instead of normalising the URL and building the key's strings again. Bounded like the ids.
 */
export function keyMaker(exclude: ReadonlySet<string>, vary: readonly string[]): (route: string, url: string, headers: IncomingHttpHeaders) => CacheKey {
  if (vary.length > 0) return (route, url, headers) => cacheKey(route, url, headers, exclude, vary);
  const recent = new Map<string, CacheKey>();
  return (route, url, headers) => {
    let key = recent.get(url);
    if (key === undefined || key.route !== route) {
      key = cacheKey(route, url, headers, exclude, vary);
      if (recent.size >= RECENT_IDS) recent.clear();
      recent.set(url, key);
    }
    return key;
  };
}

export function hashKey(route: string, readable: string, varyPart: string): string {
  const material = `${route}\u0000${readable}\u0000${varyPart}`;
  let id = recentIds.get(material);
  if (id === undefined) {
    id = hash('sha256', material, 'base64url').slice(0, 32);
    if (recentIds.size >= RECENT_IDS) recentIds.clear();
    recentIds.set(material, id);
  }
  return id;
}

// A hash is a call into OpenSSL and a base64 string: about 6 % of a memory hit's instructions. The
// ids of recent keys are kept; past the bound the memo starts afresh rather than tracking age.
const RECENT_IDS = 4096;
const recentIds = new Map<string, string>();

/** The path with unreserved characters decoded and escapes upper-cased; the query sorted. */
export function normaliseUrl(url: string, exclude: ReadonlySet<string>): string {
  const q = url.indexOf('?');
  const path = normalisePath(q === -1 ? url : url.slice(0, q));
  if (q === -1) return path;
  const pairs: [string, string][] = [];
  for (const part of url.slice(q + 1).split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const rawName = eq === -1 ? part : part.slice(0, eq);
    if (exclude.has(decodeLoosely(rawName).toLowerCase())) continue;
    pairs.push([rawName, eq === -1 ? '' : part.slice(eq)]);
  }
  if (pairs.length === 0) return path;
  // Sort by name only (stable), so repeated parameters keep their relative order: a=2&a=1 ≠ a=1&a=2.
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return `${path}?${pairs.map(([name, rest]) => name + rest).join('&')}`;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

// RFC 3986 §6.2.2: percent-encoded unreserved characters mean the same decoded, and escape hex
// digits are case-insensitive. Nothing else is touched: `//` or `%2F` may matter to an upstream.
function normalisePath(path: string): string {
  if (!path.includes('%')) return path;
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_match, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
  });
}

function decodeLoosely(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return value;
  }
}
