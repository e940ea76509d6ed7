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
import { createListener } from './listener.js';
import { LineBatchWriter } from './log-writer.js';
import { Pipeline, type ReloadStatus, type Runtime } from './pipeline.js';
import { handleAdminRequest, handleRequest } from './flow.js';
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
export class Switchyard extends EventEmitter<{ reload: [ReloadResult]; tls: [{ ok: boolean; error?: string }] }> {
  private pipeline: Pipeline;
  private watcher: ConfigWatcher | undefined;
  private reloading: Promise<ReloadResult> = Promise.resolve({ ok: true });
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly options: StartOptions,
    private readonly rt: Runtime,
    first: Pipeline,
    readonly server: http.Server,
    readonly adminServer: http.Server | undefined,
  ) {
    super();
    this.pipeline = first;
  }

  /** Loads and validates the config (throws ConfigError), then listens. */
  static async start(options: StartOptions): Promise<Switchyard> {
    const env = options.env ?? process.env;
    const logger = options.logger ?? createLogger(env);
    const loaded = await loadConfig(options.source, options.catalogs, env);
    const { server: serverConfig } = loaded.config;
    const pool = { maxSockets: serverConfig.pool.maxSockets ?? 512, maxFreeSockets: serverConfig.pool.maxFreeSockets ?? 256 };
    // Both engines exist from the start (a pool is only opened on a route's first request), so a
    // reload may move any route to either; WebSocket upgrades always take the http-proxy one.
    const httpProxy = new HttpProxyEngine(pool);
    const stores = await StoreFactory.create(serverConfig.store, loaded.baseDir);
    const rt: Runtime = {
      logger,
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
    const yard = new Switchyard(options, rt, pipeline, server, adminServer);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => handleRequest(yard.pipeline, rt, req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => handleUpgrade(yard.pipeline, rt, req, socket, head, new ServerResponse(req)));
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
      await tls?.watch((result) => yard.emit('tls', result));
    }
    logger.info({ port: yard.port, host: serverConfig.host, adminPort: yard.adminPort, preset: loaded.config.preset, routes: loaded.config.routes.length }, 'listening');
    return yard;
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
      if (loaded.fingerprint === old.loaded.fingerprint) return { ok: true, unchanged: true };
      next = await Pipeline.build(loaded, this.rt, old.generation + 1);
    } catch (err) {
      const error = redactString((err as Error).message, old.loaded.secrets);
      this.rt.lastReload = { ok: false, at: Date.now(), generation: old.generation, trigger, error };
      this.rt.reloads.failed++;
      this.rt.logger.error({ trigger, error, code: (err as { code?: string }).code }, 'config reload rejected; the previous config keeps serving');
      return { ok: false, error };
    }
    const needsRestart = RESTART_ONLY.filter(([, read]) => read(loaded) !== read(old.loaded)).map(([name]) => name);
    this.pipeline = next;
    old.retire();
    this.watcher?.update(loaded.files);
    this.rt.lastReload = { ok: true, at: Date.now(), generation: next.generation, trigger, ...(needsRestart.length > 0 ? { needsRestart } : {}) };
    this.rt.reloads.ok++;
    this.rt.logger.info({ trigger, generation: next.generation }, 'config reloaded');
    if (needsRestart.length > 0) this.rt.logger.warn({ settings: needsRestart }, 'these settings changed but only apply after a restart');
    return { ok: true };
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
    this.rt.console.close();
    const closed = Promise.all([closeServer(this.server), this.adminServer ? closeServer(this.adminServer) : undefined]);
    this.server.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      this.pipeline.drained().then(() => true),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeout); }),
    ]);
    clearTimeout(timer);
    if (!drained) this.rt.logger.warn({ activeRequests: this.pipeline.activeRequests }, 'shutdown timeout: closing the remaining connections');
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
 * once per event-loop turn (core/log-writer.ts), not one write each.
 */
export function createLogger(env: NodeJS.ProcessEnv = process.env, destination: pino.DestinationStream = LineBatchWriter.stdout()): Logger {
  return pino({
    level: env.LOG_LEVEL ?? 'info',
    redact: {
      paths: ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie', 'headers.authorization', 'headers["x-api-key"]', 'headers.cookie', 'headers["proxy-authorization"]', 'options.apiKey', 'options.token', 'options.password'],
      censor: '***',
    },
  }, destination);
}
