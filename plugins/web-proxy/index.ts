// Web proxy: `/proxy/<absolute-url>` fetches a page and streams it back with its URLs rewritten to
// come through the proxy again, refusing private and local addresses (SSRF guard).
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { pipeline, type Readable, type Transform } from 'node:stream';
import zlib from 'node:zlib';
import type { Reply, RequestContext, Route } from '../../core/index.js';
import { definePlugin } from '../../core/index.js';
import { Guard, GuardError } from './guard.js';
import { cssRewriter, htmlRewriter, proxiedUrl } from './rewrite.js';

export const NAME = 'web-proxy';

const schema = {
  type: 'object',
  properties: {
    prefix: { type: 'string', pattern: '^/[A-Za-z0-9_-]+$', default: '/proxy' },
    blockPrivate: { type: 'boolean', default: true, description: 'Refuse loopback, private, link-local and metadata addresses (after DNS resolution).' },
    allowHosts: { type: 'array', items: { type: 'string' }, default: [], description: 'Hosts allowed even on private addresses; `*.example.com` for subdomains.' },
    denyHosts: { type: 'array', items: { type: 'string' }, default: [], description: 'Hosts always refused.' },
  },
  additionalProperties: false,
} as const;

/** Request headers a page fetch passes on; the gateway's cookies and credentials stay here. */
const FORWARDED = ['accept', 'accept-language', 'user-agent', 'content-type', 'range', 'if-none-match', 'if-modified-since', 'cache-control'];
/** Response headers that would pin, restrict or confuse the proxied page on the gateway's origin. */
const DROPPED = [
  'content-security-policy', 'content-security-policy-report-only', 'strict-transport-security', 'public-key-pins',
  'public-key-pins-report-only', 'set-cookie', 'x-frame-options', 'connection', 'keep-alive', 'transfer-encoding', 'alt-svc',
  'service-worker-allowed',
];

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
      // Never contacted: the plugin fetches pages itself, so it can check every resolved address.
      upstreams: [{ url: 'http://web-proxy.invalid', weight: 1, priority: 0 }],
    });
    api.hooks.route.tap(NAME, (ctx) => (ctx.pathname.startsWith(`${prefix}/`) ? route : undefined));
    api.hooks.preRequest.tapPromise(NAME, async (ctx) => (ctx.route === route ? fetchPage(ctx, guard, prefix) : undefined));
  },
});

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

  const type = String(upstream.headers['content-type'] ?? '').toLowerCase();
  const rewriter = /text\/html|application\/xhtml\+xml/.test(type) ? htmlRewriter(target, prefix)
    : /text\/css/.test(type) ? cssRewriter(target, prefix) : undefined;
  if (!rewriter || ctx.req.method === 'HEAD' || status === 204 || status === 304) return { status, headers, body: upstream };

  const decoder = decompressor(upstream.headers['content-encoding']);
  if (decoder === null) return { status, headers, body: upstream }; // an encoding we cannot read: pass it as it came
  delete headers['content-length'];
  delete headers['content-encoding'];
  const stages: (Readable | Transform)[] = [upstream, ...(decoder ? [decoder] : []), rewriter];
  const body = stages.length === 1 ? upstream : (pipeline(stages as [Readable, Transform], () => {}) as unknown as Readable);
  return { status, headers, body };
}

/** Sends the request with the guard's lookup; a client that goes away aborts it. */
function request(ctx: RequestContext, target: URL, guard: Guard): Promise<IncomingMessage> {
  const headers: IncomingHttpHeaders = { 'accept-encoding': 'gzip, deflate, br' };
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

/** undefined: identity; null: an encoding we cannot decode. */
function decompressor(encoding: string | string[] | undefined): Transform | undefined | null {
  const value = (Array.isArray(encoding) ? encoding.join(',') : encoding ?? '').trim().toLowerCase();
  if (value === '' || value === 'identity') return undefined;
  if (value === 'gzip' || value === 'x-gzip') return zlib.createGunzip();
  if (value === 'deflate') return zlib.createInflate();
  if (value === 'br') return zlib.createBrotliDecompress();
  return null;
}
