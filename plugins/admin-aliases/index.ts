// More paths for existing admin routes, for users migrating from a proxy that named them
// differently (`/api/stats` for `/stats`). An alias asks its target on this same listener.
import http from 'node:http';
import { definePlugin, SwitchyardError, type AdminRequest, type Reply } from '../../core/index.js';

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

// Per-connection and per-message headers belong to this hop; the rest (the admin key, the
// cache-clear linkage headers…) goes to the target as the client sent it.
const DROPPED = new Set(['host', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'expect', 'upgrade']);

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
        handler: (req) => askTarget(req, `${prefix}${alias.target}`, options.timeoutMs),
      });
    }
  },
});

/**
 * Sends the request again to `target` on the listener it came in on. The admin router has no way
 * to call another route's handler, and going through HTTP keeps the target's own access check.
 */
async function askTarget(req: AdminRequest, target: string, timeoutMs: number): Promise<Reply> {
  if (req.raw.headers[HOP_HEADER] !== undefined) throw new SwitchyardError('SY_ERR_BAD_REQUEST', 'an admin alias points at another alias');
  const { localAddress, localPort } = req.raw.socket;
  if (!localAddress || !localPort) throw new SwitchyardError('SY_ERR_INTERNAL', 'the listening address is unknown');
  const body = req.method === 'GET' || req.method === 'DELETE' ? undefined : await readBody(req.raw);
  const headers: http.OutgoingHttpHeaders = { [HOP_HEADER]: '1' };
  for (const [name, value] of Object.entries(req.raw.headers)) if (!DROPPED.has(name) && value !== undefined) headers[name] = value;
  if (body) headers['content-length'] = body.length;
  const query = req.query.toString();
  return new Promise((resolve, reject) => {
    const out = http.request({
      host: localAddress.replace(/^::ffff:/, ''), port: localPort, method: req.method, path: query ? `${target}?${query}` : target,
      headers, agent: false, timeout: timeoutMs,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => {
        const type = res.headers['content-type'];
        resolve({ status: res.statusCode ?? 502, headers: type ? { 'content-type': type } : {}, body: Buffer.concat(chunks) });
      });
      res.once('error', reject);
    });
    out.once('timeout', () => out.destroy(new Error(`the alias target ${target} did not answer within ${timeoutMs} ms`)));
    out.once('error', reject);
    out.end(body);
  });
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
