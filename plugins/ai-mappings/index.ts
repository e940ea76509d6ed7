// AI mappings: a path prefix maps to a provider's base URL (`/openai/v1/...` → `https://api.openai.com/v1/...`).
// The table lives in the store, is edited live through an admin API and the `/admin` page, and applies on the next request.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AdminRequest, PluginApi, Reply, Route } from '../../core/index.js';
import { definePlugin } from '../../core/index.js';
import {
  checkNothink, checkPrefix, checkTarget, DEFAULT_MAPPINGS, MappingError, readMappings, sortForMatching, STORE_KEY, underPrefix,
  type Mapping,
} from './mappings.js';

export const NAME = 'ai-mappings';

/** Request headers that belong to the gateway (its cookies, its admin token), never to a provider. */
const GATEWAY_HEADERS = ['cookie', 'x-admin-token'];

/** The gateway's own paths: a mapping there would shadow them (or be shadowed). */
export const GATEWAY_PATHS = ['/admin', '/api', '/stats', '/proxy', '/health', '/status', '/config', '/index.html', '/robots.txt'];

const schema = {
  type: 'object',
  properties: {
    seedDefaults: { type: 'boolean', default: true, description: 'Write the default provider mappings when the store has none yet.' },
    refreshMs: { type: 'integer', minimum: 100, default: 1000, description: 'How often to re-read the table from the store, so changes made by another instance apply.' },
    reserved: { type: 'array', items: { type: 'string' }, default: [], description: 'More paths no mapping may take, besides the gateway\'s own.' },
    adminPage: { type: 'boolean', default: true, description: 'Serve the /admin page.' },
    publicList: { type: 'boolean', default: true, description: 'Answer GET /api/mappings/public (names and targets, for the dashboard) without the admin key.' },
    importRedisHash: {
      type: 'string', minLength: 1,
      description: 'A Redis hash of prefix → target (the Go AI proxy keeps its table in apiproxy:mappings), imported once into the table when server.store is on Redis. A mapping of the same name already here is kept.',
    },
    dropHeaders: {
      type: 'array', items: { type: 'string' }, default: [],
      description: 'More request headers never sent to a provider, besides cookies and the admin token.',
    },
  },
  additionalProperties: false,
} as const;

export default definePlugin<typeof schema>({
  name: NAME,
  schema,
  async setup(api, options) {
    const table = api.state(() => new MappingTable());
    const reserved = [...GATEWAY_PATHS, ...options.reserved];
    // Before the defaults are seeded: on a fresh store the imported table is the user's, not ours.
    if (options.importRedisHash) await importRedisHash(api, options.importRedisHash, reserved, options.seedDefaults);
    await table.load(api, options.seedDefaults);
    const refresh = setInterval(() => {
      table.load(api, false).catch((err: unknown) => api.log.warn({ err }, 'could not re-read the mappings from the store'));
    }, options.refreshMs);
    refresh.unref();

    api.hooks.route.tap(NAME, (ctx) => table.match(ctx.pathname));

    const isAdminToken = adminTokenCheck(api.config.server.admin.key);
    const dropHeaders = [...GATEWAY_HEADERS, ...options.dropHeaders.map((name) => name.toLowerCase())];
    api.hooks.preRequest.tap(NAME, (ctx) => {
      if (!ctx.route || !table.owns(ctx.route)) return;
      const headers = ctx.outgoing.headers;
      for (const name of dropHeaders) delete headers[name];
      // The client's own provider key goes through; the gateway's admin token never does.
      for (const name of ['authorization', 'x-api-key', 'x-goog-api-key']) {
        const value = headers[name];
        if (typeof value === 'string' && isAdminToken(value.replace(/^Bearer\s+/i, ''))) delete headers[name];
      }
    });

    api.hooks.postResponse.tap(NAME, (ctx) => {
      if (!ctx.route || !table.owns(ctx.route) || !ctx.response) return;
      const headers = ctx.response.headers;
      if (!String(headers['content-type'] ?? '').startsWith('text/event-stream')) return;
      // Buffering proxies in front of us (nginx) must pass events as they come.
      headers['x-accel-buffering'] = 'no';
      headers['cache-control'] ??= 'no-cache';
    });

    const admin = new MappingAdmin(api, table, reserved);
    api.admin({ method: 'GET', path: '/api/mappings', handler: () => ({ status: 200, json: { mappings: table.list() } }) });
    api.admin({ method: 'POST', path: '/api/mappings', handler: (req) => admin.create(req) });
    api.admin({ method: 'PUT', path: '/api/mappings/:name', handler: (req) => admin.update(req) });
    api.admin({ method: 'DELETE', path: '/api/mappings/:name', handler: (req) => admin.remove(req) });
    if (options.publicList) {
      api.admin({
        method: 'GET', path: '/api/mappings/public', public: true,
        handler: () => ({ status: 200, json: { mappings: table.list().map(({ name, prefix, target }) => ({ name, prefix, target })) } }),
      });
    }
    if (options.adminPage) {
      const page = adminPage();
      api.admin({ method: 'GET', path: '/admin', public: true, handler: () => page.html });
      api.admin({ method: 'GET', path: '/admin/admin.js', public: true, handler: () => page.js });
    }
    return () => clearInterval(refresh);
  },
});

/** The table in memory, with one route per mapping; replaced as a whole when the store changes. */
class MappingTable {
  private mappings: Mapping[] = [];
  private ordered: { mapping: Mapping; route: Route }[] = [];
  private readonly routes = new WeakSet<Route>();
  private fingerprint = '';

  /** Reads the store; seeds the defaults into a store that never had a table. */
  async load(api: PluginApi, seed: boolean): Promise<void> {
    let stored = await readMappings(api.store);
    if (stored === undefined && seed) {
      stored = DEFAULT_MAPPINGS.map((m) => ({ ...m, updatedAt: Date.now() }));
      await api.store.set(STORE_KEY, stored);
      api.log.info({ audit: true, action: 'seed', mappings: stored.map((m) => m.prefix) }, 'seeded the default AI mappings');
    }
    this.apply(api, stored ?? []);
  }

  /** Swaps in a new table; routes are rebuilt only when something changed. */
  apply(api: PluginApi, mappings: Mapping[]): void {
    const fingerprint = JSON.stringify(mappings);
    if (fingerprint === this.fingerprint) return;
    this.fingerprint = fingerprint;
    this.mappings = mappings;
    this.ordered = sortForMatching(mappings).map((mapping) => {
      const route = api.createRoute({
        name: mapping.name,
        match: { pathPrefix: mapping.prefix },
        stripPrefix: true,
        preserveHost: false,
        websocket: true,
        plugins: [],
        upstreams: [{ url: mapping.target, weight: 1, priority: 0, meta: { mapping: mapping.name, nothink: mapping.nothink === true } }],
      });
      this.routes.add(route);
      return { mapping, route };
    });
  }

  match(pathname: string): Route | undefined {
    for (const entry of this.ordered) if (underPrefix(pathname, entry.mapping.prefix)) return entry.route;
    return undefined;
  }

  owns(route: Route): boolean {
    return this.routes.has(route);
  }

  list(): Mapping[] {
    return [...this.mappings].sort((a, b) => a.prefix.localeCompare(b.prefix));
  }
}

/** The admin REST API: every change re-reads the store first, writes it, applies it, and is audit-logged. */
class MappingAdmin {
  constructor(private readonly api: PluginApi, private readonly table: MappingTable, private readonly reserved: readonly string[]) {}

  create(req: AdminRequest): Promise<Reply> {
    return this.change(req, 201, async (mappings, body) => {
      const name = checkPrefix(body.prefix, this.reserved);
      const target = checkTarget(body.target);
      const nothink = checkNothink(body.nothink);
      if (mappings.some((m) => m.name.toLowerCase() === name.toLowerCase())) {
        throw new MappingError(409, 'AI_MAPPING_EXISTS', `a mapping for /${name} already exists; use PUT /api/mappings/${name} to change it`, 'prefix');
      }
      const mapping: Mapping = { name, prefix: `/${name}`, target, ...(nothink !== undefined ? { nothink } : {}), updatedAt: Date.now() };
      return { next: [...mappings, mapping], mapping, action: 'create' };
    });
  }

  update(req: AdminRequest): Promise<Reply> {
    return this.change(req, 200, async (mappings, body) => {
      const existing = this.find(mappings, req.params.name!);
      if (body.prefix !== undefined && body.prefix !== existing.prefix) {
        throw new MappingError(400, 'AI_MAPPING_INVALID', 'the prefix of a mapping cannot change; delete it and add a new one', 'prefix');
      }
      const target = checkTarget(body.target);
      const nothink = body.nothink === undefined ? existing.nothink : checkNothink(body.nothink);
      const mapping: Mapping = { ...existing, target, ...(nothink !== undefined ? { nothink } : {}), updatedAt: Date.now() };
      return { next: mappings.map((m) => (m === existing ? mapping : m)), mapping, action: 'update', before: existing };
    });
  }

  remove(req: AdminRequest): Promise<Reply> {
    return this.change(req, 200, async (mappings) => {
      const existing = this.find(mappings, req.params.name!);
      return { next: mappings.filter((m) => m !== existing), mapping: existing, action: 'delete' };
    }, false);
  }

  private find(mappings: Mapping[], name: string): Mapping {
    const wanted = name.replace(/^\//, '');
    const found = mappings.find((m) => m.name === wanted);
    if (!found) throw new MappingError(404, 'AI_MAPPING_NOT_FOUND', `there is no mapping named "${wanted}"`);
    return found;
  }

  private async change(
    req: AdminRequest,
    okStatus: number,
    edit: (mappings: Mapping[], body: Record<string, unknown>) => Promise<{ next: Mapping[]; mapping: Mapping; action: string; before?: Mapping }>,
    readsBody = true,
  ): Promise<Reply> {
    try {
      const body = readsBody ? await req.json<unknown>() : {};
      if (readsBody && (typeof body !== 'object' || body === null || Array.isArray(body))) {
        throw new MappingError(400, 'AI_MAPPING_INVALID', 'the body must be a JSON object like {"prefix": "/name", "target": "https://…"}');
      }
      // Re-read so a change another instance made a moment ago is not overwritten.
      const current = (await readMappings(this.api.store)) ?? this.table.list();
      const { next, mapping, action, before } = await edit(current, body as Record<string, unknown>);
      await this.api.store.set(STORE_KEY, next);
      this.table.apply(this.api, next);
      this.api.log.info({
        audit: true, action, mapping: { name: mapping.name, prefix: mapping.prefix, target: mapping.target, nothink: mapping.nothink },
        ...(before ? { before: { target: before.target, nothink: before.nothink } } : {}),
        client: req.raw.socket.remoteAddress,
      }, `mapping ${mapping.prefix} ${action}d`);
      return { status: okStatus, json: action === 'delete' ? { deleted: mapping } : { mapping } };
    } catch (err) {
      if (err instanceof MappingError) return { status: err.status, json: err.toJSON() };
      throw err;
    }
  }
}

/**
 * Imports the Go AI proxy's table, a Redis hash of `"/openai" → "https://api.openai.com"`, once
 * (a marker in the store says it was done). A name the table already has keeps its mapping; an
 * entry that is not a valid mapping is skipped; both are logged. A store that cannot be reached
 * leaves the marker unset, so the next start tries again.
 */
async function importRedisHash(api: PluginApi, hash: string, reserved: readonly string[], seedDefaults: boolean): Promise<void> {
  const url = api.config.server.store ?? '';
  if (!/^rediss?:\/\//.test(url)) {
    api.log.warn({ hash }, 'importRedisHash needs server.store on Redis (redis:// or rediss://); nothing imported');
    return;
  }
  const marker = `imported:${hash}`;
  if (await api.store.get(marker)) return;
  let entries: Record<string, string>;
  try {
    entries = await readRedisHash(url, hash);
  } catch (err) {
    api.log.warn({ hash, err: { message: (err as Error).message } }, 'could not read the mappings to import from Redis; trying again at the next start');
    return;
  }
  if (Object.keys(entries).length === 0) return;
  const stored = await readMappings(api.store);
  // A fresh store would get the defaults next: the user's own table wins over them.
  const base = stored ?? (seedDefaults ? DEFAULT_MAPPINGS.map((m) => ({ ...m, updatedAt: Date.now() })) : []);
  const kept = new Set(stored === undefined ? [] : stored.map((m) => m.name.toLowerCase()));
  const imported: Mapping[] = [];
  const skipped: { field: string; reason: string }[] = [];
  const keptNames: string[] = [];
  for (const [field, target] of Object.entries(entries)) {
    try {
      const name = checkPrefix(field.startsWith('/') ? field : `/${field}`, reserved);
      if (kept.has(name.toLowerCase())) {
        keptNames.push(name);
        continue;
      }
      imported.push({ name, prefix: `/${name}`, target: checkTarget(target), updatedAt: Date.now() });
    } catch (err) {
      if (!(err instanceof MappingError)) throw err;
      skipped.push({ field, reason: err.message });
    }
  }
  const importedNames = new Set(imported.map((m) => m.name.toLowerCase()));
  const next = [...base.filter((m) => !importedNames.has(m.name.toLowerCase())), ...imported];
  await api.store.set(STORE_KEY, next);
  await api.store.set(marker, { at: new Date().toISOString(), imported: imported.map((m) => m.prefix) });
  api.log.info({
    audit: true, action: 'import', hash, imported: imported.map((m) => ({ prefix: m.prefix, target: m.target })), kept: keptNames, skipped,
  }, `imported ${imported.length} mapping(s) from the Redis hash ${hash}`);
}

async function readRedisHash(url: string, hash: string): Promise<Record<string, string>> {
  const { createClient } = await import('@keyv/redis');
  const client = createClient({ url, socket: { connectTimeout: 2000, reconnectStrategy: false } });
  client.on('error', () => undefined); // the failed command below says what went wrong
  await client.connect();
  try {
    return await client.hGetAll(hash);
  } finally {
    await client.quit().catch(() => undefined);
  }
}

/** Compares a presented value with the admin key in constant time; never true without a key. */
function adminTokenCheck(key: string | undefined): (value: string) => boolean {
  if (!key) return () => false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  const expected = digest(key);
  return (value) => timingSafeEqual(digest(value.trim()), expected);
}

/** The static admin page (plain HTML and JS, no build step), read once from the plugin's folder. */
function adminPage(): { html: Reply; js: Reply } {
  const read = (file: string) => {
    // Compiled to dist/plugins/ai-mappings/, the static files stay in plugins/ai-mappings/admin/.
    for (const base of ['./admin/', '../../../plugins/ai-mappings/admin/']) {
      try {
        return readFileSync(new URL(base + file, import.meta.url));
      } catch {
        // try the next place
      }
    }
    throw new Error(`ai-mappings: the admin page file ${file} is missing`);
  };
  const headers = { 'cache-control': 'no-store', 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer' };
  return {
    html: { status: 200, headers: { ...headers, 'content-type': 'text/html; charset=utf-8' }, body: read('index.html') },
    js: { status: 200, headers: { ...headers, 'content-type': 'text/javascript; charset=utf-8' }, body: read('admin.js') },
  };
}
