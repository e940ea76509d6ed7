// TMDB credentials for clients that have none: a v3 key goes upstream as the `api_key` query
// parameter, a v4 read-access token as `Authorization: Bearer`. A client's own key is left alone.
import { definePlugin, Stage } from '../../core/index.js';

const NAME = 'tmdb-key';

/** TMDB's v3 query parameter. The cache keeps it out of keys (excludeQueryParams) and logs mask it. */
const PARAM = 'api_key';

// Option names contain `key` / `token`, so GET /config shows them as ***.
const schema = {
  type: 'object',
  properties: {
    apiKey: { type: 'string', minLength: 1, pattern: '^\\S+$', description: 'v3 API key, sent as ?api_key= when the client sent none.' },
    readAccessToken: { type: 'string', minLength: 1, pattern: '^\\S+$', description: 'v4 read-access token, sent as Authorization: Bearer when the client sent no Authorization.' },
  },
  additionalProperties: false,
} as const;

export default definePlugin({
  name: NAME,
  schema,
  setup(api, options) {
    const { apiKey, readAccessToken } = options;
    if (apiKey === undefined && readAccessToken === undefined) throw new Error(`${NAME}: give options.apiKey (v3) or options.readAccessToken (v4)`);
    const secrets = [apiKey, readAccessToken, apiKey && encodeURIComponent(apiKey)].filter((s): s is string => !!s && s.length >= 4);

    // Stage.AUTH: before anything that might copy the outgoing request (signing, logging taps).
    api.hooks.preRequest.tap({ name: NAME, stage: Stage.AUTH }, (ctx) => {
      if (apiKey !== undefined && !hasParam(ctx.outgoing.path, PARAM)) ctx.outgoing.path = appendParam(ctx.outgoing.path, PARAM, apiKey);
      if (readAccessToken !== undefined && ctx.outgoing.headers.authorization === undefined) ctx.outgoing.headers.authorization = `Bearer ${readAccessToken}`;
      return undefined;
    });

    // TMDB does not echo credentials, but a redirect's Location could carry the injected query;
    // the client must never see it (the proxy puts it back on the next request).
    api.hooks.postResponse.tap({ name: NAME, stage: Stage.AUTH }, (ctx) => {
      const headers = ctx.response!.headers;
      for (const [header, value] of Object.entries(headers)) {
        if (value === undefined || typeof value === 'number') continue;
        const scrubbed = Array.isArray(value) ? value.map((v) => scrub(v, secrets)) : scrub(value, secrets);
        if (String(scrubbed) !== String(value)) headers[header] = scrubbed;
      }
    });
  },
});

function scrub(value: string, secrets: readonly string[]): string {
  let out = value;
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join('***');
  return out;
}

/** True when the query has `name=` (with a value), however the client encoded the name. */
export function hasParam(path: string, name: string): boolean {
  const q = path.indexOf('?');
  if (q === -1) return false;
  return path.slice(q + 1).split('&').some((pair) => {
    const eq = pair.indexOf('=');
    return eq > 0 && decodeName(pair.slice(0, eq)) === name && eq < pair.length - 1;
  });
}

/**
 * Appends `name=value`, dropping empty `name=` pairs the client sent; its other parameters go out
 * byte for byte.
 */
function appendParam(path: string, name: string, value: string): string {
  const pair = `${name}=${encodeURIComponent(value)}`;
  const q = path.indexOf('?');
  if (q === -1) return `${path}?${pair}`;
  const kept = path.slice(q + 1).split('&').filter((p) => p !== '' && decodeName(p.split('=')[0]!) !== name);
  return `${path.slice(0, q)}?${[...kept, pair].join('&')}`;
}

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}
