// More paths for existing admin routes, for users migrating from a proxy that named them
// differently (`/api/stats` for `/stats`). An alias asks its target in-process, with the client's headers.
import type { IncomingMessage } from 'node:http';
import { definePlugin, SwitchyardError, type AdminRequest, type PluginApi, type Reply } from '../../core/index.js';

const NAME = 'admin-aliases';

const schema = {
  type: 'object',
  properties: {
    aliases: {
      type: 'array',
      default: [],
      items: {
        type: 'object',
        properties: {
          path: { type: 'string', pattern: '^/', description: 'The new path (below server.admin.prefix).' },
          target: { type: 'string', pattern: '^/', description: 'The admin route it answers for.' },
          method: { type: 'string', enum: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'], default: 'GET' },
          public: { type: 'boolean', default: false, description: 'true: the alias itself asks for no key (the target still may).' },
        },
        required: ['path', 'target'],
        additionalProperties: false,
      },
    },
    timeoutMs: { type: 'integer', minimum: 1, default: 30000 },
  },
  additionalProperties: false,
} as const;

/** Marks a request an alias made, so an alias pointing (through others) at itself fails fast. */
const HOP_HEADER = 'x-switchyard-admin-alias';

// Per-connection and per-message headers belong to the client's request, and the forwarding
// headers would let a client speak for the in-process request's origin (which is this proxy);
// the rest (the admin key, the cache-clear linkage headers…) goes to the target as the client sent it.
const DROPPED = new Set([
  'host', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'expect', 'upgrade',
  'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip',
]);

/** The admin router's own limit for a JSON body (core/admin.ts): an alias takes no more than its target would. */
const MAX_BODY = 1024 * 1024;

export default definePlugin({
  name: NAME,
  schema,
  setup(api, options) {
    const prefix = api.config.server?.admin?.prefix ?? '';
    for (const alias of options.aliases) {
      if (alias.path === alias.target) throw new Error(`${NAME}: alias ${alias.path} points at itself`);
      api.admin({
        method: alias.method,
        path: alias.path,
        public: alias.public,
        handler: (req) => askTarget(api, req, `${prefix}${alias.target}`, options.timeoutMs),
      });
    }
  },
});

/**
 * Asks `target` in-process (api.inject), with the client's headers: the target's own access check
 * applies, as if the client had asked it.
 */
async function askTarget(api: PluginApi, req: AdminRequest, target: string, timeoutMs: number): Promise<Reply> {
  if (req.raw.headers[HOP_HEADER] !== undefined) throw new SwitchyardError('SY_ERR_BAD_REQUEST', 'an admin alias points at another alias');
  const body = req.method === 'GET' || req.method === 'DELETE' ? undefined : await readBody(req.raw);
  const headers: Record<string, string | string[]> = { [HOP_HEADER]: '1' };
  for (const [name, value] of Object.entries(req.raw.headers)) if (!DROPPED.has(name) && value !== undefined) headers[name] = value;
  const query = req.query.toString();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the alias target ${target} did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const answer = await Promise.race([api.inject({ method: req.method, path: query ? `${target}?${query}` : target, headers, body }), timedOut]);
    const type = answer.headers['content-type'];
    return { status: answer.status, headers: type ? { 'content-type': type } : {}, body: answer.body };
  } finally {
    clearTimeout(timer);
  }
}

/** The body, refused with 413 as soon as it is larger than MAX_BODY (declared or counted). */
async function readBody(req: IncomingMessage): Promise<Buffer> {
  const tooLarge = () => new SwitchyardError('SY_ERR_BODY_TOO_LARGE', undefined, { details: { limit: MAX_BODY } });
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}
