// Confluence attachments through a proxy that holds the credentials: only attachment and thumbnail
// downloads pass; a login page or HTML error where a file was expected becomes a 502 JSON error
// (never cached); optionally only listed page ids or spaces are served.
import { Transform } from 'node:stream';
import { definePlugin, Stage, type RequestContext } from '../../core/index.js';

const NAME = 'confluence-guard';

const strings = (description: string) => ({ type: 'array', items: { type: 'string', minLength: 1 }, default: [], description } as const);

const schema = {
  type: 'object',
  properties: {
    allowPageIds: strings('Only these page ids are served (with allowSpaceKeys: these or pages in those spaces). Empty: every page.'),
    allowSpaceKeys: strings("Only pages in these spaces are served; the page's space is looked up once per spaceTtl."),
    spaceTtl: { type: 'integer', minimum: 1, default: 300, description: 'Seconds a page → space lookup is remembered.' },
    loginMarkers: {
      ...strings('A redirect whose Location contains one of these is a login page.'),
      default: ['/login.action', '/dologin.action', '/login', 'os_destination=', '/plugins/servlet/samlsso', 'id.atlassian.com'],
    },
  },
  additionalProperties: false,
} as const;

/** `/download/attachments/<pageId>/<file>` and `/download/thumbnails/<pageId>/<file>` below the base. */
const ATTACHMENT = /\/download\/(?:attachments|thumbnails)\/(\d+)\/[^/?]+(?:\?|$)/;

interface SpaceLookup {
  space: string | undefined;
  until: number;
}

export const errors = {
  CONFLUENCE_NOT_AN_ATTACHMENT: { status: 404, message: 'only /download/attachments/<pageId>/<file> and /download/thumbnails/<pageId>/<file> are served' },
  CONFLUENCE_PAGE_NOT_ALLOWED: { status: 403, message: "the page is not on this proxy's allowlist" },
  CONFLUENCE_CREDENTIALS_REFUSED: { status: 502, message: "Confluence refused the proxy's credentials; check CONFLUENCE_USERNAME and CONFLUENCE_API_TOKEN or CONFLUENCE_PAT" },
} as const;

export default definePlugin({
  name: NAME,
  schema,
  errors,
  setup(api, options) {
    const pageIds = new Set(options.allowPageIds);
    const spaceKeys = new Set(options.allowSpaceKeys.map((k) => k.toUpperCase()));
    const restricted = pageIds.size > 0 || spaceKeys.size > 0;
    const spaces = api.state(() => new Map<string, SpaceLookup>(), 'spaces');

    // Anything but a file download would hand the proxy's credentials to anonymous clients.
    api.hooks.access.tap({ name: NAME, stage: Stage.AUTH + 1 }, (ctx) => {
      const pageId = pageIdOf(ctx.outgoing.path);
      if (pageId === undefined) return ctx.refuse('CONFLUENCE_NOT_AN_ATTACHMENT');
      if (restricted && !pageIds.has(pageId) && spaceKeys.size === 0) return ctx.refuse('CONFLUENCE_PAGE_NOT_ALLOWED', { message: `page ${pageId} is not on this proxy's allowlist` });
      return undefined;
    });

    // The space check needs the credentials, which upstream-auth adds at preRequest (Stage.AUTH).
    if (spaceKeys.size > 0) {
      api.hooks.preRequest.tapPromise({ name: NAME, stage: Stage.DEFAULT }, async (ctx) => {
        const pageId = pageIdOf(ctx.outgoing.path)!;
        if (pageIds.has(pageId)) return undefined;
        const space = await spaceOf(ctx, pageId, spaces, options.spaceTtl);
        if (space !== undefined && spaceKeys.has(space.toUpperCase())) return undefined;
        return ctx.refuse('CONFLUENCE_PAGE_NOT_ALLOWED', { message: `page ${pageId} is not in an allowed space` });
      });
    }

    // Before the cache (Stage.OBSERVE) looks at the status: a 502 is never stored.
    api.hooks.postResponse.tap({ name: NAME, stage: Stage.AUTH }, (ctx) => {
      const response = ctx.response!;
      const why = refusal(response.status, response.headers, options.loginMarkers);
      if (!why) return;
      api.log.warn({ requestId: ctx.id, status: response.status, why }, 'Confluence refused the proxy credentials');
      const body = JSON.stringify({
        error: `Confluence refused the proxy's credentials (${why}); check CONFLUENCE_USERNAME and CONFLUENCE_API_TOKEN or CONFLUENCE_PAT`,
        code: 'CONFLUENCE_CREDENTIALS_REFUSED',
        requestId: ctx.id,
      });
      response.status = 502;
      response.headers = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-request-id': ctx.id };
      ctx.transformResponseBody(replaceWith(body));
      response.headers['content-length'] = String(Buffer.byteLength(body));
    });
  },
});

function pageIdOf(path: string): string | undefined {
  return ATTACHMENT.exec(path)?.[1];
}

/** Why a response is Confluence turning the proxy away rather than a file, or undefined. */
export function refusal(status: number, headers: Record<string, unknown>, loginMarkers: readonly string[]): string | undefined {
  if (status === 401 || status === 403) return `status ${status}`;
  if (status >= 300 && status < 400) {
    const location = String(headers.location ?? '');
    if (loginMarkers.some((marker) => location.includes(marker))) return 'redirect to the login page';
    return undefined;
  }
  // An attachment that is itself HTML comes with Content-Disposition; a login or error page does not.
  const type = String(headers['content-type'] ?? '').toLowerCase();
  if (status < 300 && type.startsWith('text/html') && headers['content-disposition'] === undefined) return 'an HTML page where a file was expected';
  return undefined;
}

/** Drops the upstream's body and sends `body` instead. */
function replaceWith(body: string): Transform {
  return new Transform({
    transform(_chunk, _enc, done) {
      done();
    },
    flush(done) {
      done(null, body);
    },
  });
}

/** The page's space key, asked of Confluence's REST API with the proxy's credentials. */
async function spaceOf(ctx: RequestContext, pageId: string, cache: Map<string, SpaceLookup>, ttl: number): Promise<string | undefined> {
  const known = cache.get(pageId);
  if (known && known.until > Date.now()) return known.space;
  const base = ctx.upstream!.url.replace(/\/+$/, '');
  const auth = ctx.outgoing.headers.authorization;
  let space: string | undefined;
  try {
    const res = await fetch(`${base}/rest/api/content/${pageId}?expand=space`, {
      headers: { accept: 'application/json', ...(typeof auth === 'string' ? { authorization: auth } : {}) },
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    if (res.ok) space = ((await res.json()) as { space?: { key?: string } }).space?.key;
    else await res.arrayBuffer();
  } catch {
    space = undefined;
  }
  if (cache.size > 10_000) cache.clear();
  cache.set(pageId, { space, until: Date.now() + ttl * 1000 });
  return space;
}
