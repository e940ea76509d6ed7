// Web proxy: `/proxy/<absolute-url>` fetches a page and streams it back with its URLs rewritten to
// come through the proxy again, refusing private and local addresses (SSRF guard).
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Readable, Transform } from 'node:stream';
import zlib from 'node:zlib';
import type { Reply, RequestContext, Route } from '../../core/index.js';
import { definePlugin, pipeChain } from '../../core/index.js';
import { Guard, GuardError } from './guard.js';
import { cssRewriter, headerCharset, htmlRewriter, proxiedUrl, rewriteRefresh } from './rewrite.js';

export const NAME = 'web-proxy';

// A host (`example.com`, an international name, an IPv4 address), `*.domain`, `[IPv6]` or a bare
// IPv6 address, each with an optional `:port`; checked again, and normalised, by parseHostPattern().
const PORT = '(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?';
const HOST_ENTRY = `^((\\*\\.)?[^\\s/?#@\\\\:\\[\\]*]+${PORT}|\\[[0-9A-Fa-f:.]+\\]${PORT}|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$`;

const schema = {
  type: 'object',
  properties: {
    prefix: { type: 'string', pattern: '^/[A-Za-z0-9_-]+$', default: '/proxy' },
    blockPrivate: { type: 'boolean', default: true, description: 'Refuse loopback, private, link-local and metadata addresses (after DNS resolution).' },
    allowHosts: { type: 'array', items: { type: 'string', pattern: HOST_ENTRY }, default: [], description: 'Hosts allowed even on private addresses; `*.example.com` for subdomains, `host:port` for one port.' },
    denyHosts: { type: 'array', items: { type: 'string', pattern: HOST_ENTRY }, default: [], description: 'Hosts always refused (same forms).' },
  },
  additionalProperties: false,
} as const;

/** Request headers a page fetch passes on; the gateway's cookies and credentials stay here. */
const FORWARDED = ['accept', 'accept-language', 'user-agent', 'content-type', 'range', 'if-none-match', 'if-modified-since', 'cache-control'];
/**
 * Response headers that would pin, restrict, wipe or confuse the proxied page on the gateway's
 * origin, or report on it to the site behind the user's back.
 */
const DROPPED = [
  'content-security-policy', 'content-security-policy-report-only', 'strict-transport-security', 'public-key-pins',
  'public-key-pins-report-only', 'set-cookie', 'x-frame-options', 'connection', 'keep-alive', 'transfer-encoding', 'alt-svc',
  'service-worker-allowed', 'clear-site-data', 'nel', 'report-to', 'reporting-endpoints',
];
/** Encodings the proxy can decode, so the only ones it asks a site for. */
const DECODABLE = ['gzip', 'deflate', 'br'];

/**
 * On every answer of the web proxy. A proxied page is served from the gateway's own origin, the
 * origin of /admin; the sandbox, without `allow-same-origin`, gives it an opaque origin instead,
 * so its scripts cannot read the gateway's storage or cookies, nor call its APIs as it, nor
 * register a service worker. What a browsing page needs (scripts, forms, popups, dialogs,
 * downloads) stays allowed.
 */
export const SANDBOX = 'sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-modals allow-downloads';

export default definePlugin<typeof schema>({
  name: NAME,
  schema,
  setup(api, options) {
    const guard = new Guard(options);
    const prefix = options.prefix;
    const route: Route = api.createRoute({
      name: NAME, match: { pathPrefix: prefix }, stripPrefix: false, preserveHost: false, websocket: false, plugins: [],
      // Proxied pages get the proxy's policy (the sandbox below), not the gateway's pages' one.
      foreignContent: true,
      // Never contacted: the plugin fetches pages itself, so it can check every resolved address.
      upstreams: [{ url: 'http://web-proxy.invalid', weight: 1, priority: 0 }],
    });
    api.hooks.route.tap(NAME, (ctx) => (ctx.pathname.startsWith(`${prefix}/`) ? route : undefined));
    api.hooks.preRequest.tapPromise(NAME, async (ctx) => {
      if (ctx.route !== route) return undefined;
      return isPreflight(ctx) ? preflight(ctx) : fetchPage(ctx, guard, prefix);
    });
  },
});

/**
 * A proxied page runs in an opaque origin, so its own fetch and XHR calls to its site (now
 * /proxy/ URLs) are cross-origin requests: they are allowed to read the answers. The proxy never
 * forwards credentials, so this shows nothing a plain request to /proxy/ would not.
 */
function isPreflight(ctx: RequestContext): boolean {
  return ctx.req.method === 'OPTIONS' && ctx.req.headers.origin !== undefined && ctx.req.headers['access-control-request-method'] !== undefined;
}

function preflight(ctx: RequestContext): Reply {
  ctx.setResponseHeader('content-security-policy', SANDBOX);
  const headers: OutgoingHttpHeaders = {
    'access-control-allow-origin': '*',
    'access-control-allow-methods': String(ctx.req.headers['access-control-request-method']),
    'access-control-max-age': '600',
  };
  const asked = ctx.req.headers['access-control-request-headers'];
  if (typeof asked === 'string') headers['access-control-allow-headers'] = asked;
  return { status: 204, headers };
}

function refuse(status: number, code: string, error: string): Reply {
  return { status, json: { error, code } };
}

async function fetchPage(ctx: RequestContext, guard: Guard, prefix: string): Promise<Reply> {
  ctx.setResponseHeader('content-security-policy', SANDBOX);
  // A browser asks for a service worker's script with this header; a proxied site must never get
  // one installed on the gateway's origin (the sandbox already keeps its pages from asking).
  if (ctx.req.headers['service-worker'] !== undefined) return refuse(403, 'SY_WEB_PROXY_BLOCKED', 'service workers cannot be registered through the web proxy');
  // Browsers and some clients squeeze `//` to `/` in paths: put the scheme's slashes back.
  const raw = ctx.url.slice(prefix.length + 1).replace(/^(https?):\/(?!\/)/i, '$1://');
  let target: URL;
  try {
    target = new URL(raw);
  } catch {
    return refuse(400, 'SY_WEB_PROXY_BAD_URL', `"${raw.slice(0, 200)}" is not an absolute URL; use ${prefix}/https://example.com/`);
  }
  try {
    guard.checkUrl(target);
  } catch (err) {
    if (err instanceof GuardError) return refuse(403, 'SY_WEB_PROXY_BLOCKED', err.message);
    throw err;
  }

  let upstream: IncomingMessage;
  try {
    upstream = await request(ctx, target, guard);
  } catch (err) {
    if (err instanceof GuardError) return refuse(403, 'SY_WEB_PROXY_BLOCKED', err.message);
    return refuse(502, 'SY_WEB_PROXY_UNREACHABLE', `could not fetch ${target.origin}: ${(err as Error).message}`);
  }

  const status = upstream.statusCode ?? 502;
  const headers: OutgoingHttpHeaders = { ...upstream.headers };
  for (const name of DROPPED) delete headers[name];
  for (const name of Object.keys(headers)) if (name.startsWith('access-control-')) delete headers[name];
  headers['access-control-allow-origin'] = '*';
  // Preloads and refreshes name URLs too; left as they are they would reach the gateway's root.
  if (typeof headers.link === 'string') headers.link = headers.link.replace(/<([^>]*)>/g, (_, url: string) => `<${proxiedUrl(url, target, prefix)}>`);
  if (typeof headers.refresh === 'string') headers.refresh = rewriteRefresh(headers.refresh, target, prefix);
  if (typeof headers['content-location'] === 'string') headers['content-location'] = proxiedUrl(headers['content-location'], target, prefix);

  const location = upstream.headers.location;
  if (location) {
    let next: URL;
    try {
      next = new URL(location, target);
      // Every hop is checked: a public page must not bounce the proxy to a private address.
      await guard.checkResolved(next);
    } catch (err) {
      upstream.destroy();
      if (err instanceof GuardError) return refuse(403, 'SY_WEB_PROXY_BLOCKED', `redirect refused: ${err.message}`);
      return refuse(502, 'SY_WEB_PROXY_BAD_REDIRECT', 'the page redirected to an unusable Location');
    }
    headers.location = proxiedUrl(next.href, target, prefix);
  }

  const type = String(upstream.headers['content-type'] ?? '');
  const charset = headerCharset(type);
  const rewriter = /text\/html|application\/xhtml\+xml/i.test(type) ? htmlRewriter(target, prefix, { charset })
    : /text\/css/i.test(type) ? cssRewriter(target, prefix, charset) : undefined;
  const encoding = contentEncoding(upstream.headers['content-encoding']);
  const passThrough = !rewriter || ctx.req.method === 'HEAD' || status === 204 || status === 304;
  // A body passed on must be in an encoding the client accepts; one to rewrite must be read.
  if (passThrough && (encoding === '' || accepts(ctx.req.headers['accept-encoding'], encoding))) return { status, headers, body: upstream };
  const decoder = decompressor(encoding);
  if (decoder === null) return { status, headers, body: upstream }; // an encoding we cannot read: pass it as it came
  delete headers['content-length'];
  delete headers['content-encoding'];
  if (passThrough) return { status, headers, body: decoder ? piped([upstream, decoder]) : upstream };
  // The rewriter sends the page on as UTF-8, whatever charset it came in.
  headers['content-type'] = `${type.split(';')[0]!.trim()}; charset=utf-8`;
  return { status, headers, body: piped(decoder ? [upstream, decoder, rewriter!] : [upstream, rewriter!]) };
}

/**
 * The last of `stages`, fed by the others; a failure or an early close of any destroys them all
 * (the core then ends the answer). pipeChain(), not pipeline(): Node 20's builds errors on success.
 */
function piped(stages: [Readable, ...Transform[]]): Readable {
  pipeChain(stages, () => {});
  return stages[stages.length - 1]!;
}

/** Sends the request with the guard's lookup; a client that goes away aborts it. */
function request(ctx: RequestContext, target: URL, guard: Guard): Promise<IncomingMessage> {
  const headers: IncomingHttpHeaders = {};
  const encodings = DECODABLE.filter((encoding) => accepts(ctx.req.headers['accept-encoding'], encoding));
  // What the client takes, where we can also read it (to rewrite it, or for a client that does not).
  if (encodings.length > 0) headers['accept-encoding'] = encodings.join(', ');
  for (const name of FORWARDED) if (ctx.req.headers[name] !== undefined) headers[name] = ctx.req.headers[name];
  const lib = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(target, { method: ctx.req.method, headers, lookup: guard.lookupFor(target), timeout: ctx.route!.timeouts.firstByte }, resolve);
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    ctx.res.once('close', () => req.destroy());
    if (ctx.req.method === 'GET' || ctx.req.method === 'HEAD') req.end();
    else ctx.req.pipe(req);
  });
}

/** The Content-Encoding of a response, lower case; '' for none or identity. */
function contentEncoding(header: string | string[] | undefined): string {
  const value = (Array.isArray(header) ? header.join(',') : header ?? '').trim().toLowerCase();
  return value === 'identity' ? '' : value === 'x-gzip' ? 'gzip' : value;
}

/** Whether an Accept-Encoding header takes `encoding` (q > 0, by name or by `*`). */
function accepts(header: string | string[] | undefined, encoding: string): boolean {
  let star = false;
  for (const item of (Array.isArray(header) ? header.join(',') : header ?? '').split(',')) {
    const [name, ...params] = item.trim().toLowerCase().split(';');
    const q = params.map((p) => /^\s*q\s*=\s*([\d.]+)/.exec(p)?.[1]).find((v) => v !== undefined);
    const taken = q === undefined || Number(q) > 0;
    if (name === encoding) return taken;
    if (name === '*') star = taken;
  }
  return star;
}

/** undefined: identity; null: an encoding we cannot decode. */
function decompressor(encoding: string): Transform | undefined | null {
  if (encoding === '') return undefined;
  if (encoding === 'gzip') return zlib.createGunzip();
  if (encoding === 'deflate') return zlib.createInflate();
  if (encoding === 'br') return zlib.createBrotliDecompress();
  return null;
}
