// The core's part of the config file, as a JSON schema for ajv; the TypeScript types are derived
// from it so the two cannot drift. Plugins validate their own `options` with their own schemas.
import type { FromSchema } from 'json-schema-to-ts';

const timeoutProperties = {
  connect: { type: 'integer', minimum: 1, description: 'Opening the TCP (and TLS) connection to the upstream. Default 5000.' },
  firstByte: { type: 'integer', minimum: 1, description: 'From sending the request to the first byte of the response head. Default 60000.' },
  idle: { type: 'integer', minimum: 1, description: 'Longest silence while the response body streams. Default 60000.' },
} as const;

/** A route's timeouts override the server's one by one, so they carry no defaults of their own. */
const routeTimeoutsSchema = {
  type: 'object',
  description: 'Upstream timeouts in milliseconds for this route; unset ones come from server.timeouts.',
  properties: timeoutProperties,
  additionalProperties: false,
} as const;

const serverTimeoutsSchema = {
  type: 'object',
  default: {},
  description: 'Upstream timeouts in milliseconds. A timeout answers 504; a refused or reset connection answers 502.',
  properties: {
    connect: { ...timeoutProperties.connect, default: 5000 },
    firstByte: { ...timeoutProperties.firstByte, default: 60000 },
    idle: { ...timeoutProperties.idle, default: 60000 },
  },
  additionalProperties: false,
} as const;

const engineSchema = {
  type: 'string',
  enum: ['undici', 'http-proxy'],
  description: 'Forwarding engine: undici (pools per origin, the faster) or http-proxy (http-proxy-3 on node:http agents). WebSocket upgrades always use http-proxy.',
} as const;

const pluginRefSchema = {
  type: 'object',
  description: 'A built-in plugin by `name`, or a custom plugin file by `path` (relative to the config file).',
  properties: {
    name: { type: 'string', minLength: 1 },
    path: { type: 'string', minLength: 1 },
    enabled: { type: 'boolean', default: true },
    options: { type: 'object' },
  },
  oneOf: [{ required: ['name'] }, { required: ['path'] }],
  additionalProperties: false,
} as const;

const upstreamSchema = {
  type: 'object',
  properties: {
    url: {
      type: 'string', pattern: '^(dns\\+(srv\\+)?)?https?://[^\\s/]+',
      description: 'Origin and optional base path, e.g. http://10.0.0.5:9000 or https://api.example.com/v1; dns+http://name:port and dns+srv+http://_service._tcp.name are short for `discover`.',
    },
    discover: {
      type: 'string', enum: ['dns', 'srv'],
      description: 'The balancer expands this upstream into one member per address the host name resolves to: dns = its A/AAAA records (port from the URL), srv = its SRV targets (their ports and weights).',
    },
    name: { type: 'string', description: 'Shown in logs and admin output; defaults to the URL without credentials.' },
    weight: { type: 'number', exclusiveMinimum: 0, default: 1 },
    priority: { type: 'integer', minimum: 0, default: 0, description: 'Lower is preferred, for priority balancing.' },
    meta: { type: 'object', description: 'Free-form facts for plugins (region, tags…).' },
    tls: {
      type: 'object',
      description: 'How to trust an https upstream. Certificates are verified by default.',
      properties: {
        ca: { type: 'string', minLength: 1, description: 'PEM file of the CA that signed the upstream\'s certificate (relative to the config file).' },
        insecure: { type: 'boolean', default: false, description: 'Skip certificate verification (testing only).' },
      },
      additionalProperties: false,
    },
  },
  required: ['url'],
  additionalProperties: false,
} as const;

const matchSchema = {
  type: 'object',
  description: 'All given conditions must hold. Exact `path` beats `pathPrefix`; a longer prefix beats a shorter one.',
  properties: {
    pathPrefix: { type: 'string', pattern: '^/', description: 'Matches the prefix itself and anything below it at a / boundary.' },
    path: { type: 'string', pattern: '^/' },
    host: { type: 'string', minLength: 1, description: 'Host header without port; `*.example.com` matches subdomains.' },
    methods: { type: 'array', items: { type: 'string', pattern: '^[A-Z]+$' }, minItems: 1 },
  },
  additionalProperties: false,
} as const;

export const routeSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9_.-]+$' },
    match: matchSchema,
    stripPrefix: { type: 'boolean', default: false, description: 'Remove match.pathPrefix before forwarding.' },
    preserveHost: { type: 'boolean', default: false, description: 'Send the client\'s Host header instead of the upstream\'s.' },
    websocket: { type: 'boolean', default: true, description: 'Proxy WebSocket upgrades on this route.' },
    foreignContent: { type: 'boolean', description: 'Answers are other sites\' documents (a web proxy): plugins leave out the policies of the gateway\'s own pages (security-headers: X-Frame-Options). Default false.' },
    engine: { ...engineSchema, description: 'Forwarding engine for this route; unset: server.engine.' },
    timeouts: routeTimeoutsSchema,
    upstreams: { type: 'array', items: upstreamSchema, minItems: 1 },
    plugins: { type: 'array', items: pluginRefSchema, default: [] },
  },
  required: ['name', 'match', 'upstreams'],
  additionalProperties: false,
} as const;

export const configSchema = {
  type: 'object',
  properties: {
    preset: { type: 'string', description: 'Start from a preset; keys in this file override it.' },
    server: {
      type: 'object',
      default: {},
      properties: {
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 8080 },
        host: { type: 'string', default: '0.0.0.0' },
        store: { type: 'string', pattern: '^(sqlite|memory|rediss?)://', default: 'sqlite://./data/switchyard.sqlite', description: 'Where plugin state and caches persist: sqlite://<path>, redis://host:port (shared by several instances) or memory://' },
        accessLog: { type: 'boolean', default: true, description: 'One JSON log line per request.' },
        trustedProxies: { type: 'array', items: { type: 'string' }, default: [], description: 'Peers (IPs or CIDR ranges) whose realIpHeader is believed.' },
        realIpHeader: { type: 'string', enum: ['x-forwarded-for', 'x-real-ip'], default: 'x-forwarded-for', description: 'Where a trusted peer says who the client is.' },
        timeouts: serverTimeoutsSchema,
        engine: { ...engineSchema, default: 'undici' },
        shutdownTimeout: { type: 'integer', minimum: 0, default: 10000, description: 'How long SIGTERM waits for in-flight requests (ms).' },
        pool: {
          type: 'object',
          default: {},
          description: 'Keep-alive connection pool per upstream origin.',
          properties: {
            maxSockets: { type: 'integer', minimum: 1, default: 512 },
            maxFreeSockets: { type: 'integer', minimum: 0, default: 256 },
          },
          additionalProperties: false,
        },
        maxBufferedBody: { type: 'integer', minimum: 0, default: 10485760, description: 'Largest request body a plugin may buffer (bytes); larger answers 413.' },
        limits: {
          type: 'object',
          default: {},
          description: 'Protection against oversized and slow clients.',
          properties: {
            maxHeaderSize: { type: 'integer', minimum: 1024, default: 16384, description: 'Largest request head in bytes; larger answers 431.' },
            maxBodySize: { type: 'integer', minimum: 0, default: 0, description: 'Largest request body in bytes, streamed or not; larger answers 413. 0 = no limit.' },
            headersTimeout: { type: 'integer', minimum: 1, default: 20000, description: 'Time to receive the request head (ms): the slowloris guard.' },
            requestTimeout: { type: 'integer', minimum: 0, default: 300000, description: 'Time to receive the whole request, body included (ms); 0 = none.' },
            keepAliveTimeout: { type: 'integer', minimum: 0, default: 5000, description: 'How long an idle client connection stays open (ms).' },
          },
          additionalProperties: false,
        },
        tls: {
          type: 'object',
          description: 'Serve HTTPS. The files are watched: a renewed certificate is used by the next handshake.',
          properties: {
            cert: { type: 'string', minLength: 1, description: 'PEM certificate chain file (relative to the config file).' },
            key: { type: 'string', minLength: 1, description: 'PEM private key file.' },
          },
          required: ['cert', 'key'],
          additionalProperties: false,
        },
        dns: {
          type: 'object',
          default: {},
          description: 'The resolver for upstreams found through DNS (`discover`).',
          properties: {
            servers: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'DNS servers to ask, each `ip` or `ip:port` (`[ipv6]:port`); unset: the system\'s (/etc/resolv.conf).' },
            timeout: { type: 'integer', minimum: 1, default: 2000, description: 'How long one query waits for an answer (ms).' },
            tries: { type: 'integer', minimum: 1, default: 2, description: 'Queries sent per lookup before it fails.' },
          },
          additionalProperties: false,
        },
        admin: {
          type: 'object',
          default: {},
          properties: {
            key: { type: 'string', description: 'Admin key for protected admin routes (X-API-Key or Authorization: Bearer).' },
            prefix: { type: 'string', pattern: '^(/[A-Za-z0-9_.-]+)*$', default: '', description: 'Path prefix for admin routes, e.g. /_switchyard' },
            port: { type: 'integer', minimum: 0, maximum: 65535, description: 'Serve admin routes on their own port instead of the proxy port.' },
            auditLog: { type: 'string', minLength: 1, description: 'File for audit entries of protected admin calls (JSON lines); unset: the main log, tagged audit.' },
          },
          additionalProperties: false,
        },
      },
      additionalProperties: false,
    },
    routes: { type: 'array', items: routeSchema, default: [] },
    plugins: { type: 'array', items: pluginRefSchema, default: [], description: 'Global plugins, run before route plugins.' },
  },
  additionalProperties: false,
} as const;

export type SwitchyardConfig = FromSchema<typeof configSchema>;
export type ServerConfig = NonNullable<SwitchyardConfig['server']> & Required<Pick<NonNullable<SwitchyardConfig['server']>, 'port' | 'host'>>;
export type RouteConfig = FromSchema<typeof routeSchema>;
export type UpstreamConfig = FromSchema<typeof upstreamSchema>;
export type PluginRef = FromSchema<typeof pluginRefSchema>;
export type TimeoutsConfig = Required<FromSchema<typeof routeTimeoutsSchema>>;
export type RouteMatch = FromSchema<typeof matchSchema>;
