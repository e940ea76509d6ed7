// Cross-origin resource sharing: answers preflight OPTIONS requests itself (they never reach the
// upstream) and puts the Access-Control-* headers on every response, refusals included.
import type { OutgoingHttpHeaders } from 'node:http';
import { definePlugin, Stage, type RequestContext, HTTP_TOKEN_PATTERN } from '../../core/index.js';

export const name = 'cors';

// `*`, `reflect`, an origin (`https://app.example.com`, port allowed), or a subdomain wildcard
// (`https://*.example.com`; without a scheme any scheme matches). Never a path, never a trailing slash.
const ORIGIN = '^(\\*|reflect|([a-z][a-z0-9+.-]*://)?(\\*\\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\\d{1,5})?)$';

export const schema = {
  type: 'object',
  properties: {
    origins: { type: 'array', minItems: 1, items: { type: 'string', pattern: ORIGIN }, default: ['*'] },
    methods: { type: 'array', items: { type: 'string', pattern: HTTP_TOKEN_PATTERN }, default: ['GET', 'HEAD', 'PUT', 'PATCH', 'POST', 'DELETE'] },
    headers: {
      type: 'array',
      items: { type: 'string', pattern: HTTP_TOKEN_PATTERN },
      default: [],
      description: 'request headers allowed; empty: whatever the preflight asks for',
    },
    exposeHeaders: { type: 'array', items: { type: 'string', pattern: HTTP_TOKEN_PATTERN }, default: [] },
    credentials: { type: 'boolean', default: false },
    maxAge: { type: 'integer', minimum: 0, default: 600, description: 'seconds a browser may cache a preflight answer' },
  },
  additionalProperties: false,
} as const;

export default definePlugin<typeof schema>({
  name,
  schema,
  setup(api, options) {
    const allows = originMatcher(options.origins);
    const anyOrigin = options.origins.includes('*') && !options.credentials;
    // With `*` and no credentials every origin gets the same answer; otherwise it depends on Origin.
    const varies = !anyOrigin;
    const common: Record<string, string> = {};
    if (options.credentials) common['access-control-allow-credentials'] = 'true';
    if (options.exposeHeaders.length > 0) common['access-control-expose-headers'] = options.exposeHeaders.join(', ');

    const headersFor = (origin: string | undefined): Record<string, string> | undefined => {
      if (origin === undefined || !allows(origin)) return undefined;
      // Echoing `null` (sandboxed frames, file: pages) would hand them credentialed access.
      if (!anyOrigin && origin === 'null') return undefined;
      return { 'access-control-allow-origin': anyOrigin ? '*' : origin, ...common };
    };

    // Before AUTH: a preflight carries no credentials, so it is answered before anyone asks for them.
    api.hooks.access.tap({ name, stage: Stage.AUTH - 100 }, (ctx) => {
      const origin = originOf(ctx);
      if (ctx.req.method !== 'OPTIONS' || origin === undefined || ctx.req.headers['access-control-request-method'] === undefined) return undefined;
      return { status: 204, headers: { ...preflight(ctx, headersFor(origin), options), vary: preflightVary(varies, options.headers.length === 0) } };
    });

    // Every other answer (upstream, cache hit, refusal, error, 404) gets this request's origin's
    // headers: an upstream's own Access-Control-* never stay (never two Allow-Origin values), a
    // hit filled for another origin is fixed, and Origin joins whatever Vary the answer has.
    api.hooks.beforeSend.tap({ name, stage: Stage.DEFAULT }, (ctx) => {
      if (ctx.answeredBy === 'access' && ctx.req.method === 'OPTIONS' && ctx.req.headers['access-control-request-method'] !== undefined) return;
      const headers = ctx.response!.headers;
      for (const header in headers) if (header.startsWith('access-control-')) delete headers[header];
      const ours = headersFor(originOf(ctx));
      if (ours) Object.assign(headers, ours);
      if (varies) headers.vary = addVary(headers.vary, 'Origin');
    });
  },
});

function originOf(ctx: RequestContext): string | undefined {
  const origin = ctx.req.headers.origin;
  return typeof origin === 'string' && origin !== '' ? origin : undefined;
}

/** The preflight answer: the allowed origin and what it may send, or nothing when not allowed. */
function preflight(ctx: RequestContext, allowed: Record<string, string> | undefined, options: { methods: readonly string[]; headers: readonly string[]; maxAge: number }): OutgoingHttpHeaders {
  if (!allowed) return { 'content-length': 0 };
  const requested = ctx.req.headers['access-control-request-headers'];
  const headers = options.headers.length > 0 ? options.headers.join(', ') : typeof requested === 'string' ? requested : undefined;
  const out: OutgoingHttpHeaders = {
    ...allowed,
    'access-control-allow-methods': options.methods.join(', '),
    'access-control-max-age': String(options.maxAge),
    'content-length': 0,
  };
  if (headers) out['access-control-allow-headers'] = headers;
  return out;
}

function preflightVary(varies: boolean, reflectsHeaders: boolean): string {
  const names = varies ? ['Origin'] : [];
  names.push('Access-Control-Request-Method');
  if (reflectsHeaders) names.push('Access-Control-Request-Headers');
  return names.join(', ');
}

export function addVary(current: OutgoingHttpHeaders[string], header: string): string {
  const existing = current === undefined ? [] : (Array.isArray(current) ? current.join(',') : String(current)).split(',').map((v) => v.trim()).filter(Boolean);
  if (existing.includes('*') || existing.some((v) => v.toLowerCase() === header.toLowerCase())) return existing.join(', ');
  return [...existing, header].join(', ');
}

/** Origins are compared case-insensitively on scheme and host, exactly otherwise. */
export function originMatcher(patterns: readonly string[]): (origin: string) => boolean {
  if (patterns.includes('*') || patterns.includes('reflect')) return () => true;
  const exact = new Set<string>();
  const wildcards: { scheme: string | undefined; suffix: string }[] = [];
  for (const pattern of patterns.map((p) => p.toLowerCase())) {
    const star = pattern.indexOf('*.');
    if (star === -1) exact.add(pattern);
    else wildcards.push({ scheme: star > 0 ? pattern.slice(0, star) : undefined, suffix: pattern.slice(star + 1) });
  }
  return (given) => {
    const origin = given.toLowerCase();
    const sep = origin.indexOf('://');
    if (sep === -1) return false;
    const scheme = origin.slice(0, sep + 3);
    const host = origin.slice(sep + 3);
    // An entry without a scheme (`app.example.com`) stands for that host on any scheme.
    if (exact.has(origin) || exact.has(host)) return true;
    // `*.example.com` covers a.example.com and a.b.example.com, not example.com or badexample.com.
    return wildcards.some((w) => (w.scheme === undefined || w.scheme === scheme) && host.endsWith(w.suffix) && host.length > w.suffix.length);
  };
}
