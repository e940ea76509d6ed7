// What the core refuses or rewrites in a request head before anything routes it, so that routes,
// access checks (`publicPaths`, admin paths) and the upstream all see one and the same path:
//   - an absolute-form target (`GET http://a.example/x`) becomes origin-form (`/x`) and its
//     authority replaces Host (RFC 9112 §3.2.2);
//   - dot segments are removed (RFC 3986 §5.2.4: `/a/../b` is `/b`), and a path is refused when
//     an upstream could find a dot segment in it that we did not: percent-encoded (`%2e%2e`,
//     double-encoded `%252e`), hidden behind an encoded or back slash, or followed by `;`
//     (servlet containers drop `;params`: `/public/..;/private` is `/private` to them), or when it
//     carries an encoded NUL. Envoy's path normalisation refuses the same;
//   - more headers than MAX_REQUEST_HEADERS: Node would silently drop the rest.
// The ordinary request (origin-form, none of `%`, `;`, `\`, `/.` in its target) costs a char
// check and four indexOf calls.
import type { IncomingMessage } from 'node:http';
import { SwitchyardError } from './errors.js';

/** Header lines a request may have; more answers 431 (Node keeps about this many and drops the rest). */
export const MAX_REQUEST_HEADERS = 1000;

const SLASH = 47;

/**
 * Normalises `req.url` (and `Host` for an absolute-form target) in place, or returns why the
 * request is refused. Runs before the request's context is made.
 */
export function refusedRequestHead(req: IncomingMessage): SwitchyardError | undefined {
  if (req.rawHeaders.length > 2 * MAX_REQUEST_HEADERS) {
    return new SwitchyardError('SY_ERR_HEADERS_TOO_LARGE', `the request has more than ${MAX_REQUEST_HEADERS} header lines`, { details: { limit: MAX_REQUEST_HEADERS } });
  }
  const url = req.url ?? '/';
  if (url.charCodeAt(0) !== SLASH) return fromOtherForm(req, url);
  if (url.indexOf('%') === -1 && url.indexOf(';') === -1 && url.indexOf('\\') === -1 && url.indexOf('/.') === -1) return undefined;
  return normalisePath(req, url);
}

/** Absolute-form becomes origin-form; asterisk-form (`OPTIONS *`) passes; anything else is malformed. */
function fromOtherForm(req: IncomingMessage, url: string): SwitchyardError | undefined {
  if (url === '*' && req.method === 'OPTIONS') return undefined;
  const scheme = /^https?:\/\//i.exec(url);
  if (scheme === null) return badTarget('the request target is neither a path nor an absolute http(s) URL');
  const rest = url.slice(scheme[0].length);
  let end = rest.length;
  for (const stop of ['/', '?', '#']) {
    const at = rest.indexOf(stop);
    if (at !== -1 && at < end) end = at;
  }
  const authority = rest.slice(0, end);
  // No user info (RFC 9110 §4.2.4), nothing a Host header could not carry.
  if (!/^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/.test(authority)) return badTarget('the authority of an absolute-form request target is not a host[:port]');
  req.headers.host = authority;
  let target = rest.slice(end);
  if (target === '' || target.charCodeAt(0) !== SLASH) target = `/${target}`;
  req.url = target;
  return refusedRequestHead(req);
}

/** Removes plain dot segments; refuses disguised ones and encoded NUL. */
function normalisePath(req: IncomingMessage, url: string): SwitchyardError | undefined {
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  const segments = path.split('/');
  const kept: string[] = [];
  const last = segments.length - 1;
  let changed = false;
  for (let i = 1; i <= last; i++) {
    const segment = segments[i]!;
    if (segment === '.' || segment === '..') {
      changed = true;
      if (segment === '..') kept.pop();
      // `/a/b/..` is the directory `/a/`: the trailing slash stays.
      if (i === last) kept.push('');
      continue;
    }
    const problem = disguisedDotSegment(segment);
    if (problem !== undefined) return badTarget(problem);
    kept.push(segment);
  }
  if (changed) req.url = `/${kept.join('/')}${queryAt === -1 ? '' : url.slice(queryAt)}`;
  return undefined;
}

/** Why a segment would be a dot segment (or hold a NUL) to an upstream that decodes it; undefined when it would not. */
function disguisedDotSegment(segment: string): string | undefined {
  if (segment.indexOf('%') === -1 && segment.indexOf(';') === -1 && segment.indexOf('\\') === -1) return undefined;
  let decoded = segment.toLowerCase();
  // Undo any depth of encoding the percent sign itself (`%252e` is `%2e` once decoded).
  for (let rounds = 0; decoded.includes('%25'); rounds++) {
    if (rounds === 4) return 'the path is percent-encoded too many times over';
    decoded = decoded.replaceAll('%25', '%');
  }
  if (decoded.includes('%00')) return 'the path carries an encoded NUL (%00)';
  // `%c0%ae` is an overlong UTF-8 dot that some old decoders still turn into one.
  decoded = decoded.replaceAll('%2e', '.').replaceAll('%c0%ae', '.').replaceAll('%2f', '/').replaceAll('%5c', '/').replaceAll('%3b', ';').replaceAll('\\', '/');
  for (const part of decoded.split('/')) {
    const semicolon = part.indexOf(';');
    const name = semicolon === -1 ? part : part.slice(0, semicolon);
    if (name === '.' || name === '..') return 'the path has an encoded or disguised dot segment (%2e, %252e, `;` or a backslash)';
  }
  return undefined;
}

function badTarget(message: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_BAD_REQUEST', message);
}
