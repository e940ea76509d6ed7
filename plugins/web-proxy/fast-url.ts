// The two URL forms most of a page's links take, resolved without the WHATWG URL parser.
//
// Why: a large page has tens of thousands of links; `new URL(value, base)` for each was about a
// third of the rewriter's time (45,000 links of the bench's 2 MB page: ~60 ms of CPU on this
// machine, against ~170 ms for the whole page). Only values the parser would leave exactly as
// they are take this path: a root-relative path (`/a/b.png?x=1#y`) or a relative one that starts
// with a name character (`b.png`, `dir/page.html#top`), made only of characters no part of an
// http(s) URL percent-encodes, with no dot segment (`.`, `..`, or one spelled with `%2e`), no
// `'` in the query (the parser encodes it there), no bad `%` escape and, for a relative one, no
// colon before its first `/`, `?` or `#` (it could be a scheme). Anything else, and any base
// with a user name or password (which `origin` leaves out), returns undefined and goes through
// the parser. One pass over bytes — an attribute's own, so that a plain link is never made into
// a string (a string value is turned into bytes first) — and no regular expression. The regular
// expressions this replaced missed `.` in root-relative links, so `/img/a.png` always went
// through the parser, and let `%2e` segments and `'` in queries through. Reading strings and
// bytes through one accessor cost 11 % of the rewriter's CPU profile; under callgrind, the
// rewriter's 2 MB page took 224 million instructions that way and 217 million this way.

/** 1 for the characters that stand for themselves in an http(s) URL's path, query and fragment. */
const PLAIN = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?#%") PLAIN[c.charCodeAt(0)] = 1;

const PLAIN_NONE = 0;
const PLAIN_ROOT = 1;
const PLAIN_RELATIVE = 2;
/** What an attribute value can hold as it is, quoted or not (and the proxied form is ASCII). */
const ATTRIBUTE_SAFE = /^[!#-%(-;?-_a-z|~]*$/;

/** Plain values are printable ASCII; a string of anything else is not looked at further. */
const PRINTABLE_ASCII = /^[\x21-\x7e]*$/;

const isHex = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
const isNameStart = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x7e;

/** Resolves plain links against one base, as `new URL(value, base).href` would. */
export class PlainResolver {
  private readonly origin: string | undefined;
  private readonly directory: string;
  private heads: { prefix: string; root: Uint8Array | undefined; relative: Uint8Array | undefined } | undefined;

  constructor(base: URL) {
    const usable = (base.protocol === 'http:' || base.protocol === 'https:') && base.username === '' && base.password === '';
    this.origin = usable ? base.origin : undefined;
    this.directory = usable ? base.origin + base.pathname.slice(0, base.pathname.lastIndexOf('/') + 1) : '';
  }

  /** The absolute URL for a plain value; undefined for anything the URL parser must handle. */
  resolve(value: string): string | undefined {
    if (this.origin === undefined || !PRINTABLE_ASCII.test(value)) return undefined;
    const kind = this.kind(Buffer.from(value, 'latin1'), 0, value.length, true);
    return kind === PLAIN_NONE ? undefined : (kind === PLAIN_ROOT ? this.origin : this.directory) + value;
  }

  /**
   * For a plain value — an attribute's bytes[start, end) as written, without `&` (which could
   * start a character reference) — the bytes of `${prefix}/` and the base's origin or directory:
   * written in front of the value's own bytes, they make its proxied URL without a string being
   * made, built or encoded. Undefined for anything else, or when they would need escaping there.
   */
  proxiedHead(bytes: Uint8Array, start: number, end: number, prefix: string): Uint8Array | undefined {
    const kind = this.kind(bytes, start, end, false);
    if (kind === PLAIN_NONE) return undefined;
    if (this.heads === undefined || this.heads.prefix !== prefix) {
      const head = (url: string) => {
        const text = `${prefix}/${url}`;
        return ATTRIBUTE_SAFE.test(text) ? Buffer.from(text, 'latin1') : undefined;
      };
      this.heads = { prefix, root: head(this.origin!), relative: head(this.directory) };
    }
    return kind === PLAIN_ROOT ? this.heads.root : this.heads.relative;
  }

  /**
   * Which plain form bytes[start, end) are: a value as decoded (`decoded`), or an attribute's
   * bytes as written, where `&` could start a character reference and is not plain.
   */
  private kind(bytes: Uint8Array, start: number, end: number, decoded: boolean): number {
    if (this.origin === undefined || end === start) return PLAIN_NONE;
    const first = bytes[start]!;
    const rootRelative = first === 0x2f;
    if (rootRelative ? end - start > 1 && bytes[start + 1] === 0x2f : !isNameStart(first)) return PLAIN_NONE;
    // 0: path, 1: query, 2: fragment.
    let part = 0;
    let segment = rootRelative ? start + 1 : start;
    for (let i = start; i < end; i++) {
      const c = bytes[i]!;
      if (c >= 0x80 || PLAIN[c] === 0 || (c === 0x26 && !decoded)) return PLAIN_NONE;
      if (c === 0x25) {
        if (i + 2 >= end || !isHex(bytes[i + 1]!) || !isHex(bytes[i + 2]!)) return PLAIN_NONE;
        if (part === 0 && bytes[i + 1] === 0x32 && (bytes[i + 2]! | 0x20) === 0x65) return PLAIN_NONE; // %2e
      }
      if (part === 0) {
        if (c === 0x3a && !rootRelative && segment === start) return PLAIN_NONE;
        if (c === 0x2f || c === 0x3f || c === 0x23) {
          if (isDotSegment(bytes, segment, i)) return PLAIN_NONE;
          segment = i + 1;
          if (c !== 0x2f) part = c === 0x3f ? 1 : 2;
        }
      } else if (part === 1) {
        if (c === 0x27) return PLAIN_NONE;
        if (c === 0x23) part = 2;
      }
    }
    if (part === 0 && isDotSegment(bytes, segment, end)) return PLAIN_NONE;
    return rootRelative ? PLAIN_ROOT : PLAIN_RELATIVE;
  }
}

/** Whether bytes[start, end) are `.` or `..`. */
function isDotSegment(bytes: Uint8Array, start: number, end: number): boolean {
  if (end - start === 1) return bytes[start] === 0x2e;
  return end - start === 2 && bytes[start] === 0x2e && bytes[start + 1] === 0x2e;
}

const resolvers = new WeakMap<URL, PlainResolver>();

/** The resolver for `base`, made once per URL object (a page's base changes at most once). */
export function plainResolverFor(base: URL): PlainResolver {
  let resolver = resolvers.get(base);
  if (resolver === undefined) {
    resolver = new PlainResolver(base);
    resolvers.set(base, resolver);
  }
  return resolver;
}
