// What SpeedMimi (the Go load balancer) users bring, in Switchyard's terms: its algorithm names,
// and its config.yaml turned into an equivalent Switchyard config (`switchyard import speedmimi`).
// Every setting either maps onto a Switchyard key or is listed as not carried over, with why.
import YAML from 'yaml';

/** SpeedMimi's algorithm names → the balancer's; `reports`: the algorithm weighs in POST /report figures. */
export const SPEEDMIMI_ALGORITHMS: Readonly<Record<string, { algorithm: string; reports?: boolean }>> = {
  ip_hash: { algorithm: 'ip-hash' },
  least_connections: { algorithm: 'least-connections' },
  least_connections_weight: { algorithm: 'least-connections-weighted' },
  weight: { algorithm: 'weighted' },
  weighted: { algorithm: 'weighted' },
  round_robin: { algorithm: 'round-robin' },
  // Performance + least connections + weight: p2c scores latency × requests in flight ÷ weight,
  // and with reports on, ÷ what the backend's own load report leaves free.
  performance_least_connections_weight: { algorithm: 'p2c', reports: true },
};

export class ImportError extends Error {
  constructor(readonly file: string, readonly path: string, problem: string) {
    super(`${file}: ${path}: ${problem}`);
  }
}

export interface Imported {
  /** The Switchyard config, as an object. */
  config: Record<string, unknown>;
  /** One line per SpeedMimi setting with no Switchyard equivalent: `path: why`. */
  notCarried: string[];
}

/** The YAML `switchyard import speedmimi` prints: a header listing what was not carried over, then the config. */
export function importedYaml(imported: Imported, file: string): string {
  const header = [
    `# Imported from ${file} (SpeedMimi) by \`switchyard import speedmimi\`.`,
    '# The admin API (/api/v1/...) is on the proxy port; its key comes from ADMIN_KEY (environment or .env).',
  ];
  if (imported.notCarried.length === 0) header.push('# Every setting was carried over.');
  else {
    header.push('# Not carried over:');
    for (const line of imported.notCarried) header.push(`#   ${line}`);
  }
  return `${header.join('\n')}\n${YAML.stringify(imported.config)}`;
}

type Obj = Record<string, unknown>;

/** Turns a SpeedMimi config.yaml (its text) into a Switchyard config. */
export function importSpeedMimi(text: string, file: string): Imported {
  let parsed: unknown;
  try {
    parsed = YAML.parse(text);
  } catch (err) {
    throw new ImportError(file, '(file)', `is not YAML: ${(err as Error).message}`);
  }
  if (!isObject(parsed)) throw new ImportError(file, '(file)', 'is not a YAML mapping with server, backends and routing');
  return new SpeedMimiImport(file).run(parsed);
}

const KNOWN_TOP = ['server', 'ssl', 'backends', 'routing', 'grpc'];

class SpeedMimiImport {
  private readonly notCarried: string[] = [];

  constructor(private readonly file: string) {}

  run(source: Obj): Imported {
    for (const key of Object.keys(source)) if (!KNOWN_TOP.includes(key)) this.skip(key, 'not a SpeedMimi setting this importer knows');
    const server = this.server(objectAt(source, 'server', this.file) ?? {}, objectAt(source, 'ssl', this.file));
    const backends = objectAt(source, 'backends', this.file);
    if (!backends || Object.keys(backends).length === 0) throw new ImportError(this.file, 'backends', 'names no upstream group: nothing to balance');
    const routing = objectAt(source, 'routing', this.file) ?? { default: { path: '/', upstream: Object.keys(backends)[0] } };
    const routes = Object.entries(routing).map(([key, rule]) => this.route(key, rule, backends));
    // A route takes its group's name; a second rule on the same group needs a name of its own.
    const named = new Set<string>();
    for (const [i, route] of routes.entries()) {
      if (named.has(String(route.config.name))) route.config.name = `${route.source}-${Object.keys(routing)[i]}`;
      named.add(String(route.config.name));
    }
    for (const group of Object.keys(backends)) {
      if (!routes.some((r) => r.source === group)) this.skip(`backends.${group}`, 'no routing entry sends traffic to this group');
    }
    const grpc = objectAt(source, 'grpc', this.file);
    if (grpc && grpc.enabled !== false) this.skip('grpc', 'SpeedMimi\'s gRPC management interface; Switchyard\'s admin API is HTTP only (the same /api/v1/... paths)');
    else if (grpc) this.skip('grpc', 'disabled; there is no gRPC interface');
    const plugins: Obj[] = [];
    if (typeof server.maxConn === 'number') plugins.push({ name: 'concurrency-limit', options: { max: server.maxConn } });
    plugins.push({ name: 'retry' }, { name: 'go-proxy-admin' });
    return { config: { server: server.config, routes: routes.map((r) => r.config), plugins }, notCarried: this.notCarried };
  }

  private server(source: Obj, ssl: Obj | undefined): { config: Obj; maxConn?: number } {
    const config: Obj = {};
    let maxConn: number | undefined;
    for (const [key, value] of Object.entries(source)) {
      const path = `server.${key}`;
      switch (key) {
        case 'host': config.host = this.text(path, value); break;
        case 'port': config.port = this.port(path, value); break;
        case 'read_timeout': config.limits = { requestTimeout: this.duration(path, value) }; break;
        case 'write_timeout': this.skip(path, 'Switchyard has no deadline for writing a whole response (a slow client is not cut off); upstream silence is bounded by server.timeouts.idle (60s)'); break;
        case 'max_conn': maxConn = this.count(path, value); break;
        case 'real_ip_header': {
          const header = this.text(path, value).toLowerCase();
          if (header === 'x-real-ip' || header === 'x-forwarded-for') config.realIpHeader = header;
          else this.skip(path, `"${header}": Switchyard reads the client IP from X-Forwarded-For or X-Real-IP only`);
          break;
        }
        case 'trusted_proxies': {
          if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new ImportError(this.file, path, 'is not a list of IPs or CIDR ranges');
          config.trustedProxies = value;
          break;
        }
        default: this.skip(path, 'not a SpeedMimi setting this importer knows');
      }
    }
    if (ssl) {
      if (ssl.enabled === true) {
        config.tls = { cert: this.text('ssl.cert_file', ssl.cert_file), key: this.text('ssl.key_file', ssl.key_file) };
      } else if (ssl.cert_file !== undefined || ssl.key_file !== undefined) {
        this.skip('ssl.cert_file, ssl.key_file', 'ssl.enabled is false; set server.tls.cert and server.tls.key to serve HTTPS');
      }
    }
    config.admin = { key: '${ADMIN_KEY}' };
    return { config, maxConn };
  }

  private route(key: string, rule: unknown, backends: Obj): { source: string; config: Obj } {
    const path = `routing.${key}`;
    if (!isObject(rule)) throw new ImportError(this.file, path, 'is not a mapping with path, upstream and load_balancer');
    const group = rule.upstream === undefined ? key : this.text(`${path}.upstream`, rule.upstream);
    const members = backends[group];
    if (!Array.isArray(members) || members.length === 0) throw new ImportError(this.file, `${path}.upstream`, `names "${group}", which is not a non-empty list under backends`);
    const prefix = rule.path === undefined ? '/' : this.text(`${path}.path`, rule.path);
    if (!prefix.startsWith('/')) throw new ImportError(this.file, `${path}.path`, `"${prefix}" is not a path starting with /`);
    const balancer: Obj = {};
    if (rule.load_balancer !== undefined) Object.assign(balancer, this.algorithm(`${path}.load_balancer`, rule.load_balancer));
    const protocols = rule.protocols === undefined ? undefined : isObject(rule.protocols) ? rule.protocols : undefined;
    if (protocols) {
      const ws = protocols.websocket === undefined ? undefined : this.algorithm(`${path}.protocols.websocket`, protocols.websocket);
      const sse = protocols.sse === undefined ? undefined : this.algorithm(`${path}.protocols.sse`, protocols.sse);
      const streaming = ws ?? sse;
      if (streaming) {
        balancer.streamingAlgorithm = streaming.algorithm;
        if (ws && sse && ws.algorithm !== sse.algorithm) this.skip(`${path}.protocols.sse`, `Switchyard has one algorithm for WebSocket and SSE together; the websocket one (${ws.algorithm}) is used`);
      }
    }
    for (const extra of Object.keys(rule)) {
      if (!['path', 'upstream', 'load_balancer', 'protocols'].includes(extra)) this.skip(`${path}.${extra}`, 'not a SpeedMimi setting this importer knows');
    }
    const upstreams: Obj[] = [];
    let health: Obj | undefined;
    members.forEach((member: unknown, i) => {
      const converted = this.backend(`backends.${group}[${i}]`, member);
      if (!converted) return;
      upstreams.push(converted.upstream);
      if (converted.health && !health) health = converted.health;
      else if (converted.health && JSON.stringify(converted.health) !== JSON.stringify(health)) {
        this.skip(`backends.${group}[${i}].health_check`, 'differs from the first backend\'s; Switchyard checks every backend of a route the same way, as the first one says');
      }
    });
    if (upstreams.length === 0) throw new ImportError(this.file, `backends.${group}`, 'has no active backend');
    const plugins: Obj[] = [];
    if (health) plugins.push({ name: 'health-check', options: { active: health } });
    plugins.push({ name: 'balancer', options: balancer });
    // The route takes the group's name: SpeedMimi's admin calls say ?upstream=<group>.
    return { source: group, config: { name: group, match: { pathPrefix: prefix }, upstreams, plugins } };
  }

  private backend(path: string, source: unknown): { upstream: Obj; health?: Obj } | undefined {
    if (!isObject(source)) throw new ImportError(this.file, path, 'is not a mapping with id, host and port');
    if (source.active === false) {
      this.skip(path, 'active: false; left out (add it later with POST /api/v1/backends/add)');
      return undefined;
    }
    const host = this.text(`${path}.host`, source.host);
    const port = this.port(`${path}.port`, source.port);
    const scheme = source.scheme === undefined ? 'http' : this.text(`${path}.scheme`, source.scheme);
    if (scheme !== 'http' && scheme !== 'https') throw new ImportError(this.file, `${path}.scheme`, `"${scheme}" is not http or https`);
    const upstream: Obj = { url: `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}` };
    if (source.id !== undefined) upstream.name = this.text(`${path}.id`, source.id);
    if (source.weight !== undefined) {
      const weight = source.weight;
      if (typeof weight !== 'number' || !(weight > 0)) throw new ImportError(this.file, `${path}.weight`, 'is not a number above 0');
      upstream.weight = weight;
    }
    const meta: Obj = {};
    if (source.name !== undefined) meta.displayName = this.text(`${path}.name`, source.name);
    if (source.max_conn !== undefined) meta.maxConnections = this.count(`${path}.max_conn`, source.max_conn);
    if (Object.keys(meta).length > 0) upstream.meta = meta;
    let health: Obj | undefined;
    if (source.health_check !== undefined) health = this.health(`${path}.health_check`, source.health_check);
    for (const key of Object.keys(source)) {
      if (!['id', 'name', 'host', 'port', 'weight', 'scheme', 'active', 'max_conn', 'health_check'].includes(key)) this.skip(`${path}.${key}`, 'not a SpeedMimi setting this importer knows');
    }
    return { upstream, health };
  }

  private health(path: string, source: unknown): Obj {
    if (!isObject(source)) throw new ImportError(this.file, path, 'is not a mapping with path, interval, timeout and failures');
    const health: Obj = {};
    for (const [key, value] of Object.entries(source)) {
      switch (key) {
        case 'path': {
          const probe = this.text(`${path}.path`, value);
          if (!probe.startsWith('/')) throw new ImportError(this.file, `${path}.path`, `"${probe}" is not a path starting with /`);
          health.path = probe;
          break;
        }
        case 'interval': health.interval = this.duration(`${path}.interval`, value); break;
        case 'timeout': health.timeout = this.duration(`${path}.timeout`, value); break;
        case 'failures': health.unhealthyThreshold = this.count(`${path}.failures`, value); break;
        default: this.skip(`${path}.${key}`, 'not a SpeedMimi setting this importer knows');
      }
    }
    return health;
  }

  private algorithm(path: string, value: unknown): { algorithm: string; reports?: { enabled: true } } {
    const name = this.text(path, value);
    const alias = SPEEDMIMI_ALGORITHMS[name];
    if (!alias) throw new ImportError(this.file, path, `"${name}" is not a SpeedMimi algorithm (${Object.keys(SPEEDMIMI_ALGORITHMS).join(', ')})`);
    return alias.reports ? { algorithm: alias.algorithm, reports: { enabled: true } } : { algorithm: alias.algorithm };
  }

  private skip(path: string, why: string): void {
    this.notCarried.push(`${path}: ${why}`);
  }

  private text(path: string, value: unknown): string {
    if (typeof value === 'string' && value !== '') return value;
    throw new ImportError(this.file, path, value === undefined ? 'is missing' : 'is not a non-empty string');
  }

  private port(path: string, value: unknown): number {
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 65535) return value;
    throw new ImportError(this.file, path, value === undefined ? 'is missing' : `${JSON.stringify(value)} is not a port number`);
  }

  private count(path: string, value: unknown): number {
    if (typeof value === 'number' && Number.isInteger(value) && value >= 1) return value;
    throw new ImportError(this.file, path, `${JSON.stringify(value)} is not a whole number of at least 1`);
  }

  /** A Go duration (`30s`, `1m30s`, `500ms`) or a bare number of seconds → ms. */
  private duration(path: string, value: unknown): number {
    const ms = typeof value === 'number' ? value * 1000 : typeof value === 'string' ? goDurationMs(value) : undefined;
    if (ms === undefined || !(ms >= 1)) throw new ImportError(this.file, path, `${JSON.stringify(value)} is not a duration like 30s, 1m30s or 500ms`);
    return Math.round(ms);
  }
}

const GO_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function goDurationMs(text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(amount) * GO_UNITS[unit!]!;
  return total;
}

function objectAt(source: Obj, key: string, file: string): Obj | undefined {
  const value = source[key];
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw new ImportError(file, key, 'is not a mapping');
  return value;
}

function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
