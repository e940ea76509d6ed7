// The two URL forms most of a page's links take, resolved without the WHATWG URL parser.
//
// Why: a large page has tens of thousands of links; `new URL(value, base)` for each was about a
// third of the rewriter's time (45,000 links of the bench's 2 MB page: ~60 ms of CPU on this
// machine, against ~170 ms for the whole page). Only values the parser would leave exactly as
// they are take this path: a root-relative path (`/a/b.png?x=1#y`) or a relative one that starts
// with a name character (`b.png`, `dir/page.html#top`), both made only of characters that need
// no percent-encoding and with no dot segment, backslash, or (for relative ones) colon. Anything
// else returns undefined and goes through the parser.

const PLAIN_ROOT_RELATIVE = /^\/[A-Za-z0-9\-_~!$&'()*+,;=:@%/?#]*$/;
const PLAIN_RELATIVE = /^[A-Za-z0-9_~][A-Za-z0-9\-_~!$&'()*+,;=@%/?#.]*$/;
const DOT_SEGMENT = /(^|\/)\.\.?(\/|$|[?#])/;

/** What `new URL(value, base).href` would give, for the plain forms above; else undefined. */
export function resolvePlain(value: string, base: URL, baseDirectory: string): string | undefined {
  const path = value.split(/[?#]/, 1)[0]!;
  if (value.startsWith('//') || DOT_SEGMENT.test(path) || value.includes('%') && /%(?![0-9A-Fa-f]{2})/.test(value)) return undefined;
  if (PLAIN_ROOT_RELATIVE.test(value)) return base.origin + value;
  if (PLAIN_RELATIVE.test(value)) return baseDirectory + value;
  return undefined;
}

/** The base's directory (`http://a/b/c?q` → `http://a/b/`), which relative paths resolve against. */
export function directoryOf(base: URL): string {
  return base.origin + base.pathname.slice(0, base.pathname.lastIndexOf('/') + 1);
}
