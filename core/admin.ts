// The admin router: core routes (/health, /status, /config) and the ones plugins register.
// Protected routes need the admin key; with no key configured they refuse and say how to set one.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { Errors, SwitchyardError } from './errors.js';
import type { Reply } from './types.js';

export interface AdminRequest {
  readonly method: string;
  /** Path below the admin prefix, e.g. `/status`. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** `:name` segments of the route's path. */
  readonly params: Readonly<Record<string, string>>;
  readonly raw: IncomingMessage;
  /** Parses a JSON body (at most 1 MiB); a malformed one answers 400. */
  json<T = unknown>(): Promise<T>;
}

export interface AdminRouteSpec {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path below the admin prefix; `:name` segments become params, e.g. `/mappings/:name`. */
  path: string;
  /** Public routes need no admin key. Default false. */
  public?: boolean;
  handler(req: AdminRequest): Reply | Promise<Reply>;
}

interface CompiledRoute {
  spec: AdminRouteSpec;
  pattern: RegExp | undefined;
  /** The path up to its first parameter: a path not starting with it needs no pattern test. */
  literalStart: string;
  paramNames: string[];
}

const MAX_ADMIN_BODY = 1024 * 1024;

export class AdminRouter {
  private readonly exact = new Map<string, CompiledRoute>();
  private readonly patterned: CompiledRoute[] = [];
  private readonly exactPaths = new Set<string>();
  private readonly keyDigest: Buffer | undefined;

  constructor(readonly prefix: string, adminKey: string | undefined, private readonly audit: Logger, private readonly keyVariable = 'ADMIN_KEY') {
    this.keyDigest = adminKey ? digest(adminKey) : undefined;
  }

  add(spec: AdminRouteSpec): void {
    const paramNames: string[] = [];
    const source = spec.path.replace(/:([A-Za-z0-9_]+)/g, (_, name: string) => {
      paramNames.push(name);
      return '([^/]+)';
    });
    if (paramNames.length === 0) {
      this.exact.set(`${spec.method} ${spec.path}`, { spec, pattern: undefined, literalStart: spec.path, paramNames });
      this.exactPaths.add(spec.path);
    } else {
      this.patterned.push({ spec, pattern: new RegExp(`^${source}$`), literalStart: spec.path.slice(0, spec.path.indexOf(':')), paramNames });
    }
  }

  /** Every route with the prefix, and whether it needs the key: what the start banner lists. */
  list(): { method: string; path: string; public: boolean }[] {
    return [...this.exact.values(), ...this.patterned].map(({ spec }) => ({ method: spec.method, path: `${this.prefix}${spec.path}`, public: spec.public === true }));
  }

  get keySet(): boolean {
    return this.keyDigest !== undefined;
  }

  /**
   * True when `pathname` is one of ours (any method), so the proxy must not handle it. Asked of
   * every proxied request: a pattern is only tried on a path that starts like it.
   */
  owns(pathname: string): boolean {
    if (this.prefix && !pathname.startsWith(this.prefix)) return false;
    const path = pathname.slice(this.prefix.length) || '/';
    if (this.exactPaths.has(path)) return true;
    for (const route of this.patterned) if (path.startsWith(route.literalStart) && route.pattern!.test(path)) return true;
    return false;
  }

  /**
   * Answers an admin request, or throws a SwitchyardError (401/403/404/400). Every call to a
   * protected route, allowed or refused, leaves an audit entry.
   */
  async handle(req: IncomingMessage, pathname: string, query: string, clientIp: string): Promise<Reply> {
    const path = pathname.slice(this.prefix.length) || '/';
    const method = req.method === 'HEAD' ? 'GET' : req.method ?? 'GET';
    let found = this.exact.get(`${method} ${path}`);
    let params: Record<string, string> = {};
    if (!found) {
      for (const route of this.patterned) {
        const m = route.spec.method === method ? route.pattern!.exec(path) : null;
        if (m) {
          found = route;
          params = Object.fromEntries(route.paramNames.map((name, i) => [name, decodeURIComponent(m[i + 1]!)]));
          break;
        }
      }
    }
    if (!found) throw new SwitchyardError('SY_ERR_ADMIN_NOT_FOUND', `no admin route ${method} ${path}`);
    const handler = () => found.spec.handler({ method, path, query: new URLSearchParams(query), params, raw: req, json: () => readJson(req) });
    if (found.spec.public) return handler();
    const entry = { clientIp, key: 'admin', action: `${method} ${path}` };
    try {
      this.authorize(req);
    } catch (err) {
      this.audit.warn({ ...entry, outcome: 'refused', code: (err as SwitchyardError).code }, 'admin call refused');
      throw err;
    }
    try {
      const reply = await handler();
      this.audit.info({ ...entry, outcome: reply.status < 400 ? 'ok' : 'failed', status: reply.status }, 'admin call');
      return reply;
    } catch (err) {
      this.audit.warn({ ...entry, outcome: 'failed', code: (err as SwitchyardError).code ?? 'SY_ERR_INTERNAL' }, 'admin call');
      throw err;
    }
  }

  /** True when the request carries the configured admin key. */
  isAuthorized(req: IncomingMessage): boolean {
    if (!this.keyDigest) return false;
    const given = presentedKey(req);
    // Comparing fixed-length digests keeps the comparison constant-time whatever the key length.
    return given !== undefined && timingSafeEqual(digest(given), this.keyDigest);
  }

  private authorize(req: IncomingMessage): void {
    // Names the variable the running preset reads the key from, not a generic one.
    if (!this.keyDigest) throw new SwitchyardError('SY_ERR_ADMIN_KEY_NOT_SET', Errors.SY_ERR_ADMIN_KEY_NOT_SET.message.replace('${ADMIN_KEY}', `\${${this.keyVariable}}`));
    if (!this.isAuthorized(req)) throw new SwitchyardError('SY_ERR_ADMIN_UNAUTHORIZED');
  }
}

function presentedKey(req: IncomingMessage): string | undefined {
  const header = req.headers['x-api-key'];
  if (typeof header === 'string' && header) return header;
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice('Bearer '.length).trim();
  return undefined;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

async function readJson<T>(req: IncomingMessage): Promise<T> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_ADMIN_BODY) throw new SwitchyardError('SY_ERR_BODY_TOO_LARGE');
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') as T;
  } catch {
    throw new SwitchyardError('SY_ERR_BAD_REQUEST', 'the request body is not valid JSON');
  }
}
