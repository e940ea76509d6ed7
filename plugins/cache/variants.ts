// Variants (RFC 9111 §4.1): a response that says `Vary: Origin, Accept-Encoding` is stored with
// the names it varies on and the request's values of them, and answers only a request whose values
// match. The first variant of a URL lives under the URL's own id (so one lookup finds it, as
// before); the others under an id that adds the names and values, found by a second lookup with the
// names the first holds (nginx's `proxy_cache` does the same with its "variant" key). Accept-
// Encoding is one such header, with the values normalised to the set of codings accepted, so the
// gzip and brotli bodies the compression plugin produced are variants like any other.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { acceptedCodings } from '../../core/index.js';
import { hashKey, type CacheKey } from './cache-key.js';

/** What a stored response varies on, beside its key. */
export interface VaryMatch {
  /** Request header names the response varies on, lower case, sorted, none that the key holds already. */
  readonly names: readonly string[];
  /** The request's values of `names` (normalised), one `name: value` line each. */
  readonly values: string;
}

export const NO_VARIANTS: VaryMatch = Object.freeze({ names: Object.freeze([]) as readonly string[], values: '' });

/**
 * The names a response's Vary lists, less the ones the key holds (`keyed`); undefined for
 * `Vary: *`, which no request can be matched against (RFC 9111 §4.1).
 */
export function varyNames(vary: OutgoingHttpHeaders[string], keyed: ReadonlySet<string>): readonly string[] | undefined {
  if (vary === undefined) return NO_VARIANTS.names;
  const names = new Set<string>();
  for (const part of (Array.isArray(vary) ? vary.join(',') : String(vary)).split(',')) {
    const name = part.trim().toLowerCase();
    if (name === '*') return undefined;
    if (name !== '' && !keyed.has(name)) names.add(name);
  }
  return names.size === 0 ? NO_VARIANTS.names : [...names].sort();
}

/** The request's side of a variant: its values of `names`. */
export function matchOf(names: readonly string[], headers: IncomingHttpHeaders): VaryMatch {
  if (names.length === 0) return NO_VARIANTS;
  let values = '';
  for (const name of names) values += `\n${name}: ${normaliseField(name, headers[name])}`;
  return { names, values };
}

export function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Where a variant other than the URL's first is stored. */
export function variantId(key: CacheKey, match: VaryMatch): { id: string; vary: string } {
  const vary = `${key.vary}\n${match.values}`;
  return { id: hashKey(key.route, key.readable, vary), vary };
}

/** Fields whose values are case-insensitive lists of tokens (RFC 9110 §12.5). */
const CASE_INSENSITIVE = new Set(['accept-charset', 'accept-language']);

/**
 * RFC 9111 §4.1 lets a cache normalise values that mean the same: list members trimmed and
 * joined with `,` (whitespace and repeated lines do not matter), case folded where the field is
 * case-insensitive, and Accept-Encoding reduced to the codings it accepts, sorted (`gzip, br` and
 * `br;q=1.0,gzip` are one variant; the answer depends on nothing else in it).
 */
export function normaliseField(name: string, value: string | string[] | undefined): string {
  if (value === undefined) return '';
  const joined = Array.isArray(value) ? value.join(',') : value;
  if (name === 'accept-encoding') return acceptedCodingList(joined);
  const members: string[] = [];
  for (const part of joined.split(',')) {
    const member = part.trim().replace(/\s*;\s*/g, ';');
    if (member !== '') members.push(member);
  }
  const out = members.join(',');
  return CASE_INSENSITIVE.has(name) ? out.toLowerCase() : out;
}

/**
 * The codings an Accept-Encoding value accepts (q > 0), canonical names, sorted and unique.
 * `identity` is left out: every client takes an unencoded body, and one that names only identity
 * gets what one that sends no Accept-Encoding gets (the stored encoded variants are never served
 * to either: acceptsEncoding in policy.ts), so both share one variant.
 */
function acceptedCodingList(value: string): string {
  const codings: string[] = [];
  for (const [coding, q] of acceptedCodings(value)) if (q > 0 && coding !== 'identity') codings.push(coding);
  return codings.sort().join(',');
}
