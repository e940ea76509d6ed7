// The admin paths of the YAML-configured Go reverse proxy people migrate from (/api/v1/backends/…,
// /api/v1/stats/…, /api/v1/config…), plus the backend listing and ranking of the edge-worker
// balancer (/health, /api/health, /api/ip-preference), over the routes the balancer publishes.
import { copyFile, rename, writeFile } from 'node:fs/promises';
import YAML from 'yaml';
import { balancerTables, definePlugin, SwitchyardError, type AdminRequest, type BalancedRouteHandle, type BalancerTables, type PluginApi, type Reply, type UpstreamView } from '../../core/index.js';

const NAME = 'go-proxy-admin';

const schema = {
  type: 'object',
  properties: {
    configFile: { type: 'string', minLength: 1, description: 'The file PUT /api/v1/config replaces (the watcher reloads it). Unset: 501.' },
  },
  additionalProperties: false,
} as const;

export const errors = {
  SY_ERR_BALANCER_TLS_OFF: { status: 501, message: 'TLS is not configured (server.tls.cert and server.tls.key): nothing to reload' },
  SY_ERR_BALANCER_CONFIG_READ_ONLY: {
    status: 501,
    message: 'this instance has no config file to write (started from a preset and environment variables, or the go-proxy-admin option configFile is unset); edit the environment and restart, or start from a file',
  },
} as const;

export default definePlugin({
  name: NAME,
  schema,
  errors,
  setup(api, options) {
    const tables = balancerTables(api);
    // One set of paths per applied config, whichever instance comes first (as the options go).
    api.shared('paths', () => {
      registerPaths(api, new GoProxyAdmin(api, tables, options.configFile));
      return {};
    });
  },
});

function registerPaths(api: PluginApi, admin: GoProxyAdmin): void {
  const add = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, handler: (req: AdminRequest) => Reply | Promise<Reply>) =>
    api.admin({ method, path: `/api/v1${path}`, handler });

  add('GET', '/config', (req) => coreCall(req, api, 'GET', '/config'));
  add('PUT', '/config', (req) => admin.writeConfig(req));
  add('POST', '/config/reload-ssl', (req) => admin.reloadTls(req));
  add('GET', '/backends', (req) => admin.listBackends(req));
  add('POST', '/backends/add', (req) => admin.addBackend(req));
  add('DELETE', '/backends/remove', (req) => admin.removeBackend(req));
  add('PUT', '/backends/update', (req) => admin.updateBackend(req));
  add('POST', '/backends/disconnect', (req) => admin.disconnectBackend(req));
  add('GET', '/stats/server', () => ({ status: 200, json: admin.serverStats() }));
  add('GET', '/stats/backend', (req) => admin.backendStats(req));
  add('POST', '/report', async (req) => admin.report(await req.json()));

  // `/health` too, as the edge-worker balancer serves it: still 200 with status ok for load
  // balancers in front, plus the backends (the core lets a plugin replace its /health).
  const health = () => ({ status: 200, json: { status: 'ok', backends: admin.backends() } });
  api.admin({ method: 'GET', path: '/health', public: true, handler: health });
  api.admin({ method: 'GET', path: '/api/health', public: true, handler: health });
  api.admin({ method: 'GET', path: '/api/ip-preference', public: true, handler: () => ({ status: 200, json: { backends: ranked(admin.backends()) } }) });
}

interface BackendRow {
  route: string;
  id: string;
  name: string;
  url: string;
  region: string | null;
  priority: number;
  weight: number;
  healthy: boolean;
  inService: boolean;
  /** When health last changed; the health-check plugin's admin route has each probe. */
  lastCheck: string | null;
  avgLatencyMs: number | null;
  requests: number;
  failures: number;
}

/**
 * The Go proxy's words mapped onto the balancer's: its "upstream" is a balanced route here (which
 * may be left out while there is only one), its "backend" one of the route's upstreams.
 */
class GoProxyAdmin {
  constructor(
    private readonly api: PluginApi,
    private readonly tables: BalancerTables,
    /** The config file `PUT /api/v1/config` writes; unset: it answers 501. */
    private readonly configFile: string | undefined,
  ) {}

  listBackends(req: AdminRequest): Reply {
    const route = this.routeOf(this.routeName(req.query.get('upstream')));
    return { status: 200, json: { upstream: route.name, algorithm: route.algorithm, backends: route.upstreams().map(listed) } };
  }

  async addBackend(req: AdminRequest): Promise<Reply> {
    const body = await req.json();
    if (!isObject(body)) throw badRequest('give {"upstream"?: "<route>", "url": "http://host:port", "weight"?, "priority"?, "name"?, "meta"?}');
    const { upstream, backend, ...rest } = body;
    const route = this.routeOf(this.routeName(upstream ?? req.query.get('upstream')));
    return changed(201, route, await route.add(isObject(backend) ? backendToAdd(backend) : rest));
  }

  async removeBackend(req: AdminRequest): Promise<Reply> {
    const name = this.routeName(req.query.get('upstream'));
    const ref = backendId(req.query.get('backend_id'));
    const route = this.routeOf(name);
    return { status: 200, json: { route: route.name, removed: await route.remove(ref) } };
  }

  async updateBackend(req: AdminRequest): Promise<Reply> {
    const body = await req.json();
    if (!isObject(body)) throw badRequest('give {"upstream"?: "<route>", "backend_id": "<id, name or URL>", "weight"?, "maxConnections"?, "active"?, "draining"?}');
    // SpeedMimi's shape names the backend inside `backend`: {upstream, backend: {id, weight}}.
    const { upstream, backend_id: given, ...rest } = body;
    const { id, patch } = isObject(rest.backend) && given === undefined ? backendToUpdate(rest.backend) : { id: given, patch: rest };
    const name = this.routeName(upstream ?? req.query.get('upstream'));
    const ref = backendId(id ?? req.query.get('backend_id'));
    const route = this.routeOf(name);
    return changed(200, route, await route.change(ref, patch));
  }

  async disconnectBackend(req: AdminRequest): Promise<Reply> {
    const name = this.routeName(req.query.get('upstream'));
    const ref = backendId(req.query.get('backend_id'));
    const route = this.routeOf(name);
    return changed(200, route, await route.disconnect(ref));
  }

  backendStats(req: AdminRequest): Reply {
    const upstream = req.query.get('upstream');
    const name = upstream === null ? null : this.routeName(upstream);
    const ref = req.query.get('backend_id');
    const routes = name === null ? [...this.tables.values()] : [this.routeOf(name)];
    const rows = routes.flatMap((route) => route.stats(ref));
    if (ref !== null && rows.length === 0) throw notFound(`no balanced upstream "${ref}"${name ? ` on route ${name}` : ''}`);
    return { status: 200, json: { upstreams: rows } };
  }

  /**
   * The Go proxy names the backend `backend_id` and its group `upstream`, with the figures flat or
   * SpeedMimi's way under `performance`; the balancer's own shape is taken too.
   */
  report(body: unknown): Reply {
    const given = isObject(body) && body.backend_id !== undefined ? fromGoProxy(body) : body;
    const ignored = isObject(given) && Array.isArray(given.ignored) ? given.ignored : [];
    if (isObject(given)) delete given.ignored;
    if (!isObject(given) || typeof given.upstream !== 'string') throw badRequest('give {"upstream": "<id, name or URL>", "cpu"?: 0..1, "memory"?: 0..1, "load"?: 0..1, "route"?: "<name>"}');
    const { upstream, route, ...figures } = given;
    const routes = route === undefined ? [...this.tables.values()] : [this.routeOf(this.routeName(String(route)))];
    const updated = routes.flatMap((r) => r.report(upstream, figures));
    if (updated.length === 0) throw notFound(`no balanced upstream "${upstream}"`);
    return { status: 200, json: ignored.length > 0 ? { updated, ignored } : { updated } };
  }

  serverStats(): Record<string, unknown> {
    const rows = [...this.tables.values()].flatMap((route) => route.upstreams());
    const sum = (figure: (row: UpstreamView) => number) => rows.reduce((n, row) => n + figure(row), 0);
    return {
      uptimeSeconds: Math.round(process.uptime()),
      upstreams: this.tables.size,
      backends: rows.length,
      healthyBackends: rows.filter((row) => row.healthy).length,
      requests: sum((row) => row.requests),
      failures: sum((row) => row.failures),
      inFlight: sum((row) => row.inFlight),
    };
  }

  backends(): BackendRow[] {
    return [...this.tables.values()].flatMap((route) => route.upstreams().map((row) => {
      const region = row.meta.region;
      return {
        route: route.name,
        id: row.id,
        name: row.name,
        url: row.url,
        region: typeof region === 'string' ? region : null,
        priority: row.priority,
        weight: row.weights.configured,
        healthy: row.healthy,
        inService: row.active && !row.draining,
        lastCheck: row.healthSince ? new Date(row.healthSince).toISOString() : null,
        avgLatencyMs: row.ewmaMs === null ? null : Math.round(row.ewmaMs * 10) / 10,
        requests: row.requests,
        failures: row.failures,
      };
    }));
  }

  reloadTls(req: AdminRequest): Promise<Reply> | Reply {
    // Without TLS the core has no reload route, and the path would be proxied to a backend.
    if (!this.api.config.server.tls?.cert) {
      throw new SwitchyardError('SY_ERR_BALANCER_TLS_OFF');
    }
    return coreCall(req, this.api, 'POST', '/config/reload-tls');
  }

  /** Replaces the config file (a .bak copy first; written beside it and renamed); the watcher reloads it. */
  async writeConfig(req: AdminRequest): Promise<Reply> {
    const file = this.configFile;
    if (!file) {
      throw new SwitchyardError('SY_ERR_BALANCER_CONFIG_READ_ONLY');
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req.raw as AsyncIterable<Buffer>) chunks.push(chunk);
    const text = Buffer.concat(chunks).toString('utf8');
    let parsed: unknown;
    try {
      parsed = YAML.parse(text);
    } catch (err) {
      throw badRequest(`the body is not YAML or JSON: ${(err as Error).message}`);
    }
    if (!isObject(parsed)) throw badRequest('the body must be a whole config (a YAML or JSON object)');
    await copyFile(file, `${file}.bak`).catch(() => undefined);
    const temp = `${file}.${process.pid}.tmp`;
    await writeFile(temp, text);
    await rename(temp, file);
    return { status: 202, json: { written: file, backup: `${file}.bak`, note: 'the file watcher applies it; GET /status shows lastReload (an invalid file is rejected and the old config keeps serving)' } };
  }

  private routeName(value: unknown): string {
    const only = this.tables.size === 1 ? [...this.tables.keys()][0]! : undefined;
    // Every SpeedMimi example says ?upstream=default: with one balanced route, that is the one.
    if (value === 'default' && only !== undefined && !this.tables.has('default')) return only;
    if (typeof value === 'string' && value !== '') return value;
    if (only !== undefined) return only;
    throw badRequest(`give upstream=<route> (balanced routes: ${[...this.tables.keys()].join(', ')})`);
  }

  private routeOf(name: string): BalancedRouteHandle {
    const route = this.tables.get(name);
    if (!route) throw notFound(`no balanced route "${name}" (balanced: ${[...this.tables.keys()].join(', ') || 'none'})`);
    return route;
  }
}

function backendId(value: unknown): string {
  if (typeof value === 'string' && value !== '') return value;
  throw badRequest('give backend_id=<upstream id, name or URL>');
}

function fromGoProxy(body: Record<string, unknown>): Record<string, unknown> {
  const { backend_id: id, upstream, performance, ...figures } = body;
  const route = upstream === undefined ? {} : { route: upstream };
  if (performance === undefined) return { ...figures, upstream: id, ...route };
  if (!isObject(performance)) throw badRequest('performance must be an object like {"cpu_usage": 45.2, "memory_usage": 67.8, "load_avg_1": 2.1}');
  return { ...figures, ...fromPerformance(performance), upstream: id, ...route };
}

/**
 * SpeedMimi's `performance` block: cpu_usage and memory_usage are percentages (0–100), made 0–1.
 * A load average has no scale without the backend's core count, so it is taken but not used.
 */
function fromPerformance(performance: Record<string, unknown>): Record<string, unknown> {
  const figures: Record<string, unknown> = {};
  const ignored: string[] = [];
  for (const [key, value] of Object.entries(performance)) {
    if (key === 'cpu_usage' || key === 'memory_usage') {
      if (typeof value !== 'number' || !(value >= 0 && value <= 100)) throw badRequest(`performance.${key} must be a percentage from 0 to 100`);
      // Rounded so 67.8 % reads 0.678, not 0.6779999999999999.
      figures[key === 'cpu_usage' ? 'cpu' : 'memory'] = Math.round(value * 100) / 10_000;
    } else if (key === 'load_avg_1' || key === 'load_avg_5' || key === 'load_avg_15') {
      if (typeof value !== 'number' || value < 0) throw badRequest(`performance.${key} must be a number ≥ 0`);
      ignored.push(`performance.${key}: a load average has no 0–1 scale without the backend's core count; cpu_usage carries the same signal`);
    } else throw badRequest(`unknown key "performance.${key}" (SpeedMimi's are cpu_usage, memory_usage, load_avg_1)`);
  }
  return ignored.length > 0 ? { ...figures, ignored } : figures;
}

/** SpeedMimi's backend to add, `{id, host, port, weight, scheme?, name?, max_conn?}`, as the balancer's upstream; other shapes pass as they are. */
function backendToAdd(backend: Record<string, unknown>): Record<string, unknown> {
  if (backend.host === undefined && backend.port === undefined) return backend;
  const { id, host, port, scheme = 'http', name, max_conn: maxConn, ...rest } = backend;
  if (typeof host !== 'string' || host === '') throw badRequest('backend.host must be a host name or IP');
  if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) throw badRequest('backend.port must be a port number');
  if (scheme !== 'http' && scheme !== 'https') throw badRequest('backend.scheme must be http or https');
  if (id !== undefined && (typeof id !== 'string' || id === '')) throw badRequest('backend.id must be a non-empty string');
  const meta: Record<string, unknown> = isObject(rest.meta) ? { ...rest.meta } : {};
  if (name !== undefined) meta.displayName = name;
  if (maxConn !== undefined) meta.maxConnections = maxConn;
  delete rest.meta;
  return {
    ...rest,
    url: `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port as number}`,
    ...(id === undefined ? {} : { name: id }),
    ...(Object.keys(meta).length > 0 ? { meta } : {}),
  };
}

/** SpeedMimi's `backend: {id, weight?, active?, max_conn?}` → which backend, and the change. */
function backendToUpdate(backend: Record<string, unknown>): { id: unknown; patch: Record<string, unknown> } {
  const { id, max_conn: maxConn, ...patch } = backend;
  return { id, patch: maxConn === undefined ? patch : { ...patch, maxConnections: maxConn } };
}

/** A backend as `GET /api/v1/backends` lists it: everything the balancer shows but its meta. */
function listed(view: UpstreamView): Record<string, unknown> {
  const { meta: _meta, ...row } = view;
  return row;
}

/** The answer to a change: the upstream as the balancer's own admin routes show it. */
function changed(status: number, route: BalancedRouteHandle, id: string): Reply {
  const { url: _url, meta: _meta, ...row } = route.upstream(id);
  return { status, json: { route: route.name, upstream: row } };
}

/** Healthy and in service first, then measured latency (unmeasured last), then priority. */
function ranked(rows: BackendRow[]): (BackendRow & { rank: number })[] {
  const usable = (r: BackendRow) => (r.healthy && r.inService ? 0 : 1);
  return [...rows]
    .sort((a, b) => usable(a) - usable(b) || (a.avgLatencyMs ?? Infinity) - (b.avgLatencyMs ?? Infinity) || a.priority - b.priority)
    .map((row, i) => ({ rank: i + 1, ...row }));
}

/**
 * Asks one of the core's own admin routes (/config, /config/reload-tls) in-process, with the
 * caller's credentials, so the core's own key check decides.
 */
async function coreCall(req: AdminRequest, api: PluginApi, method: string, path: string): Promise<Reply> {
  const headers: Record<string, string> = {};
  for (const name of ['authorization', 'x-api-key'] as const) {
    const value = req.raw.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  const answer = await api.inject({ method, path: `${api.config.server.admin.prefix ?? ''}${path}`, headers });
  const type = answer.headers['content-type'];
  return { status: answer.status, headers: type ? { 'content-type': type } : {}, body: answer.body };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function badRequest(message: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_BAD_REQUEST', message);
}

function notFound(message: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_ADMIN_NOT_FOUND', message);
}
