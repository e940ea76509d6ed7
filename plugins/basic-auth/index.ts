// HTTP Basic authentication for clients against htpasswd-style hashes in the config (bcrypt or
// {SHA}; never plain text). Anything else gets a 401 with a WWW-Authenticate challenge.
import { createHash, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { definePlugin, Stage } from '../../core/index.js';

export const name = 'basic-auth';

// bcrypt ($2a$/$2b$/$2y$, as `htpasswd -B` writes) or {SHA} (base64 SHA-1, as `htpasswd -s`).
const HASH = '^(\\$2[aby]\\$\\d{2}\\$[./A-Za-z0-9]{53}|\\{SHA\\}[A-Za-z0-9+/]{27}=)$';

// `passwordHash` is a name the core redacts in /config: a hash is not a password, but it can be cracked offline.
export const schema = {
  type: 'object',
  properties: {
    users: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        properties: {
          username: { type: 'string', pattern: '^[^:\\x00-\\x1f\\x7f]{1,128}$' },
          passwordHash: { type: 'string', pattern: HASH },
        },
        required: ['username', 'passwordHash'],
        additionalProperties: false,
      },
    },
    realm: { type: 'string', pattern: '^[^"\\\\\\x00-\\x1f\\x7f]*$', default: 'switchyard' },
    hideCredentials: { type: 'boolean', default: true, description: 'remove Authorization from the forwarded request' },
  },
  required: ['users'],
  additionalProperties: false,
} as const;

export const errors = {
  SY_ERR_BASIC_AUTH_REQUIRED: { status: 401, message: 'this route needs a user name and password (basic-auth plugin)' },
  SY_ERR_BASIC_AUTH_INVALID: { status: 401, message: 'wrong user name or password (basic-auth plugin)' },
} as const;

// Unknown users are checked against this too, so a wrong name costs as long as a wrong password.
const DUMMY_HASH = '$2b$10$VRXBTkjghoeKfP6yKl7Ylet5D0b8nqUh4ulnkCP63nuQM/EBq8V9m';

export default definePlugin<typeof schema>({
  name,
  schema,
  errors,
  setup(api, options) {
    const users = new Map(options.users.map((user) => [user.username, user.passwordHash]));
    if (users.size !== options.users.length) throw new Error('basic-auth: a username appears twice in users');
    const challenge = { 'www-authenticate': `Basic realm="${options.realm}", charset="UTF-8"` };
    // bcrypt is slow on purpose; a client sending the same good credentials on every request
    // should not pay that each time. Keyed by a hash of the header, never by the password.
    const verified = new Map<string, string>();

    api.hooks.access.tapPromise({ name, stage: Stage.AUTH }, async (ctx) => {
      const header = ctx.req.headers.authorization;
      const credentials = parseBasic(header);
      if (!credentials) return ctx.refuse('SY_ERR_BASIC_AUTH_REQUIRED', { message: 'authentication required', headers: challenge });
      const cacheKey = createHash('sha256').update(header!).digest('base64');
      let username = verified.get(cacheKey);
      if (username === undefined) {
        const hash = users.get(credentials.username);
        const ok = await verify(credentials.password, hash ?? DUMMY_HASH);
        if (!ok || hash === undefined) return ctx.refuse('SY_ERR_BASIC_AUTH_INVALID', { message: 'invalid username or password', headers: challenge });
        username = credentials.username;
        if (verified.size >= 1000) verified.delete(verified.keys().next().value!);
        verified.set(cacheKey, username);
      }
      ctx.consumer = { id: `${name}:${username}`, name: username, source: name };
      ctx.logField('user', username);
      if (options.hideCredentials) delete ctx.outgoing.headers.authorization;
      return undefined;
    });
  },
});

/** `Basic base64(user:password)` → its parts; undefined for anything malformed. */
export function parseBasic(header: string | undefined): { username: string; password: string } | undefined {
  const match = /^Basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

async function verify(password: string, hash: string): Promise<boolean> {
  if (hash.startsWith('{SHA}')) {
    const given = createHash('sha1').update(password, 'utf8').digest();
    const expected = Buffer.from(hash.slice(5), 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
  // bcryptjs reads $2y$ (PHP's and htpasswd's tag) the same as $2b$.
  return bcrypt.compare(password, hash);
}
