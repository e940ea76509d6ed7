// Cache keys: method + route + host + normalised path + sorted query (minus excluded parameters)
// and, optionally, the request headers the `vary` option lists. The readable key is kept for admin
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
  /**
   * The rest of what the id is made of: the host the request was for (and what a trusted proxy
   * forwarded of host and scheme), then the request headers the `vary` option lists, with values.
   */
  readonly vary: string;
}

/**
 * Builds the key of a request. HEAD shares GET's entry (a HEAD is answered from a GET's response).
 * `exclude` lists query parameters left out entirely (e.g. an API key), compared case-insensitively.
 * The host is always part of it: the core forwards it (X-Forwarded-Host), and an upstream that
 * builds links or redirects from it answers differently per host. `forwarded` is what a trusted
 * proxy said of host and scheme (forwardedPart()), '' otherwise.
 */
export function cacheKey(route: string, url: string, headers: IncomingHttpHeaders, exclude: ReadonlySet<string>, vary: readonly string[], forwarded = ''): CacheKey {
  const normalised = normaliseUrl(url, exclude);
  const readable = `GET ${normalised}`;
  let varyPart = `\nhost: ${normaliseHost(headers.host)}${forwarded}`;
  for (const name of vary) {
    const value = headers[name];
    varyPart += `\n${name}: ${Array.isArray(value) ? value.join(', ') : value ?? ''}`;
  }
  return { id: hashKey(route, readable, varyPart), readable, route, url: normalised, vary: varyPart };
}

/**
 * cacheKey() for one cache (its excluded parameters and Vary list). Where no request header but
 * Host takes part in keys, the keys of recent host and URL pairs are remembered: a hit then finds
 * its key with one lookup instead of normalising the URL and building the key's strings again.
 * Bounded like the ids.
 */
export function keyMaker(exclude: ReadonlySet<string>, vary: readonly string[]): (route: string, url: string, headers: IncomingHttpHeaders, forwarded?: string) => CacheKey {
  if (vary.length > 0) return (route, url, headers, forwarded) => cacheKey(route, url, headers, exclude, vary, forwarded);
  const recent = new Map<string, CacheKey>();
  return (route, url, headers, forwarded = '') => {
    if (forwarded !== '') return cacheKey(route, url, headers, exclude, vary, forwarded);
    const host = headers.host;
    const memo = host === undefined ? url : `${host}\u0000${url}`;
    let key = recent.get(memo);
    if (key === undefined || key.route !== route) {
      key = cacheKey(route, url, headers, exclude, vary);
      if (recent.size >= RECENT_IDS) recent.clear();
      recent.set(memo, key);
    }
    return key;
  };
}

/**
 * The Host a key names, as nginx's `$host` but keeping a port that is not the default: lower
 * case, no trailing dot, `:80` dropped (the proxy listens on plain HTTP). '' when there is none
 * (HTTP/1.0 without Host).
 */
export function normaliseHost(host: string | undefined): string {
  if (host === undefined) return '';
  let name = host.trim().toLowerCase();
  if (name.endsWith(':80')) name = name.slice(0, -3);
  if (name.endsWith('.')) name = name.slice(0, -1);
  return name;
}

/**
 * What a trusted proxy forwarded that an upstream may build its answer from: the host and scheme
 * of X-Forwarded-Host/-Proto and of Forwarded's `host=`/`proto=` (its `for=` names the client,
 * which would give every client an entry of its own). '' when it forwarded none of them.
 */
export function forwardedPart(headers: IncomingHttpHeaders): string {
  let part = '';
  const xHost = headers['x-forwarded-host'];
  if (xHost !== undefined) part += `\nx-forwarded-host: ${normaliseHost(String(xHost))}`;
  const xProto = headers['x-forwarded-proto'];
  if (xProto !== undefined) part += `\nx-forwarded-proto: ${String(xProto).trim().toLowerCase()}`;
  const forwarded = headers.forwarded;
  if (forwarded !== undefined) {
    const kept = forwarded.split(/[;,]/).map((p) => p.trim().toLowerCase()).filter((p) => p.startsWith('host=') || p.startsWith('proto='));
    if (kept.length > 0) part += `\nforwarded: ${kept.join(';')}`;
  }
  return part;
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

/**
 * The path with unreserved characters decoded and escapes upper-cased; the query sorted, without
 * excluded parameters. Upstreams differ on `;`: most split the query on `&` only, some (servlet
 * containers, old CGI) on `;` too. A segment holding `;` is therefore kept in its order, minus the
 * excluded parameters either reading finds in it, and marked with a leading `;` when one went: so
 * `api_key=x;cb=1` is neither the plain path (what a `;`-splitting upstream reads as `cb=1`) nor
 * `cb=1` (what an `&`-only upstream reads as no `cb` at all). Removing a parameter never makes two
 * queries that an upstream could tell apart one key.
 */
export function normaliseUrl(url: string, exclude: ReadonlySet<string>): string {
  const q = url.indexOf('?');
  const path = normalisePath(q === -1 ? url : url.slice(0, q));
  if (q === -1) return path;
  const pairs: [string, string][] = [];
  for (const part of url.slice(q + 1).split('&')) {
    if (!part) continue;
    if (part.includes(';')) {
      const kept = part.split(';').filter((piece) => !excluded(piece, exclude));
      if (kept.length === 0) continue;
      const segment = (kept.length < part.split(';').length ? ';' : '') + kept.join(';');
      pairs.push([segment, '']);
      continue;
    }
    if (excluded(part, exclude)) continue;
    const eq = part.indexOf('=');
    pairs.push([eq === -1 ? part : part.slice(0, eq), eq === -1 ? '' : part.slice(eq)]);
  }
  if (pairs.length === 0) return path;
  // Sort by name only (stable), so repeated parameters keep their relative order: a=2&a=1 ≠ a=1&a=2.
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return `${path}?${pairs.map(([name, rest]) => name + rest).join('&')}`;
}

/** Whether a `name=value` piece of a query names an excluded parameter. */
function excluded(piece: string, exclude: ReadonlySet<string>): boolean {
  if (exclude.size === 0 || piece === '') return false;
  const eq = piece.indexOf('=');
  return exclude.has(decodeLoosely(eq === -1 ? piece : piece.slice(0, eq)).toLowerCase());
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
