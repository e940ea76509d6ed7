// Clients must present one of the configured API keys (X-API-Key or Authorization: Bearer):
// missing → 401, wrong → 403, both as JSON errors. The key stays with the proxy; the upstream never sees it.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { definePlugin, Stage, type Consumer, HTTP_TOKEN_PATTERN } from '../../core/index.js';

export const name = 'api-key';


export const schema = {
  type: 'object',
  properties: {
    keys: {
      type: 'array',
      minItems: 1,
      description: 'accepted keys; `name` (default key-<n>) is what logs and per-key limits see',
      items: {
        type: 'object',
        properties: {
          name: { type: 'string', pattern: '^[\\w.@:-]{1,64}$' },
          key: { type: 'string', minLength: 1, pattern: '^[\\x21-\\x7e]+$' },
        },
        required: ['key'],
        additionalProperties: false,
      },
    },
    header: { type: 'string', pattern: HTTP_TOKEN_PATTERN, default: 'X-API-Key' },
    bearer: { type: 'boolean', default: true, description: 'also accept Authorization: Bearer <key>' },
    publicPaths: {
      type: 'array',
      items: { type: 'string', pattern: '^/' },
      default: [],
      description: 'paths that need no key: exact, or a prefix ending in *',
    },
    hideCredentials: { type: 'boolean', default: true, description: 'remove the client key from the forwarded request' },
  },
  required: ['keys'],
  additionalProperties: false,
} as const;

export const errors = {
  SY_ERR_API_KEY_MISSING: { status: 401, message: 'this route needs an API key (api-key plugin)' },
  SY_ERR_API_KEY_INVALID: { status: 403, message: 'the API key is not valid (api-key plugin)' },
} as const;

export default definePlugin<typeof schema>({
  name,
  schema,
  errors,
  setup(api, options) {
    const keys = options.keys.map((entry, index) => {
      const keyName = entry.name ?? `key-${index + 1}`;
      return { name: keyName, digest: sha256(entry.key), consumer: { id: `${name}:${keyName}`, name: keyName, source: name } };
    });
    assertDistinct(keys);
    const header = options.header.toLowerCase();
    const isPublic = pathMatcher(options.publicPaths);
    const missingMessage = `an API key is required (${options.header} header${options.bearer ? ' or Authorization: Bearer' : ''})`;
    const challenge = options.bearer ? { 'www-authenticate': 'Bearer realm="switchyard"' } : undefined;

    api.hooks.access.tap({ name, stage: Stage.AUTH }, (ctx) => {
      if (isPublic(ctx.pathname)) return undefined;
      const presented = presentedKey(ctx.req.headers, header, options.bearer);
      if (presented === undefined) return ctx.refuse('SY_ERR_API_KEY_MISSING', { message: missingMessage, headers: challenge });
      const match = findKey(keys, presented.value);
      if (!match) return ctx.refuse('SY_ERR_API_KEY_INVALID', { message: 'the API key is not valid' });
      ctx.consumer = match.consumer;
      ctx.logField('apiKey', match.name);
      // Removed in `access`, not `preRequest`: a credential another plugin injects in preRequest
      // (upstream-auth setting Authorization) must not be removed after the fact.
      if (options.hideCredentials) delete ctx.outgoing.headers[presented.from];
      return undefined;
    });
  },
});

interface Key {
  readonly name: string;
  readonly digest: Buffer;
  /** Made once per key: every request with this key carries the same object. */
  readonly consumer: Consumer;
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** The key the client sent and the header it came in, or undefined when there is none. */
function presentedKey(headers: IncomingHttpHeaders, header: string, bearer: boolean): { value: string; from: string } | undefined {
  const direct = header === 'authorization' ? undefined : headers[header];
  if (typeof direct === 'string' && direct.trim() !== '') return { value: direct.trim(), from: header };
  if (bearer || header === 'authorization') {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(headers.authorization ?? '');
    if (match) return { value: match[1]!, from: 'authorization' };
  }
  return undefined;
}

// Hashing both sides gives equal-length buffers for timingSafeEqual, and every configured key is
// compared (no early exit), so the time taken says nothing about which key came close.
function findKey(keys: readonly Key[], presented: string): Key | undefined {
  const digest = sha256(presented);
  let found: Key | undefined;
  for (const key of keys) if (timingSafeEqual(key.digest, digest) && !found) found = key;
  return found;
}

// The core has already turned the path into the one the upstream gets: dot segments removed,
// disguised ones (`%2e%2e`, `..;`, `%00`) refused with 400 (core/request-head.ts). So
// `/public/../admin` is matched as `/admin`, which is what is forwarded.
function pathMatcher(patterns: readonly string[]): (path: string) => boolean {
  const exact = new Set(patterns.filter((p) => !p.endsWith('*')));
  const prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
  return (path) => exact.has(path) || prefixes.some((prefix) => path.startsWith(prefix));
}

function assertDistinct(keys: readonly Key[]): void {
  const names = new Set<string>();
  const digests = new Set<string>();
  for (const [index, key] of keys.entries()) {
    if (names.has(key.name)) throw new Error(`api-key: keys[${index}].name "${key.name}" is used twice`);
    const hex = key.digest.toString('hex');
    if (digests.has(hex)) throw new Error(`api-key: keys[${index}].key repeats an earlier key`);
    names.add(key.name);
    digests.add(hex);
  }
}
