// The running proxy: an HTTP server (plus an admin server when asked), the current pipeline, live
// reload, and graceful shutdown.
import { EventEmitter, once } from 'node:events';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import http, { ServerResponse, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import pino, { type Logger } from 'pino';
import { accessLogWriter } from './access-log.js';
import { loadConfig, redactString, type Catalogs, type ConfigSource, type LoadedConfig } from './config/load.js';
import { ConfigWatcher } from './config/watch.js';
import { ConsoleRecorder } from './console-recorder.js';
import { HttpProxyEngine } from './forward.js';
import { UndiciEngine } from './forward-undici.js';
import { createListener, type TlsPair, type TlsReloadResult } from './listener.js';
import { stdoutDestination } from './log-writer.js';
import { Pipeline, type ReloadStatus, type Runtime } from './pipeline.js';
import { handleAdminRequest, handleRequest } from './flow.js';
import { endEventStreams } from './send.js';
import { handleUpgrade } from './upgrade.js';
import { injectRequest } from './inject.js';
import type { InjectRequest, InjectResponse } from './plugin.js';
import { StateRegistry, StoreFactory, UpstreamHealth } from './state.js';

export interface StartOptions {
  source: ConfigSource;
  catalogs: Catalogs;
  env?: NodeJS.ProcessEnv;
  /** Defaults to a pino logger at LOG_LEVEL (info) writing JSON to stdout. */
  logger?: Logger;
  /** Watch the config and plugin files and reload on change. Default true when a file is given. */
  watch?: boolean;
}

/** What is running, for the start banner: no secrets, URLs with credentials redacted. */
export interface RunningSummary {
  url: string;
  adminUrl: string | undefined;
  routes: { name: string; match: string; upstreams: string[]; plugins: string[] }[];
  globalPlugins: string[];
  admin: { paths: { method: string; path: string; public: boolean }[]; keySet: boolean; keyVariable: string };
  store: string;
  configFile: string | undefined;
  watching: boolean;
}

export interface ReloadResult {
  ok: boolean;
  /** True when nothing changed, so nothing was rebuilt. */
  unchanged?: boolean;
  error?: string;
}

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Settings a running process cannot change; a reload that changes them says a restart is needed. */
const RESTART_ONLY: readonly [string, (l: LoadedConfig) => unknown][] = [
  ['server.port', (l) => l.config.server.port],
  ['server.host', (l) => l.config.server.host],
  ['server.store', (l) => l.config.server.store],
  ['server.admin.port', (l) => l.config.server.admin.port],
  ['server.pool', (l) => JSON.stringify(l.config.server.pool)],
  ['server.limits', (l) => JSON.stringify(l.config.server.limits)],
  ['server.tls', (l) => JSON.stringify(l.config.server.tls)],
  ['server.admin.auditLog', (l) => l.config.server.admin.auditLog],
];

/**
 * A running Switchyard. Emits `reload` with a ReloadResult after every reload attempt (file
 * change, SIGHUP or reload()), so embedders and tests can wait on it.
 */
export class Switchyard extends EventEmitter<{ reload: [ReloadResult]; tls: [TlsReloadResult & { trigger: string }] }> {
  private pipeline: Pipeline;
  private watcher: ConfigWatcher | undefined;
  private reloading: Promise<ReloadResult> = Promise.resolve({ ok: true });
  private stopping: Promise<void> | undefined;
  private keepAliveGraceMs = 0;
  /** Pipelines replaced by a reload that still serve requests or WebSockets begun on them. */
  private readonly retiring = new Set<Pipeline>();
  /** The config the process started with: its port, host, store… are what it runs on until a restart. */
  private readonly started: LoadedConfig;

  private constructor(
    private readonly options: StartOptions,
    private readonly rt: Runtime,
    first: Pipeline,
    readonly server: http.Server,
    readonly adminServer: http.Server | undefined,
  ) {
    super();
    this.pipeline = first;
    this.started = first.loaded;
  }

  /** Loads and validates the config (throws ConfigError), then listens. */
  static async start(options: StartOptions): Promise<Switchyard> {
    const env = options.env ?? process.env;
    const logger = options.logger ?? createLogger(env);
    const loaded = await loadConfig(options.source, options.catalogs, env);
    const { server: serverConfig } = loaded.config;
    const pool = { maxSockets: serverConfig.pool.maxSockets ?? 512, maxFreeSockets: serverConfig.pool.maxFreeSockets ?? 256 };
    // Both engines exist from the start (a pool is only opened on a route's first request), so a
    // reload may move any route to either; both hand WebSocket upgrades to core/forward-upgrade.ts.
    const httpProxy = new HttpProxyEngine(pool);
    const stores = await StoreFactory.create(serverConfig.store, loaded.baseDir, loaded.hints.store);
    // Declared here: rt.reloadTls calls it, and it is made from rt.
    let yard: Switchyard;
    const rt: Runtime = {
      logger,
      env,
      accessLog: accessLogWriter(logger),
      engines: { 'http-proxy': httpProxy, undici: new UndiciEngine(pool, httpProxy) },
      state: new StateRegistry(),
      health: new UpstreamHealth(),
      stores,
      startedAt: Date.now(),
      version: VERSION,
      adminOnOwnPort: serverConfig.admin.port !== undefined,
      audit: createAuditLogger(serverConfig.admin.auditLog, loaded.baseDir, logger),
      tls: undefined,
      reloadTls: (trigger) => Promise.resolve(yard.reloadTlsHere(trigger)),
      rollWorkers: undefined,
      tunnels: new Set(),
      lastReload: { ok: true, at: Date.now(), generation: 1, trigger: 'start' },
      reloads: { ok: 0, failed: 0 },
      console: new ConsoleRecorder(),
      // Until the server exists (a plugin's setup), there is no pipeline to serve on yet.
      dispatch: (_req, res) => {
        res.writeHead(503, { 'content-type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify({ error: 'the proxy is still starting', code: 'SY_ERR_NOT_READY' }));
      },
    };
    const { server, tls } = createListener(serverConfig, loaded.baseDir, logger);
    rt.tls = tls;
    const pipeline = await Pipeline.build(loaded, rt, 1);
    const adminServer = rt.adminOnOwnPort ? http.createServer() : undefined;
    yard = new Switchyard(options, rt, pipeline, server, adminServer);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      // While draining, every answer tells a keep-alive client to go: its next request then opens
      // a new connection (to another worker), rather than racing this one's close.
      if (yard.stopping !== undefined) res.shouldKeepAlive = false;
      handleRequest(yard.pipeline, rt, req, res);
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => handleUpgrade(yard.pipeline, rt, req, socket, head));
    adminServer?.on('request', (req: IncomingMessage, res: ServerResponse) => handleAdminRequest(yard.pipeline, req, res));
    rt.dispatch = (req, res) => {
      const current = yard.pipeline;
      const path = req.url ?? '/';
      const query = path.indexOf('?');
      if (current.admin.owns(query === -1 ? path : path.slice(0, query))) handleAdminRequest(current, req, res);
      else handleRequest(current, rt, req, res, true);
    };

    rt.console.start(() => yard.pipeline.activeRequests, rt.lastReload);
    yard.on('reload', (result) => {
      if (!result.unchanged) rt.console.noteReload(rt.lastReload);
    });

    server.listen(serverConfig.port, serverConfig.host);
    await once(server, 'listening');
    if (adminServer) {
      adminServer.listen(serverConfig.admin.port, serverConfig.host);
      await once(adminServer, 'listening');
    }
    if (options.watch ?? loaded.file !== undefined) {
      await yard.watch(loaded.files);
      await tls?.watch((result) => yard.emit('tls', { ...result, trigger: 'file changed' }));
    }
    logger.info({ port: yard.port, host: serverConfig.host, adminPort: yard.adminPort, preset: loaded.config.preset, routes: loaded.config.routes.length }, 'listening');
    return yard;
  }

  /** Reloads the certificate files in this process (a worker: in this worker only). */
  reloadTlsHere(trigger: string): TlsReloadResult {
    const tls = this.rt.tls;
    if (!tls) return { ok: false, error: 'this server does not serve TLS' };
    return this.emitTls(tls.reload(), trigger);
  }

  /** Serves a certificate pair the cluster's primary read and checked (core/cluster.ts). */
  applyTls(pair: TlsPair, trigger: string): TlsReloadResult {
    const tls = this.rt.tls;
    if (!tls) return { ok: false, error: 'this server does not serve TLS' };
    return this.emitTls(tls.apply(pair), trigger);
  }

  /**
   * How long a drain keeps serving, every answer with Connection: close, before it closes the
   * listener and the idle connections. A worker sets it (core/cluster.ts): its keep-alive clients
   * then move to the other workers without a request lost to a closing connection.
   */
  setKeepAliveGrace(ms: number): void {
    this.keepAliveGraceMs = ms;
  }

  /** Has `POST /workers/roll` ask for a rolling restart through `roll` (core/cluster.ts). */
  routeRolls(roll: (trigger: string) => void): void {
    this.rt.rollWorkers = roll;
  }

  /** Has `POST /config/reload-tls` go through `reload` (under --workers: the primary, for every worker). */
  routeTlsReloads(reload: (trigger: string) => Promise<TlsReloadResult>): void {
    this.rt.reloadTls = reload;
  }

  private emitTls(result: TlsReloadResult, trigger: string): TlsReloadResult {
    this.emit('tls', { ...result, trigger });
    return result;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get adminPort(): number | undefined {
    return this.adminServer ? (this.adminServer.address() as AddressInfo).port : undefined;
  }

  get logger(): Logger {
    return this.rt.logger;
  }

  /** @internal What the CLI's start banner shows; redacted. */
  summary(): RunningSummary {
    const { loaded, admin } = this.pipeline;
    const { server } = loaded.config;
    const secret = (text: string) => redactString(text, loaded.secrets);
    const scheme = server.tls ? 'https' : 'http';
    const host = server.host === undefined || server.host === '0.0.0.0' || server.host === '::' ? 'localhost' : server.host.includes(':') ? `[${server.host}]` : server.host;
    const names = (plugins: readonly { definition: { name: string } }[]) => plugins.map((plugin) => plugin.definition.name);
    return {
      url: `${scheme}://${host}:${this.port}`,
      adminUrl: this.adminPort === undefined ? undefined : `http://${host}:${this.adminPort}`,
      routes: loaded.config.routes.map((route, i) => ({
        name: route.name,
        match: Object.entries(route.match).map(([key, value]) => `${key} ${Array.isArray(value) ? value.join(',') : typeof value === 'object' ? JSON.stringify(value) : String(value)}`).join(', '),
        upstreams: route.upstreams.map((upstream) => secret(upstream.name ?? upstream.url)),
        plugins: names(loaded.routePlugins[i]!),
      })),
      globalPlugins: names(loaded.globalPlugins),
      admin: { paths: admin.list(), keySet: admin.keySet, keyVariable: loaded.hints.adminKey },
      store: secret(server.store),
      configFile: loaded.file,
      watching: this.watcher !== undefined,
    };
  }

  get lastReload(): ReloadStatus {
    return this.rt.lastReload;
  }

  /** The pipeline generation serving new requests (1 at start, +1 per applied reload). */
  get generation(): number {
    return this.pipeline.generation;
  }

  /**
   * Runs `request` through this proxy without a socket, the way a plugin's `api.inject()` does:
   * admin paths go to the admin router, the rest through the pipeline serving now.
   * @example const res = await yard.inject({ method: 'GET', path: '/items?page=2' });
   */
  inject(request: InjectRequest): Promise<InjectResponse> {
    return injectRequest(this.rt.dispatch, request);
  }

  /**
   * Loads the config again and, when it changed and is valid, swaps in a new pipeline. Requests
   * in flight finish on the pipeline they started on. An invalid config leaves the old one serving.
   * Reloads run one at a time.
   */
  reload(trigger = 'manual'): Promise<ReloadResult> {
    this.reloading = this.reloading.then(() => this.reloadNow(trigger)).then((result) => {
      this.emit('reload', result);
      return result;
    });
    return this.reloading;
  }

  private async reloadNow(trigger: string): Promise<ReloadResult> {
    if (this.stopping) return { ok: false, error: 'shutting down' };
    const old = this.pipeline;
    let loaded: LoadedConfig;
    let next: Pipeline;
    try {
      loaded = await loadConfig(this.options.source, this.options.catalogs, this.options.env ?? process.env);
      if (loaded.fingerprint === old.loaded.fingerprint) return this.unchanged(trigger);
      next = await Pipeline.build(loaded, this.rt, old.generation + 1);
    } catch (err) {
      const error = redactString((err as Error).message, old.loaded.secrets);
      this.rt.lastReload = { ok: false, at: Date.now(), generation: old.generation, trigger, error };
      this.rt.reloads.failed++;
      this.rt.logger.error({ trigger, error, code: (err as { code?: string }).code }, 'config reload rejected; the previous config keeps serving');
      return { ok: false, error };
    }
    const needsRestart = this.needsRestart(loaded);
    this.pipeline = next;
    this.retiring.add(old);
    void old.drained().then(() => this.retiring.delete(old));
    old.retire();
    this.watcher?.update(loaded.files);
    this.rt.lastReload = { ok: true, at: Date.now(), generation: next.generation, trigger, ...(needsRestart.length > 0 ? { needsRestart } : {}) };
    this.rt.reloads.ok++;
    this.rt.logger.info({ trigger, generation: next.generation }, 'config reloaded');
    if (needsRestart.length > 0) this.rt.logger.warn({ settings: needsRestart }, 'these settings changed but only apply after a restart');
    return { ok: true };
  }

  /** Restart-only settings on which `loaded` differs from what the process started with. */
  private needsRestart(loaded: LoadedConfig): string[] {
    return RESTART_ONLY.filter(([, read]) => read(loaded) !== read(this.started)).map(([name]) => name);
  }

  /**
   * The file holds what is serving already. Said in the log (a SIGHUP gets an answer), and a
   * rejected reload shown by /status no longer applies: the file is back to the running version.
   */
  private unchanged(trigger: string): ReloadResult {
    const cleared = !this.rt.lastReload.ok;
    if (cleared) {
      const needsRestart = this.needsRestart(this.pipeline.loaded);
      this.rt.lastReload = { ok: true, at: Date.now(), generation: this.pipeline.generation, trigger, ...(needsRestart.length > 0 ? { needsRestart } : {}) };
    }
    this.rt.logger.info({ trigger, generation: this.pipeline.generation }, cleared
      ? 'config is back to the running version: the rejected reload no longer applies'
      : 'config unchanged: nothing to reload');
    return { ok: true, unchanged: true };
  }

  private async watch(files: readonly string[]): Promise<void> {
    this.watcher = new ConfigWatcher(files, (file) => void this.reload(`file changed: ${file}`));
    await this.watcher.ready();
  }

  /** Stops accepting, lets in-flight requests finish (up to server.shutdownTimeout), disposes plugins, closes the store. */
  stop(): Promise<void> {
    this.stopping ??= this.stopNow();
    return this.stopping;
  }

  private async stopNow(): Promise<void> {
    const timeout = this.pipeline.loaded.config.server.shutdownTimeout ?? 10000;
    await this.watcher?.close();
    await this.rt.tls?.close();
    await this.reloading;
    if (this.keepAliveGraceMs > 0) {
      // Answers now carry Connection: close, so a busy keep-alive connection leaves after its next
      // answer; an idle one closed at once could cross a request its client is sending just then.
      await new Promise((resolve) => setTimeout(resolve, this.keepAliveGraceMs));
    }
    this.rt.console.close();
    const closed = Promise.all([closeServer(this.server), this.adminServer ? closeServer(this.adminServer) : undefined]);
    this.server.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      Promise.all([this.pipeline, ...this.retiring].map((pipeline) => pipeline.drained())).then(() => true),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeout); }),
    ]);
    clearTimeout(timer);
    if (!drained) {
      const activeRequests = [this.pipeline, ...this.retiring].reduce((sum, pipeline) => sum + pipeline.activeRequests, 0);
      this.rt.logger.warn({ activeRequests, websockets: this.rt.tunnels.size }, 'shutdown timeout: closing the remaining connections');
    }
    // An SSE stream ends properly (its client reconnects elsewhere); a WebSocket gets a TCP close
    // (FIN) on both legs rather than a reset at exit.
    await endEventStreams(this.server);
    for (const socket of this.rt.tunnels) socket.end();
    this.server.closeAllConnections();
    this.adminServer?.closeAllConnections();
    await closed;
    await this.pipeline.dispose();
    await Promise.all(Object.values(this.rt.engines).map((engine) => engine.close()));
    await this.rt.stores.close();
    this.rt.logger.info('stopped');
  }
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Audit entries go to their own file when server.admin.auditLog names one, else to the main log. */
function createAuditLogger(file: string | undefined, baseDir: string, logger: Logger): Logger {
  if (!file) return logger.child({ audit: true });
  const path = resolve(baseDir, file);
  mkdirSync(dirname(path), { recursive: true });
  return pino({ base: { audit: true } }, pino.destination({ dest: path, sync: true }));
}

/**
 * JSON logs to stdout with credentials redacted wherever a plugin might log headers. Lines go out
 * once per event-loop turn (core/log-writer.ts), not one write each; LOG_FORMAT=pretty formats
 * them for a person instead.
 */
export function createLogger(env: NodeJS.ProcessEnv = process.env, destination: pino.DestinationStream = stdoutDestination(env)): Logger {
  return pino({
    level: env.LOG_LEVEL ?? 'info',
    redact: {
      paths: ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie', 'headers.authorization', 'headers["x-api-key"]', 'headers.cookie', 'headers["proxy-authorization"]', 'options.apiKey', 'options.token', 'options.password'],
      censor: '***',
    },
  }, destination);
}
