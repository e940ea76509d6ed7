// `adminAliases: go-proxy`: the admin paths of the YAML-configured Go reverse proxy people migrate
// from (/api/v1/backends/…, /api/v1/stats/…), mapped onto the balancer's own operations (admin.ts),
// plus the backend listing and ranking of the edge-worker balancer (/health and /api/health, /api/ip-preference).
import { rename, writeFile, copyFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import YAML from 'yaml';
import type { AdminRequest, PluginApi, Reply } from '../../core/index.js';
import { addUpstream, badRequest, changeUpstream, describe, disconnectUpstream, isObject, patchBody, removeUpstream, report, routeOf, stats, type BalancedRoute } from './admin.js';
import type { Member } from './table.js';

export interface AliasOptions {
  /** The config file `PUT /api/v1/config` writes; unset: it answers 501. */
  configFile?: string;
}

export function goProxyAliases(api: PluginApi, options: AliasOptions): (balanced: Map<string, BalancedRoute>) => void {
  return (balanced) => {
    const add = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, handler: (req: AdminRequest) => Reply | Promise<Reply>, isPublic = false) =>
      api.admin({ method, path: `/api/v1${path}`, handler, public: isPublic });
    /** The Go proxy's "upstream" is a route here; with one balanced route it may be left out. */
    const routeName = (value: unknown): string => {
      if (typeof value === 'string' && value !== '') return value;
      if (balanced.size === 1) return [...balanced.keys()][0]!;
      throw badRequest(`give upstream=<route> (balanced routes: ${[...balanced.keys()].join(', ')})`);
    };
    const backendId = (value: unknown): string => {
      if (typeof value === 'string' && value !== '') return value;
      throw badRequest('give backend_id=<upstream id, name or URL>');
    };

    add('GET', '/config', (req) => coreCall(req, api, 'GET', '/config'));
    add('PUT', '/config', (req) => writeConfig(req, options.configFile));
    add('POST', '/config/reload-ssl', (req) => {
      // Without TLS the core has no reload route, and the path would be proxied to a backend.
      if (!api.config.server.tls?.cert) {
        return { status: 501, json: { error: 'TLS is not configured (server.tls.cert and server.tls.key): nothing to reload', code: 'SY_ERR_BALANCER_TLS_OFF' } };
      }
      return coreCall(req, api, 'POST', '/config/reload-tls');
    });

    add('GET', '/backends', (req) => {
      const route = routeOf(balanced, routeName(req.query.get('upstream')));
      return { status: 200, json: { upstream: route.name, algorithm: route.algorithm, backends: route.table().members.map((m) => ({ ...describe(m, route, api), url: m.upstream.url })) } };
    });
    add('POST', '/backends/add', async (req) => {
      const body = await req.json();
      if (!isObject(body)) throw badRequest('give {"upstream"?: "<route>", "url": "http://host:port", "weight"?, "priority"?, "name"?, "meta"?}');
      const { upstream, backend, ...rest } = body;
      return addUpstream(api, balanced, routeName(upstream ?? req.query.get('upstream')), isObject(backend) ? backend : rest);
    });
    add('DELETE', '/backends/remove', (req) => removeUpstream(balanced, routeName(req.query.get('upstream')), backendId(req.query.get('backend_id'))));
    add('PUT', '/backends/update', async (req) => {
      const body = await req.json();
      if (!isObject(body)) throw badRequest('give {"upstream"?: "<route>", "backend_id": "<id, name or URL>", "weight"?, "maxConnections"?, "active"?, "draining"?}');
      const { upstream, backend_id: id, ...patch } = body;
      return changeUpstream(api, balanced, routeName(upstream ?? req.query.get('upstream')), backendId(id ?? req.query.get('backend_id')), patchBody(patch));
    });
    add('POST', '/backends/disconnect', (req) => disconnectUpstream(api, balanced, routeName(req.query.get('upstream')), backendId(req.query.get('backend_id'))));
    add('GET', '/stats/server', () => ({ status: 200, json: serverStats(api, balanced) }));
    add('GET', '/stats/backend', (req) => {
      const upstream = req.query.get('upstream');
      return stats(balanced, upstream === null ? null : routeName(upstream), req.query.get('backend_id'));
    });
    add('POST', '/report', async (req) => {
      const body = await req.json();
      // The Go proxy names the backend `backend_id` and its group `upstream`.
      if (isObject(body) && body.backend_id !== undefined) {
        const { backend_id: id, upstream, ...figures } = body;
        return report(balanced, { ...figures, upstream: id, ...(upstream === undefined ? {} : { route: upstream }) });
      }
      return report(balanced, body);
    });

    // `/health` too, as the edge-worker balancer serves it: still 200 with status ok for load
    // balancers in front, plus the backends (the core lets a plugin replace its /health).
    const health = () => ({ status: 200, json: { status: 'ok', backends: backends(api, balanced) } });
    api.admin({ method: 'GET', path: '/health', public: true, handler: health });
    api.admin({ method: 'GET', path: '/api/health', public: true, handler: health });
    api.admin({ method: 'GET', path: '/api/ip-preference', public: true, handler: () => ({ status: 200, json: { backends: ranked(backends(api, balanced)) } }) });
  };
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
  /** When health last changed (epoch ms); the health-check plugin's admin route has each probe. */
  lastCheck: string | null;
  avgLatencyMs: number | null;
  requests: number;
  failures: number;
}

function backends(api: PluginApi, balanced: Map<string, BalancedRoute>): BackendRow[] {
  return [...balanced.values()].flatMap((route) => route.table().members.map((m: Member) => {
    const health = api.health.get(m.upstream);
    const region = m.upstream.meta?.region;
    return {
      route: route.name,
      id: m.upstream.id,
      name: m.upstream.name,
      url: m.upstream.url,
      region: typeof region === 'string' ? region : null,
      priority: m.settings.priority,
      weight: m.settings.weight,
      healthy: health.healthy,
      inService: m.settings.active && !m.settings.draining,
      lastCheck: health.since ? new Date(health.since).toISOString() : null,
      avgLatencyMs: m.stats.ewma === undefined ? null : Math.round(m.stats.ewma * 10) / 10,
      requests: m.stats.requests,
      failures: m.stats.failures,
    };
  }));
}

/** Healthy and in service first, then measured latency (unmeasured last), then priority. */
function ranked(rows: BackendRow[]): (BackendRow & { rank: number })[] {
  const usable = (r: BackendRow) => (r.healthy && r.inService ? 0 : 1);
  return [...rows]
    .sort((a, b) => usable(a) - usable(b) || (a.avgLatencyMs ?? Infinity) - (b.avgLatencyMs ?? Infinity) || a.priority - b.priority)
    .map((row, i) => ({ rank: i + 1, ...row }));
}

function serverStats(api: PluginApi, balanced: Map<string, BalancedRoute>): Record<string, unknown> {
  const rows = [...balanced.values()].flatMap((route) => route.table().members);
  const sum = (f: (m: Member) => number) => rows.reduce((n, m) => n + f(m), 0);
  return {
    uptimeSeconds: Math.round(process.uptime()),
    upstreams: balanced.size,
    backends: rows.length,
    healthyBackends: rows.filter((m) => api.health.isHealthy(m.upstream)).length,
    requests: sum((m) => m.stats.requests),
    failures: sum((m) => m.stats.failures),
    inFlight: sum((m) => m.stats.inFlight),
  };
}

/**
 * Calls one of the core's own admin routes (/config, /config/reload-tls) on the address this
 * request came in on, with the caller's credentials: the plugin API cannot reach core handlers.
 */
function coreCall(req: AdminRequest, api: PluginApi, method: string, path: string): Promise<Reply> {
  const socket = req.raw.socket as TLSSocket;
  const secure = socket.encrypted === true;
  const host = socket.localAddress?.includes(':') ? `[${socket.localAddress}]` : socket.localAddress ?? '127.0.0.1';
  const headers: Record<string, string> = {};
  for (const name of ['authorization', 'x-api-key'] as const) {
    const value = req.raw.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  const url = `${secure ? 'https' : 'http'}://${host}:${socket.localPort}${api.config.server.admin.prefix ?? ''}${path}`;
  return new Promise((resolve, reject) => {
    // Our own listener: its certificate names the public host, not the loopback address.
    const call = (secure ? https : http).request(url, { method, headers, ...(secure ? { rejectUnauthorized: false } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 502, json: JSON.parse(text) as unknown });
        } catch {
          resolve({ status: res.statusCode ?? 502, body: text });
        }
      });
    });
    call.on('error', reject);
    call.end();
  });
}

/** Replaces the config file (a .bak copy first; written beside it and renamed); the watcher reloads it. */
async function writeConfig(req: AdminRequest, file: string | undefined): Promise<Reply> {
  if (!file) {
    return {
      status: 501,
      json: {
        error: 'this instance has no config file to write (started from a preset and environment variables, or the balancer option configFile is unset); edit the environment and restart, or start from a file',
        code: 'SY_ERR_BALANCER_CONFIG_READ_ONLY',
      },
    };
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
