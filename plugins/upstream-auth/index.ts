// Adds the upstream's credentials (Basic, Bearer, a header or a query parameter) to every forwarded
// request, after removing any value the client sent for the same header or parameter.
import { definePlugin, Stage, HTTP_TOKEN_PATTERN } from '../../core/index.js';

export const name = 'upstream-auth';

// A credential is written into a request head: no control characters, no line breaks.
const HEAD_SAFE = '^[^\\x00-\\x1f\\x7f]+$';

// Option names that hold secrets (password, token, secret) are ones the core redacts in /config.
export const schema = {
  type: 'object',
  properties: {
    basic: {
      type: 'object',
      properties: {
        username: { type: 'string', minLength: 1, pattern: '^[^:\\x00-\\x1f\\x7f]+$' },
        password: { type: 'string', pattern: '^[^\\x00-\\x1f\\x7f]*$' },
      },
      required: ['username', 'password'],
      additionalProperties: false,
    },
    bearer: {
      type: 'object',
      properties: { token: { type: 'string', minLength: 1, pattern: HEAD_SAFE } },
      required: ['token'],
      additionalProperties: false,
    },
    header: {
      type: 'object',
      properties: {
        name: { type: 'string', pattern: HTTP_TOKEN_PATTERN },
        secret: { type: 'string', minLength: 1, pattern: HEAD_SAFE },
      },
      required: ['name', 'secret'],
      additionalProperties: false,
    },
    query: {
      type: 'object',
      properties: {
        name: { type: 'string', minLength: 1 },
        secret: { type: 'string', minLength: 1 },
      },
      required: ['name', 'secret'],
      additionalProperties: false,
    },
    scrubResponse: {
      type: 'boolean',
      default: true,
      description: 'replace the credential with *** in any response header that echoes it',
    },
  },
  additionalProperties: false,
} as const;

export default definePlugin<typeof schema>({
  name,
  schema,
  setup(api, options) {
    const headers = new Map<string, string>();
    if (options.basic && options.bearer) throw new Error('upstream-auth: give either "basic" or "bearer": both set Authorization');
    if (options.basic) headers.set('authorization', `Basic ${Buffer.from(`${options.basic.username}:${options.basic.password}`).toString('base64')}`);
    if (options.bearer) headers.set('authorization', `Bearer ${options.bearer.token}`);
    if (options.header) headers.set(options.header.name.toLowerCase(), options.header.secret);
    if (headers.size === 0 && !options.query) throw new Error('upstream-auth: give one of "basic", "bearer", "header" or "query"');
    const query = options.query;
    const secrets = secretForms(options);

    api.hooks.preRequest.tap({ name, stage: Stage.AUTH }, (ctx) => {
      for (const [header, value] of headers) ctx.outgoing.headers[header] = value;
      if (query) ctx.outgoing.path = withParam(ctx.outgoing.path, query.name, query.secret);
      return undefined;
    });

    if (options.scrubResponse) {
      api.hooks.postResponse.tap({ name, stage: Stage.OBSERVE }, (ctx) => {
        const response = ctx.response!.headers;
        for (const [header, value] of Object.entries(response)) {
          if (value === undefined) continue;
          const scrubbed = Array.isArray(value) ? value.map((v) => scrub(v, secrets)) : scrub(String(value), secrets);
          if (String(scrubbed) !== String(value)) response[header] = scrubbed;
        }
      });
    }
  },
});

/** Every spelling of the credential that could come back in a response header. */
function secretForms(options: { basic?: { username: string; password: string }; bearer?: { token: string }; header?: { secret: string }; query?: { secret: string } }): string[] {
  const forms = new Set<string>();
  if (options.basic) {
    forms.add(Buffer.from(`${options.basic.username}:${options.basic.password}`).toString('base64'));
    forms.add(options.basic.password);
  }
  if (options.bearer) forms.add(options.bearer.token);
  if (options.header) forms.add(options.header.secret);
  if (options.query) {
    forms.add(options.query.secret);
    forms.add(encodeURIComponent(options.query.secret));
  }
  // Longest first, so a secret contained in another is replaced inside the longer one first.
  // Very short values (an empty password) would mangle unrelated headers and hide nothing.
  return [...forms].filter((form) => form.length >= 4).sort((a, b) => b.length - a.length);
}

function scrub(value: string, secrets: readonly string[]): string {
  let out = value;
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join('***');
  return out;
}

/**
 * `path` with every `name=` parameter removed (however the client encoded the name) and
 * `name=value` appended; the other parameters go out byte for byte.
 */
export function withParam(path: string, name: string, value: string): string {
  const q = path.indexOf('?');
  const base = q === -1 ? path : path.slice(0, q);
  const kept = q === -1 ? [] : path.slice(q + 1).split('&').filter((pair) => pair !== '' && paramName(pair) !== name);
  kept.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`);
  return `${base}?${kept.join('&')}`;
}

function paramName(pair: string): string {
  const eq = pair.indexOf('=');
  const raw = (eq === -1 ? pair : pair.slice(0, eq)).replace(/\+/g, ' ');
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
